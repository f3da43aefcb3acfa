// The host side of one microVM: spawns the guest (node running the single-file bundle) in its own
// process group, talks to it over the framed channel on its fd 3, enforces time limits, turns the
// guest's console into records, and reports how it ended. invoke() is the platform's hot path.
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import type { Socket } from 'node:net';
import { FnError } from '../core/errors.js';
import { safeEnv } from '../core/env.js';
import type { Logger } from '../core/log.js';
import { underBatch } from './sched.js';
import { EMPTY_SSL_FLAG, FrameDecoder, FrameType, HOLD_GATE_FLAG, Outbox, writeFrame, type ErrorMeta, type Frame, type InvokeMeta, type ReadyMeta, type ResponseMeta } from '../core/protocol.js';
import { parseConsoleLine, readLines } from './guest/console.js';
import { Lifecycle, isFinal } from './state.js';
import type { JailedCommand } from './jailer.js';
import type { BootInfo, ConsoleSink, InstanceInfo, InvokeRequest, InvokeResult, MicroVmConfig, MicroVmState, StartKind } from './types.js';

export interface MicroVmDeps {
  sink: ConsoleSink;
  log?: Logger;
  /** How to start the guest; the default runs node on the bundle. A jailer or a snapshot restore wraps it. */
  spawnArgs?: (config: MicroVmConfig) => { command: string; args: string[] };
  /**
   * Jail the guest: wraps the command spawnArgs (or the default) gave. MicroVm prepares it before
   * the spawn, attaches the pid, kills and pauses through it, reads its OOM counter and cleans it
   * up before `exited` resolves.
   */
  jail?: (config: MicroVmConfig, plain: { command: string; args: string[] }) => JailedCommand;
  /** The guest is restored from a snapshot (lifecycle goes through `restoring`, start kind `restore`). */
  restore?: boolean;
  /** chrt's path: the guest (jail and all) starts under SCHED_BATCH (see microvm/sched.ts). */
  batch?: string;
}

/** How a microVM ended, as its 'exit' event and `exited` promise report it. */
export interface ExitInfo {
  id: string;
  state: 'stopped' | 'failed';
  code: number | null;
  signal: NodeJS.Signals | null;
  /** What in-flight requests were failed with (also when there were none), or undefined after a clean stop. */
  error?: FnError;
}

const STDERR_TAIL = 20;
/** What a held guest that is not node (or has its own OPENSSL_CONF) runs first: wait for the host's line, then become the guest (`exit` if the host went away). */
const HOLD_SCRIPT = 'unset PWD; read -r _ || exit 0; exec "$@"';
/**
 * A held node guest goes further: node starts at once and stops at its first read, its OpenSSL
 * config (empty), from a pipe that closes when the host's line arrives. Node reads that config
 * before its snapshot or script, so a release skips the exec, loading node's libraries and its
 * early start-up: ~6 ms here (an empty snapshot, released this way or exec'd from a waiting
 * shell, 25 of each). If the host goes away, the group is killed. Both scripts unset the PWD
 * that sh exports, so a held guest's env is what an unheld one gets.
 */
const HOLD_NODE_SCRIPT = 'unset PWD; { read -r _ || kill -s KILL 0; } | exec "$@"';

/**
 * glibc's malloc asks for transparent huge pages: node reads the snapshot file into large
 * buffers before V8 deserialises it, and faulting them in 4 KiB at a time measured a fifth of a
 * 23 MB snapshot's restore (heavy-init 129 → 103 ms p50, an empty snapshot 35 → 30 ms; spawned
 * without a jail, 21 of each; inside a memory cgroup, 12 ms rather than 20). glibc reads the THP
 * mode from /sys, which a jail has only the two files of (jailer.ts THP_DIR). Without THP
 * (`never`) it does nothing.
 */
const GUEST_MALLOC = 'glibc.malloc.hugetlb=1';
const OOM_RE = /JavaScript heap out of memory|Reached heap limit/;

/**
 * node flags of a guest; they depend on the config only, so a snapshot builder can use exactly
 * the same ones (V8 refuses a snapshot built with other heap flags).
 */
