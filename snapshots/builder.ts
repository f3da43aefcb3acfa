// Builds a function's V8 startup snapshot: runs `node <microVM flags> --snapshot-blob OUT
// --build-snapshot BUNDLE` with an empty env (no function env, no secrets in the heap), in a temp
// folder and a process group of its own, under a time limit that SIGKILLs the group: a build never
// hangs. The guest runtime (microvm/guest/hooks.ts) tells us, by marker lines on stderr, when init
// is done, why the function cannot be snapshotted, or that node may write the heap.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FnError, type ErrorPayload } from '../core/errors.js';
import { SNAPSHOT_BLOB_FLAG, type HandlerStyle } from '../core/protocol.js';
import { guestNodeFlags } from '../microvm/microvm.js';
import { parseConsoleLine, readLines } from '../microvm/guest/console.js';
// hooks.ts has no side effects on import (runtime.ts has: never import it on the host).
import { BLOCKED_MARKER, DEADLINE_ARG, INIT_DONE_MARKER, INIT_ERROR_MARKER, READY_MARKER, type BlockedKind } from '../microvm/guest/hooks.js';

export interface SpawnSpec {
  command: string;
  args: string[];
}

export interface BuildInput {
  bundlePath: string;
  /** Where node writes the blob (the store passes a temp name and renames it when all is well). */
  outPath: string;
  memoryMib: number;
  /** Init limit: spawn until init, beforeSnapshot hooks and what init left in flight are done. */
  initTimeoutMs: number;
  /** Once init is done, how long node may take to write the heap (default 60 s). */
  serializeTimeoutMs?: number;
  /** Wraps the plain command, e.g. in a jailer; the wrapper must keep its arguments as they are. */
  spawnArgs?: (plain: SpawnSpec) => SpawnSpec;
}

export type NotSnapshotableKind = BlockedKind | 'timeout' | 'unsupported' | 'node-error';

interface BuildCommon {
  buildMs: number;
  pid: number | undefined;
  /** node's warnings during the build (e.g. a built-in module it has not verified in snapshots). */
  warnings: string[];
  /** The function's console records during init (last 50). */
  logs: string[];
}

export interface BuildOk extends BuildCommon {
  status: 'ok';
  blobPath: string;
  blobBytes: number;
  /** The function's module top level, ms. */
  initMs: number;
  style: HandlerStyle;
  flags: string[];
}

export interface BuildNotSnapshotable extends BuildCommon {
  status: 'not-snapshotable';
  kind: NotSnapshotableKind;
  /** One line for the user, e.g. "init did not finish within 10 s". */
  reason: string;
  initMs?: number;
}

export type BuildResult = BuildOk | BuildNotSnapshotable;

const PATH = '/usr/local/bin:/usr/bin:/bin';
const OOM_RE = /JavaScript heap out of memory|Reached heap limit/;
const WARNING_RE = /^\(node:\d+\) (\w*Warning): (.*)$/;

/**
 * Build a snapshot of `bundlePath` into `outPath`. Resolves with ok or with why the function
 * cannot be snapshotted. Throws FnError INIT_FAILED when init threw (that fails a deploy whatever
 * its snapshot mode), INVALID_BUNDLE when the bundle exports no handler, SNAPSHOT_FAILED when node
 * could not be started.
 */
export async function buildSnapshot(input: BuildInput): Promise<BuildResult> {
  const { bundlePath, outPath, memoryMib, initTimeoutMs } = input;
  const serializeTimeoutMs = input.serializeTimeoutMs ?? 60_000;
  const flags = guestNodeFlags({ memoryMib });
  const plain: SpawnSpec = {
    command: process.execPath,
    args: [...flags, SNAPSHOT_BLOB_FLAG, outPath, '--build-snapshot', bundlePath, `${DEADLINE_ARG}${initTimeoutMs}`],
  };
  const { command, args } = input.spawnArgs ? input.spawnArgs(plain) : plain;
  await rm(outPath, { force: true });
  const cwd = await mkdtemp(join(tmpdir(), 'fnctl-snapshot-'));
  const t0 = performance.now();
  try {
    const run = await runBuilder(command, args, cwd, initTimeoutMs, serializeTimeoutMs);
    const buildMs = performance.now() - t0;
    return await interpret(run, { outPath, memoryMib, initTimeoutMs, serializeTimeoutMs, flags, buildMs });
  } finally {
    await rm(cwd, { recursive: true, force: true });
  }
}

interface Run {
  pid: number | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: 'init' | 'serialize' | undefined;
  initDone: { initMs: number; style: HandlerStyle } | undefined;
  ready: boolean;
  blocked: { kind: BlockedKind; reason: string } | undefined;
  initError: ErrorPayload | undefined;
  sawOom: boolean;
  oomAfterReady: boolean;
  warnings: string[];
  logs: string[];
  /** stderr lines that are neither console records, markers nor warnings (blank ones too): node's own messages. */
  other: string[];
}

