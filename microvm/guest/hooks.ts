// Snapshot support inside the guest: the global `fnctl` object through which a function registers
// restore hooks (as with Lambda SnapStart), the checks that run while `node --build-snapshot`
// builds (open handles, pending timers, native addons, hooks that never settle), and the reseeding
// of randomness after a restore. A plain boot pays for none of it beyond defining `fnctl`.
//
// The builder (snapshots/builder.ts) has no channel to the guest: it learns what happened from the
// marker lines below on stderr and from the exit code.
import { writeSync } from 'node:fs';
import type { AsyncHook } from 'node:async_hooks';
import v8 from 'node:v8';

/** `FNCTL_INIT_ERROR {ErrorPayload}`, then exit 1: init threw (the runtime writes it; no channel while building). */
export const INIT_ERROR_MARKER = 'FNCTL_INIT_ERROR ';
/** `FNCTL_INIT_DONE {"initMs","style"}`: the function's module top level ran. */
export const INIT_DONE_MARKER = 'FNCTL_INIT_DONE ';
/** `FNCTL_SNAPSHOT_BLOCKED {"kind","reason"}`, then exit EXIT_SNAPSHOT_BLOCKED. */
export const BLOCKED_MARKER = 'FNCTL_SNAPSHOT_BLOCKED ';
/** `FNCTL_SNAPSHOT_READY {"prepareMs"}`: hooks ran, nothing is left open; node writes the heap next. */
export const READY_MARKER = 'FNCTL_SNAPSHOT_READY ';
/** Exit code of a build that the guest stopped because the function cannot be snapshotted. */
export const EXIT_SNAPSHOT_BLOCKED = 3;
/** The builder passes the init time limit after the entry: `--build-snapshot bundle.cjs --fnctl-init-deadline-ms=N`. */
export const DEADLINE_ARG = '--fnctl-init-deadline-ms=';

export type BlockedKind = 'open-handle' | 'pending-timer' | 'native-addon' | 'hook-failed';

type Hook = () => unknown;
const beforeHooks: Hook[] = [];
const afterHooks: Hook[] = [];

/** The user-facing API: `fnctl.beforeSnapshot(fn)` and `fnctl.afterRestore(fn)`, no import needed. */
export function installHooksApi(): void {
  const register = (list: Hook[], name: string) => (fn: unknown): void => {
    if (typeof fn !== 'function') throw new TypeError(`fnctl.${name}(fn): fn must be a function, got ${fn === null ? 'null' : typeof fn}`);
    list.push(fn as Hook);
  };
  const api = Object.freeze({ beforeSnapshot: register(beforeHooks, 'beforeSnapshot'), afterRestore: register(afterHooks, 'afterRestore') });
  Object.defineProperty(globalThis, 'fnctl', { value: api, writable: false, enumerable: false, configurable: true });
}

// Node's Timeout objects: these fields have been stable since Node 11 and are all we read.
interface TimeoutLike {
  _idleTimeout: number;
  _repeat: number | null;
  _destroyed: boolean;
  hasRef(): boolean;
}

interface Tracked {
  timer: TimeoutLike;
  ms: number;
  where: string;
}

interface Watch {
  timers: Tracked[];
  addons: string[];
  hook: AsyncHook;
  dlopen: typeof process.dlopen;
}

let watch: Watch | undefined;
const STACK_LIMIT = 10;
let ownStackLimit = false;
/** Whether node's crypto caches can hold bytes drawn at build time; carried into the snapshot. */
let cryptoInSnapshot = false;

/**
 * While building: note every timer the function creates (async_hooks sees timers/promises and
 * library timers too, not only the globals) and every native addon it loads. Call before init.
 */
export function watchInit(): void {
  const { createHook } = process.getBuiltinModule('node:async_hooks') as typeof import('node:async_hooks');
  const timers: Tracked[] = [];
  const hook = createHook({
    init(_id, type, _trigger, resource) {
      if (type !== 'Timeout') return;
      const t = resource as TimeoutLike;
      timers.push({ timer: t, ms: t._idleTimeout, where: timers.length < 50 ? callSite() : '' });
    },
  }).enable();
  // Under --build-snapshot node 20 leaves Error.stackTraceLimit unset, so errors have no stack:
  // give init the stacks a plain boot gives it (its errors and our timer call sites need them).
  if (Error.stackTraceLimit === undefined) {
    Error.stackTraceLimit = STACK_LIMIT;
    ownStackLimit = true;
  }
  const dlopen = process.dlopen;
  const addons: string[] = [];
  process.dlopen = function (this: unknown, module: object, filename: string, ...rest: unknown[]) {
    addons.push(filename);
    return (dlopen as (...a: unknown[]) => void).call(this, module, filename, ...rest);
  } as typeof process.dlopen;
  watch = { timers, addons, hook, dlopen };
}