export function guestNodeFlags(config: Pick<MicroVmConfig, 'memoryMib'>): string[] {
  const mib = config.memoryMib;
  // Leave a quarter for node itself (the binary, buffers, stacks), which RSS counts but the heap limit does not.
  const oldSpace = Math.max(16, Math.floor(mib * 0.75));
  // Young generation is 3 semi-spaces on top of old space: 48 MiB at V8's default of 16, too much
  // for 128 MiB. A smaller one measured no slower on an allocation-heavy loop.
  const semiSpace = Math.max(1, Math.min(16, Math.floor(mib / 32)));
  return [
    `--max-old-space-size=${oldSpace}`,
    `--max-semi-space-size=${semiSpace}`,
    // One V8 worker thread instead of four: measured no slower on two cores, and three threads fewer per guest.
    '--v8-pool-size=1',
  ];
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(2);
}

/** How many requests a MicroVm's map of requests in flight takes before it is replaced (see `pending`). */
const PENDING_RENEW = 64;

// A class, not an object literal, so every in-flight entry has one hidden class.
class Pending {
  constructor(readonly requestId: string, readonly resolve: (r: InvokeResult) => void, readonly reject: (e: FnError) => void, readonly deadline: number) {}
}

export class MicroVm extends EventEmitter<{ exit: [ExitInfo]; state: [MicroVmState, MicroVmState] }> {
  readonly id: string;
  /** When it started (for a held guest: when it was released, not when its jail was set up). */
  createdAt = Date.now();
  lastUsedAt = this.createdAt;
  invocations = 0;
  rssBytes = 0;
  /** How this microVM came to be; a pool may set 'standby' when it hands out a pre-restored one. */
  start: StartKind;
  /** Settles when the guest process is gone and everything is cleaned up. Never rejects. */
  readonly exited: Promise<ExitInfo>;

  private readonly lifecycle: Lifecycle;
  /**
   * Requests in flight by id, in the order they were sent; replaced by a copy after PENDING_RENEW
   * additions (or twice its size, when that is more, so that copying costs at most half an entry
   * per request). V8 allocates a Map's rehashed table in the generation of the table it replaces,
   * and a replaced table keeps pointing at the entries it held. So once a long-lived Map's table had
   * been promoted (a quiet spell is enough), every later table went straight to old space, and each
   * one replaced kept the requests it held, with their promises and answers, alive until the next
   * full collection. Most gateways (16 of 25) ended up like that, for their whole life: under
   * load, scavenges three times as long (1.7 ms against 0.57), ~20 MB/s promoted, a mark-compact
   * every ~1.6 s, and a worse p99. A new Map starts young and, under load, is replaced long before
   * it could be promoted.
   */
  private pending = new Map<number, Pending>();
  /** Additions to `pending` since it was last replaced. */
  private pendingAdds = 0;
  private nextId = 1;
  private child: ChildProcess | undefined;
  private channel: Socket | undefined;
  private readonly stderrTail: string[] = [];
  private doom: FnError | undefined;
  /** Decided by the first cause of the end: our owner's stop/kill → stopped; anything else → failed. */
  private endAs: 'stopped' | 'failed' | undefined;
  private groupGone = false;
  private sawOom = false;
  private jailed: JailedCommand | undefined;
  private exitInfo: ExitInfo | undefined;
  private finished = false;
  private exitTimer: NodeJS.Timeout | undefined;
  private initError: FnError | undefined;
  private ready: BootInfo | undefined;
  private resolveExited!: (info: ExitInfo) => void;
  private bootSettle: { resolve: () => void; reject: (e: FnError) => void } | undefined;
  /** Set while held (see hold()): lets the guest go on into node (or exec it) and starts the init clock. */
  private releaseGuest: (() => Promise<void>) | undefined;
  /**
   * One timer for every request in flight, armed for the oldest one's deadline: they all have the
   * same limit, so `pending` (a Map, in the order they were sent) is also in deadline order. A
   * timer set and cleared per request cost the gateway a Timeout object and two list operations
   * on every invocation.
   */
  private deadlineTimer: NodeJS.Timeout | undefined;
  private readonly onDeadline = (): void => {
    this.deadlineTimer = undefined;
    // Within a millisecond counts as due: timers have millisecond steps, and requests sent in
    // one tick must all time out together, not the first alone (the others would then fail as
    // crashed when it takes the microVM down).
    const now = performance.now() + 1;
    const expired: number[] = [];
    for (const [id, p] of this.pending) {
      if (p.deadline > now) {
        if (expired.length === 0) this.armDeadline(p.deadline - now);
        break;
      }
      expired.push(id);
    }
    if (expired.length > 0) this.timeout(expired);
  };
  /** The guest answered with a tuple meta, so it understands tuple INVOKEs (see core/protocol.ts). */
  private tuples = false;
  /**
   * INVOKE frames started in this tick (a burst of responses that each start the next request),
   * written together once the tick's I/O is done: one write and one syscall per burst instead of
   * one per request.
   */
  private readonly outbox = new Outbox(() => this.channel, setImmediate);

