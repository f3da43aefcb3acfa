// The guest runtime: the first module of every function bundle. Its top level runs before the
// function's (the function's init), so it times init, captures the console and turns any error
// thrown by init into INIT_ERROR. startGuest then finds the handler and serves INVOKE frames from
// the host over the channel on fd 3, several at once, multiplexed by frame id.
//
// The channel is opened only inside serve(), never at module top level: when the bundle runs
// under `node --build-snapshot`, restoreMain() (which ends in serve()) becomes the snapshot's
// deserialize-main function instead, so the snapshot holds the initialised function and no handle
// (the builder waits forever on one). hooks.ts holds the build-time checks and restore hooks.
import type { AsyncLocalStorage as Als } from 'node:async_hooks';
import net from 'node:net';
import { inspect } from 'node:util';
import v8 from 'node:v8';
import type { ErrorPayload } from '../../core/errors.js';
import { FnError } from '../../core/errors.js';
import { EMPTY_SSL_FLAG, FrameDecoder, FrameType, HOLD_GATE_FLAG, Outbox, SNAPSHOT_BLOB_FLAG, encodeFrame, writeFrame, type Frame, type HandlerStyle, type InvokeMeta } from '../../core/protocol.js';
import {
  identityFromEnv,
  makeFetchAdapter,
  makeLambdaAdapter,
  trackEnvWrites,
  type Adapter,
  type FetchHandler,
  type GuestResponse,
  type LambdaHandler,
} from './adapters.js';
import { formatConsoleLine, installConsoleCapture } from './console.js';
import { INIT_ERROR_MARKER, afterRestore, installHooksApi, prepareSnapshot, watchInit } from './hooks.js';
import { ownsWebGlobals } from './web.js';

const initStart = performance.now();

type Phase = 'init' | 'serving' | 'failed';
let phase: Phase = 'init';
let channel: net.Socket | undefined;
let requestIdNow: () => string | undefined = () => undefined;

installConsoleCapture(() => requestIdNow());
installFatalHandlers();
dropNodeSettings();
// Before the function's module runs: its top level may register hooks, and under the snapshot
// builder everything it starts is watched.
installHooksApi();
if (v8.startupSnapshot?.isBuildingSnapshot()) watchInit();

export { INIT_ERROR_MARKER };

type Found =
  | { style: 'fetch'; fetch: FetchHandler }
  | { style: 'lambda'; handler: LambdaHandler }
  | { style: 'none'; message: string };

export function findHandler(mod: Record<string, unknown>): Found {
  const def = mod.default as Record<string, unknown> | undefined | null;
  const hasDefault = def !== null && (typeof def === 'object' || typeof def === 'function');
  if (hasDefault && typeof def!.fetch === 'function') {
    return { style: 'fetch', fetch: (def!.fetch as FetchHandler).bind(def) };
  }
  if (typeof mod.fetch === 'function') return { style: 'fetch', fetch: mod.fetch as FetchHandler };
  // CommonJS `module.exports = { handler }` arrives through esbuild's interop as mod.handler
  // and/or mod.default.handler.
  if (typeof mod.handler === 'function') return { style: 'lambda', handler: mod.handler as LambdaHandler };
  if (hasDefault && typeof def!.handler === 'function') return { style: 'lambda', handler: def!.handler as LambdaHandler };
  const exported = Object.keys(mod).filter((k) => k !== '__esModule');
  return {
    style: 'none',
    message:
      'the function exports no handler: export a Web-standard one, `export default { fetch(request, env, ctx) { … } }`, ' +
      'or an AWS Lambda one, `export const handler = async (event, context) => { … }`' +
      ` (it exports ${exported.length ? exported.join(', ') : 'nothing'})`,
  };
}

/** Called by the bundle entry after the function's module top level (its init) has run. */
export function startGuest(mod: Record<string, unknown>): void {
  const initMs = performance.now() - initStart;
  const found = findHandler(mod);
  if (found.style === 'none') {
    reportInitError({ code: 'INVALID_BUNDLE', message: found.message });
    return;
  }
  const snapshot = v8.startupSnapshot;
  if (snapshot?.isBuildingSnapshot()) {
    snapshot.setDeserializeMainFunction(() => restoreMain(found));
    warmUp();
    prepareSnapshot({ initMs, style: found.style });
    return;
  }
  serve(found, () => initMs, false);
}