/** The first frame outside node's internals and this runtime: where the function made the timer. */
function callSite(): string {
  const lines = (new Error().stack ?? '').split('\n').slice(1);
  const frame = lines.find((l) => !/\(node:|at node:|async_hooks|emitInit|initAsyncResource|new Timeout|setTimeout \(|setInterval \(|callSite|init \(/.test(l));
  return frame ? frame.trim().replace(/^at /, '') : '';
}

function block(kind: BlockedKind, reason: string): never {
  writeSync(2, `${BLOCKED_MARKER}${JSON.stringify({ kind, reason })}\n`);
  process.exit(EXIT_SNAPSHOT_BLOCKED);
}

function describeError(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return String(err);
}

// Kinds from process.getActiveResourcesInfo() that never go away by themselves: no point waiting.
const PERMANENT = new Set(['TCPServerWrap', 'PipeServerWrap', 'UDPWrap', 'FSEventWrap', 'StatWatcher', 'SignalWrap', 'TTYWrap', 'MessagePort', 'Worker']);
const KINDS: Record<string, string> = {
  Timeout: 'a setTimeout or setInterval timer',
  Immediate: 'a setImmediate',
  TCPServerWrap: 'a server listening on a TCP port',
  PipeServerWrap: 'a server listening on a Unix socket',
  TCPSocketWrap: 'an open TCP connection',
  TCPConnectWrap: 'a TCP connection being opened',
  PipeWrap: 'an open pipe or Unix socket',
  PipeConnectWrap: 'a Unix socket connection being opened',
  UDPWrap: 'a UDP socket',
  FSReqCallback: 'a file system call in flight',
  FSReqPromise: 'a file system call in flight',
  FSEventWrap: 'an fs.watch watcher',
  StatWatcher: 'an fs.watchFile watcher',
  ProcessWrap: 'a child process',
  GetAddrInfoReqWrap: 'a DNS lookup',
  SignalWrap: 'a signal listener',
  TTYWrap: 'a terminal',
  ZlibWrap: 'a zlib stream',
  MessagePort: 'a MessagePort',
  Worker: 'a worker thread',
};

/** What keeps the event loop alive, minus stdio and our own `ownTimers` timers. */
function openResources(ownTimers: number): string[] {
  const info = process.getActiveResourcesInfo();
  const drop = (kind: string): void => {
    const i = info.indexOf(kind);
    if (i >= 0) info.splice(i, 1);
  };
  const handles = (process as unknown as { _getActiveHandles(): { _isStdio?: boolean; _handle?: object }[] })._getActiveHandles();
  for (const h of handles) if (h?._isStdio) drop(h._handle?.constructor.name === 'TTY' ? 'TTYWrap' : 'PipeWrap');
  for (let i = 0; i < ownTimers; i++) drop('Timeout');
  return info;
}

function timerText(t: Tracked): string {
  const fn = t.timer._repeat ? 'setInterval' : 'setTimeout';
  return `${fn} of ${t.ms} ms${t.timer.hasRef() ? '' : ' (unref’d)'}${t.where ? ` created at ${t.where}` : ''}`;
}

function describeOpen(open: string[], timers: Tracked[]): string {
  const counts = new Map<string, number>();
  for (const k of open) counts.set(k, (counts.get(k) ?? 0) + 1);
  const parts: string[] = [];
  for (const [kind, n] of counts) {
    const live = kind === 'Timeout' ? timers.filter((t) => !t.timer._destroyed && t.timer.hasRef()) : [];
    const what = live.length ? live.slice(0, 3).map(timerText).join('; ') : KINDS[kind];
    parts.push(`${kind}${n > 1 ? ` ×${n}` : ''}${what ? ` (${what})` : ''}`);
  }
  return parts.join(', ');
}

const ADVICE = 'close it in fnctl.beforeSnapshot(fn) and open it again in fnctl.afterRestore(fn), or open it lazily in the handler';

/**
 * After the function's top level ran under --build-snapshot: run the beforeSnapshot hooks, wait
 * for what init left in flight to finish, and either leave the timers in a state that survives
 * the snapshot and let node write it, or exit with BLOCKED naming what cannot be snapshotted.
 */
export function prepareSnapshot(init: { initMs: number; style: string }): void {
  const started = performance.now();
  writeSync(2, `${INIT_DONE_MARKER}${JSON.stringify(init)}\n`);
  const w = watch;
  if (!w) throw new Error('prepareSnapshot() without watchInit()');
  process.dlopen = w.dlopen;
  if (w.addons.length > 0) {
    block('native-addon', `init loaded the native addon ${w.addons[0]}: a V8 startup snapshot cannot hold a native addon's state; use a pure-JavaScript or WebAssembly alternative, or deploy with --snapshot off`);
  }
  const arg = process.argv.find((a) => a.startsWith(DEADLINE_ARG));
  // performance.now() counts from the process start, as the builder's clock does; keep a margin
  // so that we, not its SIGKILL, get to say what was left open.
  const deadline = arg ? Number(arg.slice(DEADLINE_ARG.length)) - 300 : Infinity;

  let phase: 'hooks' | 'settling' | 'ready' = 'hooks';
  const onBeforeExit = (): void => {
    if (phase === 'ready') return;
    const what = phase === 'hooks' ? 'a beforeSnapshot hook returned a promise that never settled' : 'init never settled';
    block('hook-failed', `${what}: nothing was left that could settle it, so the snapshot would miss its work`);
  };
  process.on('beforeExit', onBeforeExit);

  void runHooks(beforeHooks).then(
    () => {
      phase = 'settling';
      settle(false);
    },
    (err: unknown) => block('hook-failed', `a beforeSnapshot hook failed: ${describeError(err)}`),
  );

  // Our poll timers are tracked too (timers made by callbacks that init left in flight must be):
  // leave them out of what we report.
  const own = new WeakSet<object>();
  const theirs = (): Tracked[] => w!.timers.filter((t) => !own.has(t.timer));

  function settle(inPoll: boolean): void {
    const timers = theirs();
    const interval = timers.find((t) => t.timer._repeat && !t.timer._destroyed && t.timer.hasRef());
    if (interval) block('open-handle', `init left an open handle: Timeout (${timerText(interval)}); ${ADVICE}`);
    // Inside its callback, our poll timer still counts as active.
    const open = openResources(inPoll ? 1 : 0);
    const permanent = open.filter((k) => PERMANENT.has(k));
    if (permanent.length > 0) block('open-handle', `init left an open handle: ${describeOpen(permanent, timers)}; ${ADVICE}`);
    if (open.length > 0) {
      if (performance.now() >= deadline) block('open-handle', `init left an open handle: ${describeOpen(open, timers)}; ${ADVICE}`);
      // Ref'd on purpose: an unref'd timer would let the loop end and leave a timer list behind.
      own.add(setTimeout(settle, 10, true));
      return;
    }
    finish();
  }

  function finish(): void {
    w!.hook.disable();
    const pending = theirs().filter((t) => !t.timer._destroyed);
    if (pending.length > 0) {
      block('pending-timer', `init left a timer pending: ${pending.slice(0, 3).map(timerText).join('; ')}; a timer does not survive a snapshot on this node (and breaks every timer after restore): clear it in fnctl.beforeSnapshot(fn) and start it again in fnctl.afterRestore(fn)`);
    }
    // Node 20 keeps the list of a cleared unref'd timer, and its next-expiry, from the build: in the
    // restored process they would keep later timers from ever firing. A ref'd timer of the same
    // duration, cleared at once, deletes such a list; one last timer that fires resets the expiry.
    const durations = new Set(theirs().filter((t) => !t.timer.hasRef()).map((t) => t.ms));
    for (const ms of durations) clearTimeout(setTimeout(noop, ms));
    setTimeout(() => {
      phase = 'ready';
      process.off('beforeExit', onBeforeExit);
      cryptoInSnapshot = (process as unknown as { moduleLoadList: string[] }).moduleLoadList.includes('NativeModule internal/crypto/random');
      // Ours, unchanged: leave it unset as node expects (it re-installs one after restore). A
      // value the function set is kept by node, which says so on stderr.
      if (ownStackLimit && Error.stackTraceLimit === STACK_LIMIT) delete (Error as { stackTraceLimit?: number }).stackTraceLimit;
      watch = undefined;
      writeSync(2, `${READY_MARKER}${JSON.stringify({ prepareMs: performance.now() - started })}\n`);
    }, 1);
  }
}

function noop(): void {}

/** Run hooks in registration order, each awaited when it returns a promise. */
function runHooks(hooks: Hook[]): Promise<void> {
  // A loop over the live array: a hook may register another.
  return (async () => {
    for (let i = 0; i < hooks.length; i++) await hooks[i]!();
  })();
}

// Node 20 (lib/internal/crypto/random.js) keeps two caches of random bytes in the JS heap, so in
// the snapshot: 128 UUIDs for randomUUID() and 1024 six-byte draws for randomInt(). Every restored
// process would replay them. Drawing a whole cache's worth uses up what the build left and makes
// node refill from fresh entropy; the rest of the refill is this process's own.
const UUID_BATCH = 128;
const RANDOM_INT_DRAWS = 1024;

/**
 * In the restored process, before READY: make its randomness its own, then run the afterRestore
 * hooks. Returns undefined when there is nothing to wait for (the common case stays synchronous).
 */
export function afterRestore(): Promise<void> | undefined {
  if (cryptoInSnapshot) {
    const crypto = process.getBuiltinModule('node:crypto') as typeof import('node:crypto');
    for (let i = 0; i < UUID_BATCH; i++) crypto.randomUUID();
    for (let i = 0; i < RANDOM_INT_DRAWS; i++) crypto.randomInt(1);
  }
  return afterHooks.length > 0 ? runHooks(afterHooks) : undefined;
}

export function isBuildingSnapshot(): boolean {
  return v8.startupSnapshot?.isBuildingSnapshot() ?? false;
}