function runBuilder(command: string, args: string[], cwd: string, initTimeoutMs: number, serializeTimeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const run: Run = {
      pid: undefined, code: null, signal: null, timedOut: undefined, initDone: undefined, ready: false, blocked: undefined,
      initError: undefined, sawOom: false, oomAfterReady: false, warnings: [], logs: [], other: [],
    };
    // detached: its own process group, so the kill takes whatever init started too.
    const child = spawn(command, args, { cwd, env: { PATH }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    run.pid = child.pid;
    const killGroup = (): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // ESRCH: already gone.
      }
    };
    let timer = setTimeout(() => {
      run.timedOut = 'init';
      killGroup();
    }, initTimeoutMs);
    let warningTail = false;
    const onLine = (stream: 'stdout' | 'stderr', line: string): void => {
      if (stream === 'stderr') {
        if (line.startsWith(INIT_DONE_MARKER)) {
          run.initDone = parseJson(line.slice(INIT_DONE_MARKER.length)) as Run['initDone'];
          return;
        }
        if (line.startsWith(READY_MARKER)) {
          run.ready = true;
          clearTimeout(timer);
          timer = setTimeout(() => {
            run.timedOut = 'serialize';
            killGroup();
          }, serializeTimeoutMs);
          return;
        }
        if (line.startsWith(BLOCKED_MARKER)) {
          run.blocked = parseJson(line.slice(BLOCKED_MARKER.length)) as Run['blocked'];
          return;
        }
        if (line.startsWith(INIT_ERROR_MARKER)) {
          run.initError = parseJson(line.slice(INIT_ERROR_MARKER.length)) as ErrorPayload;
          return;
        }
        if (OOM_RE.test(line)) {
          run.sawOom = true;
          run.oomAfterReady ||= run.ready;
        }
        // node's own note when a function set Error.stackTraceLimit during init: not for the user.
        if (line.startsWith('Deleting Error.stackTraceLimit from the snapshot')) return;
        const warning = WARNING_RE.exec(line);
        if (warning) {
          run.warnings.push(`${warning[1]}: ${warning[2]}`);
          warningTail = true;
          return;
        }
        // A warning's explanation lines, up to node's "(Use `node --trace-warnings ...`" hint.
        if (warningTail && !/^\d{4}-\d\d-\d\dT/.test(line)) {
          if (!line.startsWith('(Use `node')) run.warnings[run.warnings.length - 1] += ` ${line.trim()}`;
          else warningTail = false;
          return;
        }
        warningTail = false;
      }
      const parsed = parseConsoleLine(line);
      if (parsed.level !== undefined) {
        // node prints its warnings through console.error, which the guest captures.
        const warning = WARNING_RE.exec(parsed.message.split('\n', 1)[0]!);
        if (warning) {
          const more = parsed.message.split('\n').slice(1).filter((l) => !l.startsWith('(Use `node'));
          run.warnings.push([`${warning[1]}: ${warning[2]}`, ...more].join(' '));
          return;
        }
        run.logs.push(`${parsed.level}\t${parsed.message}`);
        if (run.logs.length > 50) run.logs.shift();
      } else if (stream === 'stderr') {
        if (run.other.length < 200) run.other.push(line);
      } else {
        run.logs.push(line);
        if (run.logs.length > 50) run.logs.shift();
      }
    };
    readLines(child.stdout!, (l) => onLine('stdout', l));
    readLines(child.stderr!, (l) => onLine('stderr', l));
    let closeTimer: NodeJS.Timeout | undefined;
    child.on('error', (err) => {
      clearTimeout(timer);
      if (child.pid === undefined) reject(new FnError('SNAPSHOT_FAILED', `cannot start the snapshot builder (${command}): ${err.message}`, { cause: err }));
    });
    child.on('exit', (code, signal) => {
      run.code = code;
      run.signal = signal;
      clearTimeout(timer);
      // Whatever init started dies with the builder.
      killGroup();
      // 'close' waits for the pipes; something that escaped the group must not keep us waiting.
      closeTimer = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        resolve(run);
      }, 1000);
    });
    child.on('close', () => {
      clearTimeout(closeTimer);
      clearTimeout(timer);
      resolve(run);
    });
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function secondsText(ms: number): string {
  return `${+(ms / 1000).toFixed(2)} s`;
}

// Node 20 builds a snapshot in a bare context: these exist in restored microVMs but not while
// init runs under --build-snapshot, and node:http (so fetch) cannot even load there.
const UNSUPPORTED: [RegExp, (m: RegExpExecArray, stack: string) => string][] = [
  [/\b(WebAssembly|SharedArrayBuffer|Atomics) is not defined\b/, (m) => m[1]!],
  [/\.(toSorted|toReversed|toSpliced|with|resize|transfer)\b is not a function/, (m, stack) =>
    /\bnode:http:|undici/.test(stack) ? 'node:http (directly, through fetch or through a library)' : `Array/ArrayBuffer .${m[1]}()`],
];