/**
 * Before the snapshot: take the guest's own request path once, both handler styles, with handlers
 * of its own (never the function's) and a request of its own, framed and unframed. Its functions
 * are then compiled in the snapshot, so a restored microVM's first request does not compile them
 * (~1 ms). Nothing of it is kept but compiled code: no env is read into a cache (envCopy caches
 * only once serve() tracks env writes), and undici is not loaded.
 */
function warmUp(): void {
  // Only with our Request and Response: a function that replaced them would have its own code run here.
  if (!ownsWebGlobals()) return;
  try {
    warmUpPaths();
  } catch {
    // Warming up is an optimisation: never a reason for a build to fail.
  }
}

function warmUpPaths(): void {
  const meta: InvokeMeta = { requestId: 'warm-up', method: 'GET', path: '/warm-up', query: 'a=1', headers: ['host', 'localhost', 'accept', '*/*'], timeoutMs: 1000, sourceIp: '127.0.0.1' };
  const frames: Buffer[] = [];
  // Frames in the fields form as the host writes them, into a list (flushed by hand: nothing is scheduled).
  const chunks: Buffer[] = [];
  const collect = { write: (c: string | Buffer, e?: BufferEncoding) => chunks.push(typeof c === 'string' ? Buffer.from(c, e) : c) > 0, cork() {}, uncork() {} };
  const host = new Outbox(() => collect, () => {});
  host.addInvoke(1, meta, Buffer.alloc(0), true, false);
  host.flush();
  const invoke = Buffer.concat(chunks);
  new FrameDecoder((frame) => frames.push(frame.payload)).push(invoke);
  const answers = new Outbox(() => collect, () => {});
  const respond = (r: GuestResponse): void => {
    answers.addResponse(1, { status: r.status, headers: r.headers, handlerMs: 0, rssBytes: 0 }, r.body);
    answers.flush();
  };
  // What fetch handlers commonly do first: read the URL and its query, answer with text or JSON.
  const fetchStyle = makeFetchAdapter((req) => {
    const url = new URL(req.url);
    return url.searchParams.get('json') === null ? new Response(url.pathname, { headers: { 'content-type': 'text/plain' } }) : Response.json({ path: url.pathname });
  }, () => {});
  const lambdaStyle = makeLambdaAdapter(() => Promise.resolve({ statusCode: 200, body: 'ok' }), identityFromEnv({}));
  for (const out of [fetchStyle(meta, Buffer.alloc(0)), fetchStyle({ ...meta, query: 'json=1' }, Buffer.alloc(0)), lambdaStyle(meta, Buffer.alloc(0))]) {
    if (out instanceof Promise) out.then(respond, () => {});
    else respond(out);
  }
  // The channel's stream paths too, on a socket without a handle (nothing is opened): a frame
  // pushed in as a read delivers it, and an answer flushed as serve() writes one (the write
  // fails unheard: there is nothing to write to).
  const sock = new net.Socket();
  sock.on('error', () => {});
  const decoder = new FrameDecoder((frame) => frames.push(frame.payload));
  sock.on('data', (chunk: Buffer) => decoder.push(chunk));
  sock.push(invoke);
  const out = new Outbox(() => sock, () => {});
  out.addResponse(2, { status: 200, headers: ['content-type', 'text/plain'], handlerMs: 0, rssBytes: rss() }, Buffer.from('ok'));
  out.flush();
  sock.destroy();
}

/** The restored process starts here: reseed, run the afterRestore hooks, then serve. */
function restoreMain(found: Exclude<Found, { style: 'none' }>): void {
  const restoreStart = performance.now();
  dropNodeSettings();
  installConsoleCapture(() => requestIdNow());
  installFatalHandlers();
  // READY reports the restore phase as the init time; the build's init time is in the snapshot's metadata.
  const go = (): void => {
    serve(found, () => performance.now() - restoreStart, true);
  };
  const hooks = afterRestore();
  if (!hooks) return go();
  hooks.then(go, (err: unknown) => {
    const p = errorPayload(err);
    const what = 'an afterRestore hook failed: ';
    reportInitError({ code: 'INIT_FAILED', message: what + p.message, ...(p.stack ? { stack: what + p.stack } : {}) });
  });
}