  private constructor(
    readonly config: MicroVmConfig,
    private readonly deps: MicroVmDeps,
  ) {
    super();
    this.id = config.id;
    this.start = deps.restore ? 'restore' : 'cold';
    this.lifecycle = new Lifecycle(config.id);
    this.lifecycle.onChange((next, prev) => this.emit('state', next, prev));
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
  }

  /** Spawn the guest and wait until its init has run (READY). */
  static async boot(config: MicroVmConfig, deps: MicroVmDeps): Promise<MicroVm> {
    const vm = new MicroVm(config, deps);
    await vm.spawnGuest(false);
    return vm;
  }

  /**
   * Spawn the guest ahead of its request and hold it before anything of the function loads: its
   * jail is set up (namespaces, cgroup joined, uid dropped) and node is started and waits at its
   * first read (HOLD_NODE_SCRIPT); a guest that is not node, or a function with its own
   * OPENSSL_CONF, waits in a shell to exec. release() then costs the rest of node's start instead
   * of the jail's setup and all of it. State `created` until released; a held microVM that dies
   * (or is killed) while held ends like any other.
   */
  static hold(config: MicroVmConfig, deps: MicroVmDeps): MicroVm {
    const vm = new MicroVm(config, deps);
    // Nobody waits for a held guest's boot until release(): a failure is kept for release() to report.
    vm.spawnGuest(true).catch(() => undefined);
    return vm;
  }

  /** Whether this microVM is held (see hold()) and still alive, so release() can start it. */
  get held(): boolean {
    return this.releaseGuest !== undefined && this.lifecycle.state === 'created' && !this.finished;
  }

  /** Let a held guest exec node, and wait until its init has run (READY). */
  release(): Promise<void> {
    const go = this.releaseGuest;
    if (!go) return Promise.reject(new FnError('NOT_ALLOWED_IN_STATE', `microVM ${this.id} is not held`));
    this.releaseGuest = undefined;
    return go();
  }

  /** Set once the guest is ready, i.e. on every MicroVm that boot() resolved with. */
  get bootInfo(): BootInfo {
    if (!this.ready) throw new FnError('NOT_ALLOWED_IN_STATE', `microVM ${this.id}: not booted yet`);
    return this.ready;
  }

  /** Call `listener` once the guest is gone (at once, asynchronously, if it already is). */
  /** Called once the guest is gone (before its jail is cleaned up: see `exited` for that). */
  onExit(listener: (info: ExitInfo) => void): void {
    if (this.exitInfo) queueMicrotask(() => listener(this.exitInfo!));
    else this.once('exit', listener);
  }

  get state(): MicroVmState {
    return this.lifecycle.state;
  }