async function interpret(
  run: Run,
  ctx: { outPath: string; memoryMib: number; initTimeoutMs: number; serializeTimeoutMs: number; flags: string[]; buildMs: number },
): Promise<BuildResult> {
  const common: BuildCommon = { buildMs: ctx.buildMs, pid: run.pid, warnings: run.warnings, logs: run.logs };
  const initMs = run.initDone?.initMs;
  const no = (kind: NotSnapshotableKind, reason: string): BuildNotSnapshotable => {
    const r: BuildNotSnapshotable = { status: 'not-snapshotable', kind, reason, ...common };
    if (initMs !== undefined) r.initMs = initMs;
    return r;
  };
  if (run.timedOut === 'init') {
    const why = run.initDone ? ': its module top level ran, but beforeSnapshot hooks or work it started were still running' : '';
    return no('timeout', `init did not finish within ${secondsText(ctx.initTimeoutMs)}${why}`);
  }
  if (run.timedOut === 'serialize') return no('node-error', `node did not finish writing the snapshot within ${secondsText(ctx.serializeTimeoutMs)}`);
  if (run.blocked) return no(run.blocked.kind, run.blocked.reason);
  const initError = run.initError ?? (run.code !== 0 ? uncaught(run.other) : undefined);
  if (initError) {
    const e = initError;
    if (e.code === 'INVALID_BUNDLE') throw new FnError('INVALID_BUNDLE', e.message);
    const stack = cleanStack(e.stack) ?? e.message;
    for (const [re, feature] of UNSUPPORTED) {
      const m = re.exec(e.message);
      if (m) {
        return no('unsupported', `init uses ${feature(m, e.stack ?? '')}, which node ${process.version} does not provide while it builds a snapshot (restored microVMs have it): move that into the handler or fnctl.afterRestore(fn), or deploy with --snapshot off (${e.message})`);
      }
    }
    throw new FnError('INIT_FAILED', `init failed: ${stack}`, { details: { stack: e.stack ?? e.message, phase: 'snapshot-build' } });
  }
  if (run.sawOom) {
    if (run.oomAfterReady) return no('node-error', `node ran out of memory writing the snapshot (limit ${ctx.memoryMib} MiB)`);
    throw new FnError('INIT_FAILED', `init ran out of memory (limit ${ctx.memoryMib} MiB)`, { details: { phase: 'snapshot-build' } });
  }
  const how = run.signal ? `signal ${run.signal}` : `exit code ${run.code}`;
  const said = run.other.filter((l) => l.trim() !== '').slice(0, 3).map((l) => l.trim()).join(' | ');
  if (run.code === 0 && run.ready) {
    const s = await stat(ctx.outPath).catch(() => undefined);
    if (s && s.size > 0) {
      return { status: 'ok', blobPath: ctx.outPath, blobBytes: s.size, initMs: initMs ?? 0, style: run.initDone?.style ?? 'fetch', flags: ctx.flags, ...common };
    }
    return no('node-error', `node exited without writing the snapshot${said ? `: ${said}` : ''}`);
  }
  if (!run.initDone && !said) return no('node-error', `the snapshot builder exited with ${how} before init finished`);
  return no('node-error', `node could not write the snapshot (${how})${said ? `: ${said}` : ''}`);
}

/**
 * An exception that init threw, from node's own report of it: under --build-snapshot node 20 exits
 * on it without emitting 'uncaughtException', so the runtime never sees it. A throw at top level
 * prints "FILE:LINE", the source line, a caret, a blank line, then the stack; one in a callback
 * prints "FILE:LINE: Uncaught Error: message".
 */
function uncaught(lines: string[]): ErrorPayload | undefined {
  for (const line of lines) {
    const m = /^(.+?):(\d+): Uncaught (.*)$/.exec(line);
    if (m) return { code: 'INIT_FAILED', message: m[3]!, stack: `${m[3]}\n    at ${m[1]}:${m[2]}` };
  }
  const caret = lines.findIndex((l) => /^\s*\^+\s*$/.test(l));
  if (caret < 0) return undefined;
  let start = caret + 1;
  while (start < lines.length && lines[start]!.trim() === '') start++;
  let end = start;
  while (end < lines.length && lines[end]!.trim() !== '' && !/^Node\.js v/.test(lines[end]!)) end++;
  if (end === start) return undefined;
  const stack = lines.slice(start, end).join('\n');
  const message = lines[start]!.replace(/^(Uncaught )?([\w$]*(Error|Exception)): /, '');
  return { code: 'INIT_FAILED', message, stack };
}

/** The function's frames are what its author needs; node's module-loading frames are noise. */
function cleanStack(stack: string | undefined): string | undefined {
  return stack?.split('\n').filter((l) => !/^\s+at (.*\()?node:internal\//.test(l)).join('\n');
}