function serve(found: Exclude<Found, { style: 'none' }>, initMs: () => number, restored: boolean): void {
  // Again after a restore: harmless when the snapshot kept them, needed when it did not.
  installConsoleCapture(() => requestIdNow());
  installFatalHandlers();
  trackEnvWrites();
  // Loaded here, not imported: node warns when a snapshot's build script loads async_hooks, and
  // only the serving process needs it.
  // With one request at a time, the request in flight is the one to tag console lines with (as
  // Lambda does, work a request left running is tagged with the next one). AsyncLocalStorage's
  // promise hooks cost ~9 % of a warm guest's CPU, so it is only loaded when requests overlap.
  let run: (requestId: string, fn: typeof adapter, meta: InvokeMeta, body: Buffer) => ReturnType<typeof adapter>;
  if (process.env.FNCTL_CONCURRENCY === '1') {
    let current: string | undefined;
    requestIdNow = () => current;
    run = (requestId, fn, meta, body) => {
      current = requestId;
      return fn(meta, body);
    };
  } else {
    const { AsyncLocalStorage } = process.getBuiltinModule('node:async_hooks') as typeof import('node:async_hooks');
    const als: Als<string> = new AsyncLocalStorage<string>();
    requestIdNow = () => als.getStore();
    run = (requestId, fn, meta, body) => als.run(requestId, fn, meta, body);
  }

  const background = new Set<Promise<unknown>>();
  let inflight = 0;
  let shuttingDown = false;
  let exiting = false;

  const track = (p: Promise<unknown>): void => {
    background.add(p);
    p.then(undefined, (err: unknown) => {
      process.stderr.write(formatConsoleLine(new Date(), undefined, 'ERROR', `waitUntil promise rejected: ${describeError(err)}`));
    }).finally(() => {
      background.delete(p);
      maybeExit();
    });
  };
  const adapter: Adapter =
    found.style === 'fetch' ? makeFetchAdapter(found.fetch, track) : makeLambdaAdapter(found.handler, identityFromEnv(process.env));
  const style: HandlerStyle = found.style;

  const sock = openChannel();
  const decoder = new FrameDecoder(onFrame);
  sock.on('data', (chunk: Buffer) => {
    try {
      decoder.push(chunk);
    } catch (err) {
      process.stderr.write(formatConsoleLine(new Date(), undefined, 'ERROR', `fnctl guest: ${describeError(err)}`));
      process.exit(1);
    }
  });
  // The host went away (or killed the channel): nothing can reach us any more.
  sock.on('end', () => process.exit(0));
  sock.on('error', () => process.exit(1));

  // One macrotask later, so that a promise that init rejected without handling surfaces (as
  // INIT_ERROR) before we claim to be ready.
  setImmediate(() => {
    if (phase !== 'init') return;
    phase = 'serving';
    writeFrame(sock, FrameType.READY, 0, { pid: process.pid, style, initMs: initMs(), restored, startupMs: performance.now(), fields: true });
  });

  function onFrame(frame: Frame): void {
    if (frame.type === FrameType.INVOKE) {
      inflight++;
      invoke(frame.id, frame.meta as InvokeMeta, frame.payload);
    } else if (frame.type === FrameType.SHUTDOWN) {
      shuttingDown = true;
      maybeExit();
    }
  }

  function invoke(id: number, meta: InvokeMeta, body: Buffer): void {
    const t0 = performance.now();
    let out: ReturnType<Adapter>;
    try {
      out = run(meta.requestId, adapter, meta, body);
    } catch (err) {
      fail(id, meta.requestId, t0, err);
      return;
    }
    // A handler that answered synchronously is answered now, with no promise (see Adapter). No
    // named closures per request: the bundle keeps names (esbuild keepNames), and naming one
    // costs a defineProperty each time.
    if (out instanceof Promise) {
      out.then(
        (r: GuestResponse) => answer(id, meta.requestId, t0, r),
        (err: unknown) => fail(id, meta.requestId, t0, err),
      );
    } else {
      answer(id, meta.requestId, t0, out);
    }
  }

  function answer(id: number, requestId: string, t0: number, r: GuestResponse): void {
    try {
      if (sock.writable) outbox.addResponse(id, { status: r.status, headers: r.headers, handlerMs: performance.now() - t0, rssBytes: rss() }, r.body);
    } catch (err) {
      // Not the handler's fault, but the request must end all the same.
      fail(id, requestId, t0, err);
      return;
    }
    done();
  }

  function fail(id: number, requestId: string, t0: number, err: unknown): void {
    try {
      const payload = errorPayload(err);
      // Into the function's log too, tagged, as Lambda's runtime logs "Invoke Error".
      process.stderr.write(formatConsoleLine(new Date(), requestId, 'ERROR', `Invoke Error\t${payload.stack ?? payload.message}`));
      if (sock.writable) outbox.add(FrameType.ERROR, id, { ...payload, handlerMs: performance.now() - t0, rssBytes: rss() });
    } finally {
      done();
    }
  }

  function done(): void {
    inflight--;
    maybeExit();
  }

  function maybeExit(): void {
    if (!shuttingDown || exiting || inflight > 0 || background.size > 0) return;
    exiting = true;
    outbox.flush();
    sock.end(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  }
}

// Reading RSS costs a /proc read (~9 µs): sample it at most every 100 ms on the hot path.
let rssValue = 0;
let rssAt = -Infinity;
function rss(): number {
  const now = performance.now();
  if (now - rssAt >= 100) {
    rssValue = process.memoryUsage.rss();
    rssAt = now;
  }
  return rssValue;
}

/** The answers that finish in one tick leave in one write (one syscall per burst). */
const outbox = new Outbox(() => channel, process.nextTick);

function openChannel(): net.Socket {
  channel ??= new net.Socket({ fd: Number(process.env.FNCTL_CHANNEL_FD ?? 3), readable: true, writable: true });
  return channel;
}

/**
 * What the platform starts node with is not the function's (see microvm.ts): its malloc setting
 * leaves process.env, and its OpenSSL config flags and the snapshot leave process.execArgv, which
 * `child_process.fork()` and a function's own `node ...process.execArgv` pass on: a child started
 * with the held guest's `--openssl-config=/dev/stdin` would wait on its stdin, and one started with
 * `--snapshot-blob` would run this runtime from the function's snapshot instead of its script. The
 * heap limits stay: they are the microVM's. At init, and first thing after a restore (node sets
 * both anew).
 */
function dropNodeSettings(): void {
  delete process.env.GLIBC_TUNABLES;
  const args = process.execArgv;
  for (let i = args.length - 1; i >= 0; i--) {
    const a = args[i]!;
    if (a === HOLD_GATE_FLAG || a === EMPTY_SSL_FLAG || a.startsWith(`${SNAPSHOT_BLOB_FLAG}=`)) args.splice(i, 1);
    else if (a === SNAPSHOT_BLOB_FLAG) args.splice(i, 2);
  }
}

function describeError(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return typeof err === 'string' ? err : inspect(err);
}

function errorPayload(err: unknown): ErrorPayload {
  if (err instanceof FnError) return { code: err.code, message: err.message };
  if (err instanceof Error) {
    const p: ErrorPayload = { code: 'FUNCTION_ERROR', message: err.message || err.name };
    if (err.stack) p.stack = err.stack;
    return p;
  }
  return { code: 'FUNCTION_ERROR', message: typeof err === 'string' ? err : inspect(err) };
}

function onFatal(err: unknown, origin: string): void {
  if (phase === 'init') {
    const p = errorPayload(err);
    reportInitError({ code: 'INIT_FAILED', message: p.message, ...(p.stack ? { stack: p.stack } : {}) });
    return;
  }
  if (phase === 'failed') return;
  // After init, like Lambda's Node runtime and node itself: log it, and the process dies. The host
  // fails whatever was in flight with FUNCTION_CRASHED.
  const kind = origin === 'unhandledRejection' ? 'Unhandled Promise Rejection' : 'Uncaught Exception';
  process.stderr.write(formatConsoleLine(new Date(), requestIdNow(), 'ERROR', `${kind}\t${describeError(err)}`));
  process.exit(1);
}

function onUnhandledRejection(reason: unknown): void {
  onFatal(reason, 'unhandledRejection');
}

function installFatalHandlers(): void {
  if (!process.listeners('uncaughtException').includes(onFatal)) process.on('uncaughtException', onFatal);
  if (!process.listeners('unhandledRejection').includes(onUnhandledRejection)) {
    process.on('unhandledRejection', onUnhandledRejection);
  }
}

function reportInitError(p: ErrorPayload): void {
  if (phase === 'failed') return;
  phase = 'failed';
  process.stderr.write(formatConsoleLine(new Date(), undefined, 'ERROR', `Init Error\t${p.stack ?? p.message}`));
  if (v8.startupSnapshot?.isBuildingSnapshot()) {
    process.stderr.write(`${INIT_ERROR_MARKER}${JSON.stringify(p)}\n`);
    process.exit(1);
  }
  setTimeout(() => process.exit(1), 1000).unref();
  try {
    const sock = openChannel();
    const parts = encodeFrame(FrameType.INIT_ERROR, 0, p);
    for (const part of parts) sock.write(part);
    sock.end(() => process.exit(1));
  } catch {
    process.exit(1);
  }
}