  get inflight(): number {
    return this.pending.size;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  private spawnGuest(hold: boolean): Promise<void> {
    const { config, deps } = this;
    if (!hold) this.lifecycle.to(deps.restore ? 'restoring' : 'booting');
    const node = deps.spawnArgs?.(config) ?? {
      command: process.execPath,
      args: [...guestNodeFlags(config), config.rootfs.bundlePath],
    };
    // Every node guest starts with an empty OpenSSL config unless the function names its own
    // (OPENSSL_CONF): a held one reads it at its gate (HOLD_NODE_SCRIPT), the others from
    // /dev/null, so that a guest runs alike however it started. Node applies only a `nodejs_conf`
    // section of the system's file, and Debian's has none.
    const emptySsl = node.command === process.execPath && config.env.OPENSSL_CONF === undefined;
    const gate = hold && emptySsl;
    const nodeArgs = emptySsl ? [gate ? HOLD_GATE_FLAG : EMPTY_SSL_FLAG, ...node.args] : node.args;
    // Held: node waits itself, part-started; else a shell inside the jail waits for a line on
    // stdin, then becomes node.
    const plain = !hold
      ? { command: node.command, args: nodeArgs }
      : { command: '/bin/sh', args: ['-c', gate ? HOLD_NODE_SCRIPT : HOLD_SCRIPT, 'fnctl-hold', node.command, ...nodeArgs] };
    let spec = plain;
    if (deps.jail) {
      try {
        const jailed = deps.jail(config, plain);
        jailed.prepare();
        // Held: its setup runs in the background, behind whatever starts or serves meanwhile.
        if (hold) jailed.background(true);
        this.jailed = jailed;
        spec = jailed;
      } catch (err) {
        // Fail closed: no jail, no guest.
        const booted = new Promise<void>((resolve, reject) => (this.bootSettle = { resolve, reject }));
        this.doom = new FnError('INIT_FAILED', `microVM ${this.id} could not be jailed: ${(err as Error).message}`, { cause: err });
        this.finish(null, null);
        return booted;
      }
    }
    const { command, args } = deps.batch ? underBatch(deps.batch, spec) : spec;
    // Never names that change how the host-side programs starting the guest behave (refused at
    // deploy; dropped here too for versions deployed before that).
    const { NODE_OPTIONS: _ignored, ...userEnv } = safeEnv(config.env);
    const env: Record<string, string> = {
      PATH: '/usr/local/bin:/usr/bin:/bin',
      ...userEnv,
      // Platform vars last, so a function's env cannot break the guest (FNCTL_CHANNEL_FD).
      FNCTL_FUNCTION_NAME: config.functionName,
      FNCTL_FUNCTION_VERSION: String(config.version),
      FNCTL_FUNCTION_MEMORY_MB: String(config.memoryMib),
      FNCTL_INSTANCE_ID: config.id,
      // How many requests this guest may be given at once: with one, the runtime can tag console
      // lines with the current request without AsyncLocalStorage and its promise hooks.
      FNCTL_CONCURRENCY: String(config.concurrency),
      FNCTL_CHANNEL_FD: '3',
      // The runtime takes it out of process.env again.
      GLIBC_TUNABLES: GUEST_MALLOC,
    };
    let t0 = performance.now();
    const booted = new Promise<void>((resolve, reject) => (this.bootSettle = { resolve, reject }));
    // detached: a process group of its own, so one kill takes everything the function started.
    const child = spawn(command, args, { stdio: [hold ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'], detached: true, env, cwd: dirname(config.rootfs.bundlePath) });
    this.child = child;
    if (child.pid !== undefined) this.jailed?.attach(child.pid);
    child.on('error', (err) => {
      // Spawn failures (no such command) emit no 'exit'.
      if (child.pid === undefined) {
        this.doom ??= new FnError('INIT_FAILED', `microVM ${this.id} could not start: ${err.message}`, { cause: err });
        this.finish(null, null);
      }
    });
    child.on('exit', (code, signal) => this.onChildExit(code, signal));
    child.on('close', (code, signal) => this.finish(code, signal));
    readLines(child.stdout!, (line) => this.line('stdout', line));
    readLines(child.stderr!, (line) => this.line('stderr', line));
    const channel = child.stdio[3] as Socket;
    this.channel = channel;
    channel.on('error', () => {});
    const decoder = new FrameDecoder((frame) => this.onFrame(frame, t0));
    channel.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch (err) {
        this.terminate(new FnError('FUNCTION_CRASHED', `microVM ${this.id}: channel protocol error: ${(err as Error).message}`));
      }
    });
    const start = (): Promise<void> => {
      const initTimer = setTimeout(() => {
        this.terminate(new FnError('INIT_TIMEOUT', `init did not finish within ${+seconds(config.initTimeoutMs)}s`));
      }, config.initTimeoutMs);
      return booted.finally(() => clearTimeout(initTimer));
    };
    if (!hold) return start();
    const stdin = child.stdin!;
    stdin.on('error', () => {});
    this.releaseGuest = () => {
      if (this.finished) return booted;
      this.lifecycle.to(deps.restore ? 'restoring' : 'booting');
      t0 = performance.now();
      this.createdAt = this.lastUsedAt = Date.now();
      this.jailed?.background(false);
      stdin.end('\n');
      return start();
    };
    return booted;
  }

  private onFrame(frame: Frame, t0: number): void {
    switch (frame.type) {
      case FrameType.RESPONSE: {
        const p = this.settle(frame.id);
        if (!p) return;
        const meta = frame.meta as ResponseMeta;
        this.rssBytes = meta.rssBytes;
        if (frame.tuple) this.tuples = true;
        p.resolve({ status: meta.status, headers: meta.headers, body: frame.payload, handlerMs: meta.handlerMs, rssBytes: meta.rssBytes });
        return;
      }
      case FrameType.ERROR: {
        const p = this.settle(frame.id);
        if (!p) return;
        const meta = frame.meta as ErrorMeta;
        this.rssBytes = meta.rssBytes;
        const details: Record<string, unknown> = { ...meta.details, handlerMs: meta.handlerMs };
        if (meta.stack) details.stack = meta.stack;
        p.reject(FnError.fromPayload({ code: meta.code, message: meta.message, details }));
        return;
      }
      case FrameType.READY: {
        const meta = frame.meta as ReadyMeta;
        if (this.lifecycle.state !== 'booting' && this.lifecycle.state !== 'restoring') return;
        this.ready = { pid: this.child!.pid!, style: meta.style, initMs: meta.initMs, bootMs: performance.now() - t0, restored: meta.restored, fields: meta.fields === true };
        this.lifecycle.to('idle');
        this.lastUsedAt = Date.now();
        this.deps.log?.debug({ instance: this.id, ...this.ready }, 'microVM ready');
        this.bootSettle?.resolve();
        return;
      }
      case FrameType.INIT_ERROR: {
        const meta = frame.meta as ErrorMeta;
        // The function's frames are what its author needs; node's own module-loading frames are noise.
        const stack = meta.stack?.split('\n').filter((l) => !/^\s+at (.*\()?node:internal\//.test(l)).join('\n');
        const message = meta.code === 'INIT_FAILED' ? `init failed: ${stack ?? meta.message}` : meta.message;
        this.initError = FnError.fromPayload({ code: meta.code, message, details: meta.stack ? { stack: meta.stack } : {} });
        // The guest exits by itself after sending this; make sure of it.
        setTimeout(() => this.signalGroup('SIGKILL'), 2000).unref();
        return;
      }
    }
  }

  /** Take request `id` out of flight: the state goes back to idle when it was the last one. */
  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    if (!p) return undefined;
    this.pending.delete(id);
    this.lastUsedAt = Date.now();
    if (this.pending.size === 0 && this.lifecycle.state === 'busy') this.lifecycle.to('idle');
    return p;
  }

  /** Run one request in the guest. Rejects with an FnError (FUNCTION_ERROR, _TIMEOUT, _CRASHED, OUT_OF_MEMORY, …). */
  invoke(req: InvokeRequest): Promise<InvokeResult> {
    const state = this.lifecycle.state;
    if (state !== 'idle' && state !== 'busy') {
      return Promise.reject(new FnError('NOT_ALLOWED_IN_STATE', `microVM ${this.id}: cannot invoke while ${state}`));
    }
    if (this.pending.size >= this.config.concurrency) {
      return Promise.reject(new FnError('THROTTLED', `microVM ${this.id} already serves ${this.config.concurrency} requests`));
    }
    const id = this.nextId;
    this.nextId = id >= 0xffffffff ? 1 : id + 1;
    if (state === 'idle') this.lifecycle.to('busy');
    this.invocations++;
    this.lastUsedAt = Date.now();
    const timeoutMs = this.config.timeoutMs;
    return new Promise<InvokeResult>((resolve, reject) => {
      if (++this.pendingAdds >= Math.max(PENDING_RENEW, 2 * this.pending.size)) {
        this.pending = new Map(this.pending);
        this.pendingAdds = 0;
      }
      this.pending.set(id, new Pending(req.requestId, resolve, reject, performance.now() + timeoutMs));
      if (!this.deadlineTimer) this.armDeadline(timeoutMs);
      const { requestId, method, path, query, headers, sourceIp } = req;
      const meta: InvokeMeta = { requestId, method, path, query, headers, timeoutMs, sourceIp };
      // Idle or busy: READY has come, so `ready` is set.
      this.outbox.addInvoke(id, meta, req.body, this.ready!.fields, this.tuples);
    });
  }

  private armDeadline(ms: number): void {
    this.deadlineTimer = setTimeout(this.onDeadline, Math.max(1, Math.ceil(ms)));
    this.deadlineTimer.unref();
  }

  /** Requests `ids` ran over their time: each fails with FUNCTION_TIMEOUT, the rest in flight with FUNCTION_CRASHED. */
  private timeout(ids: number[]): void {
    const limit = seconds(this.config.timeoutMs);
    let first: Pending | undefined;
    for (const id of ids) {
      const p = this.pending.get(id);
      if (!p) continue;
      this.pending.delete(id);
      first ??= p;
      p.reject(new FnError('FUNCTION_TIMEOUT', `function timed out after ${limit} seconds`, { details: { instance: this.id } }));
    }
    if (!first) return;
    // A handler that ran over may hold anything: the only safe way on is a fresh microVM.
    this.terminate(new FnError('FUNCTION_CRASHED', `microVM ${this.id} was stopped because request ${first.requestId} timed out after ${limit} seconds`));
  }

  /** Kill the whole process group now; in-flight requests will fail with `error`. */
  private terminate(error: FnError, endAs: 'stopped' | 'failed' = 'failed'): void {
    this.endAs ??= endAs;
    this.doom ??= error;
    if (this.lifecycle.can('stopping')) this.lifecycle.to('stopping');
    this.signalGroup('SIGKILL');
  }

  /** Graceful: the guest finishes what is in flight, then exits; SIGKILL after `graceMs`. */
  stop(graceMs = 5000): Promise<void> {
    const done = this.exited.then(() => undefined);
    if (this.finished || this.lifecycle.state === 'stopping') return done;
    const state = this.lifecycle.state;
    if (state === 'idle' || state === 'busy' || state === 'paused') {
      this.endAs ??= 'stopped';
      this.lifecycle.to('stopping');
      if (state === 'paused') this.resumeGuest();
      // After the INVOKEs of this tick: the guest must see them before it is told to finish.
      this.outbox.flush();
      writeFrame(this.channel!, FrameType.SHUTDOWN, 0, {});
      const t = setTimeout(() => {
        this.doom ??= new FnError('FUNCTION_CRASHED', `microVM ${this.id} was stopped: requests still in flight after ${seconds(graceMs)} seconds`);
        this.signalGroup('SIGKILL');
      }, graceMs);
      return done.finally(() => clearTimeout(t));
    }
    this.terminate(new FnError('UNAVAILABLE', `microVM ${this.id} was stopped during init`), 'stopped');
    return done;
  }

  /** Immediate: SIGKILL the process group; in-flight requests fail with FUNCTION_CRASHED naming `reason`. */
  kill(reason: string): Promise<void> {
    if (!this.finished) {
      const booting = !this.ready;
      this.terminate(new FnError(booting ? 'UNAVAILABLE' : 'FUNCTION_CRASHED', `microVM ${this.id} was killed${booting ? ' during init' : ''}: ${reason}`), 'stopped');
    }
    return this.exited.then(() => undefined);
  }

  info(): InstanceInfo {
    const { id, config, start, createdAt, lastUsedAt, invocations, rssBytes } = this;
    const { functionName, version } = config;
    return { id, functionName, version, state: this.state, start, pid: this.pid, createdAt, lastUsedAt, inflight: this.inflight, invocations, rssBytes };
  }

  /** Freeze the guest (the cgroup freezer, else SIGSTOP): a standby microVM costs no CPU. */
  async pause(): Promise<void> {
    this.lifecycle.to('paused');
    if (this.jailed) await this.jailed.pause();
    else this.signalGroup('SIGSTOP');
  }

  async resume(): Promise<void> {
    if (this.jailed) await this.jailed.resume();
    else this.signalGroup('SIGCONT');
    this.lifecycle.to('idle');
  }

  private resumeGuest(): void {
    if (this.jailed) void this.jailed.resume().catch(() => undefined);
    else this.signalGroup('SIGCONT');
  }

  private signalGroup(signal: NodeJS.Signals): void {
    // Whatever escaped the process group is still in the cgroup.
    if (signal === 'SIGKILL') this.jailed?.kill();
    const pid = this.child?.pid;
    if (pid === undefined || this.groupGone) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // ESRCH: the group is already gone.
    }
  }

  private onChildExit(code: number | null, signal: NodeJS.Signals | null): void {
    // Take down whatever the function started, while the group id cannot have been reused yet.
    this.signalGroup('SIGKILL');
    this.groupGone = true;
    // Refuse new requests at once; the final state comes with 'close'.
    if (this.lifecycle.can('stopping')) this.lifecycle.to('stopping');
    // 'close' follows once stdout/stderr/channel drain; if something escaped the group and holds
    // them open, stop waiting.
    this.exitTimer = setTimeout(() => {
      for (const s of this.child?.stdio ?? []) (s as Readable | null)?.destroy();
      this.finish(code, signal);
    }, 1000);
  }

  private finish(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.exitTimer);
    clearTimeout(this.deadlineTimer);
    const how = signal ? `signal ${signal}` : `code ${code}`;
    // The cgroup OOM killer leaves no message, only a counter.
    if (!this.sawOom && this.jailed?.oomKilled()) this.sawOom = true;
    const details = { code, signal, stderr: [...this.stderrTail] };
    // What in-flight requests fail with: why we killed it, else what the guest died of.
    const error = this.doom ?? (this.sawOom ? new FnError('OUT_OF_MEMORY', `function ran out of memory (limit ${this.config.memoryMib} MiB)`, { details }) : undefined);
    if (this.pending.size > 0) {
      // The first line of the last record ("Uncaught Exception Error: boom"), not its whole stack.
      const last = this.stderrTail.findLast((l) => l.trim() !== '')?.split('\n', 1)[0]!.replaceAll('\t', ' ').slice(0, 500);
      const crash = error ?? new FnError('FUNCTION_CRASHED', `microVM ${this.id} exited with ${how}${last ? `: ${last}` : ''}`, { details });
      for (const p of this.pending.values()) p.reject(crash);
      this.pending.clear();
    }
    if (!this.ready) {
      const passOn = error && ['INIT_TIMEOUT', 'UNAVAILABLE', 'INIT_FAILED'].includes(error.code);
      const tail = this.stderrTail.length ? `:\n${this.stderrTail.join('\n')}` : '';
      this.bootSettle?.reject(
        this.initError ??
          (passOn
            ? error
            : new FnError('INIT_FAILED', this.sawOom ? `init ran out of memory (limit ${this.config.memoryMib} MiB)` : `microVM ${this.id} exited during init with ${how}${tail}`, { details })),
      );
    }
    const end = this.endAs ?? 'failed';
    if (!isFinal(this.lifecycle.state)) {
      if (this.lifecycle.can('stopping')) this.lifecycle.to('stopping');
      this.lifecycle.to(end);
    }
    const child = this.child;
    if (child) {
      child.removeAllListeners();
      for (const s of child.stdio as (Readable | null)[]) {
        s?.removeAllListeners();
        s?.on('error', () => {});
        s?.destroy();
      }
    }
    const info: ExitInfo = { id: this.id, state: end, code, signal };
    // After a clean stop there is nothing to report; after a crash, what the guest died of.
    const reported = error ?? (end === 'stopped' ? undefined : new FnError('FUNCTION_CRASHED', `microVM ${this.id} exited with ${how}`, { details }));
    if (reported) info.error = reported;
    this.deps.log?.debug({ instance: this.id, code, signal, state: end, error: reported?.message }, 'microVM exited');
    // Pools hear of the exit at once, so no request is sent to a dead microVM; `exited` (what
    // stop() and kill() wait for) resolves only once the jail is cleaned up, so nothing is left.
    this.exitInfo = info;
    this.emit('exit', info);
    const done = (): void => this.resolveExited(info);
    if (this.jailed) void this.jailed.cleanup().then(done, done);
    else done();
  }

  private line(stream: 'stdout' | 'stderr', line: string): void {
    const parsed = parseConsoleLine(line);
    if (stream === 'stderr') {
      // Seen as it passes: V8's native stack after the message can push it out of the tail.
      if (!this.sawOom && OOM_RE.test(line)) this.sawOom = true;
      if (this.stderrTail.length >= STDERR_TAIL) this.stderrTail.shift();
      this.stderrTail.push(parsed.message);
    }
    const { functionName, version } = this.config;
    const { requestId, level, message } = parsed;
    this.deps.sink.record({ time: Date.now(), functionName, version, instance: this.id, stream, requestId, level, message });
  }
}
