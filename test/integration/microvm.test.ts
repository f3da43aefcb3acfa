// Integration tests of MicroVm with real guest processes: each test bundles a small function the
// way the platform does (guest runtime + function, one CommonJS file) and drives it over the channel.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FnError } from '../../core/errors.js';
import { MicroVm, guestNodeFlags, type ExitInfo } from '../../microvm/microvm.js';
import { probeBatchScheduling } from '../../microvm/sched.js';
import type { ConsoleRecord, InvokeRequest, MicroVmConfig } from '../../microvm/types.js';
import { bundleGuest, type GuestBundle } from '../helpers/guest-bundle.js';

const bundles: GuestBundle[] = [];
const vms: MicroVm[] = [];
let seq = 0;

interface Booted {
  vm: MicroVm;
  records: ConsoleRecord[];
}

async function bundle(source: string, filename?: string): Promise<string> {
  const b = await bundleGuest(source, filename);
  bundles.push(b);
  return b.bundlePath;
}

function config(bundlePath: string, over: Partial<MicroVmConfig> = {}): MicroVmConfig {
  return {
    id: `vm-test-${++seq}`,
    functionName: 'test-fn',
    version: 2,
    vcpus: 1,
    memoryMib: 128,
    network: 'host',
    rootfs: { bundlePath },
    env: { GREETING: 'hi' },
    timeoutMs: 10_000,
    initTimeoutMs: 10_000,
    concurrency: 1,
    ...over,
  };
}

async function boot(source: string, over: Partial<MicroVmConfig> = {}, filename?: string): Promise<Booted> {
  const records: ConsoleRecord[] = [];
  const vm = await MicroVm.boot(config(await bundle(source, filename), over), { sink: { record: (r) => records.push(r) } });
  vms.push(vm);
  return { vm, records };
}

/** Boot that must fail: returns the error. */
async function bootError(source: string, over: Partial<MicroVmConfig> = {}): Promise<FnError> {
  const err = await MicroVm.boot(config(await bundle(source), over), { sink: { record: () => {} } }).then(
    () => {
      throw new Error('boot succeeded');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FnError);
  return err as FnError;
}

let reqSeq = 0;
function req(over: Partial<InvokeRequest> = {}): InvokeRequest {
  return {
    requestId: `req-${++reqSeq}`,
    method: 'GET',
    path: '/',
    query: '',
    headers: ['host', 'fn.test:8080', 'user-agent', 'vitest'],
    body: Buffer.alloc(0),
    sourceIp: '127.0.0.1',
    ...over,
  };
}

async function invokeError(vm: MicroVm, r: InvokeRequest = req()): Promise<FnError> {
  const err = await vm.invoke(r).then(
    () => {
      throw new Error('invoke succeeded');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FnError);
  return err as FnError;
}

/** Live (not zombie) processes whose process group is `pgid`. */
function liveInGroup(pgid: number): number[] {
  const live: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const fields = readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1]!.split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') live.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return live;
}

/**
 * The live processes of group `pgid` once it has had up to two seconds to empty. A SIGKILL sent to
 * the group takes each member down only when the kernel next runs it: on a loaded machine one was
 * still there just after the microVM had exited.
 */
async function liveInGroupAfterKill(pgid: number): Promise<number[]> {
  const until = Date.now() + 2000;
  while (liveInGroup(pgid).length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  return liveInGroup(pgid);
}

afterEach(async () => {
  await Promise.all(vms.splice(0).map((vm) => vm.kill('test over')));
});

afterAll(async () => {
  await Promise.all(bundles.splice(0).map((b) => b.cleanup()));
});

describe('MicroVm with real guests', () => {
  it('boots a fetch function, serves it, and tags its console lines', async () => {
    const { vm, records } = await boot(`
      console.log('init ran');
      export default {
        async fetch(request, env, ctx) {
          console.log('serving', new URL(request.url).pathname);
          console.error('multi\\nline');
          const body = await request.text();
          return new Response(JSON.stringify({
            url: request.url, method: request.method, body, greeting: env.GREETING,
            name: env.FNCTL_FUNCTION_NAME, requestId: ctx.requestId, vitest: env.VITEST ?? null,
          }), { status: 201, headers: { 'x-fn': 'yes' } });
        },
      };
    `);
    // fields: the runtime reads the channel's fields form; were that lost, all would still work, only slower.
    expect(vm.bootInfo).toMatchObject({ style: 'fetch', restored: false, pid: vm.pid, fields: true });
    expect(vm.bootInfo!.initMs).toBeGreaterThanOrEqual(0);
    expect(vm.state).toBe('idle');
    const r = await vm.invoke(req({ requestId: 'req-fetch', method: 'POST', path: '/a/b', query: 'x=1', body: Buffer.from('ping') }));
    expect(r.status).toBe(201);
    expect(r.headers).toContain('x-fn');
    expect(JSON.parse(r.body.toString())).toEqual({
      url: 'http://fn.test:8080/a/b?x=1', method: 'POST', body: 'ping', greeting: 'hi', name: 'test-fn', requestId: 'req-fetch', vitest: null,
    });
    expect(r.rssBytes).toBeGreaterThan(0);
    expect(vm.info()).toMatchObject({ id: vm.id, state: 'idle', start: 'cold', inflight: 0, invocations: 1, functionName: 'test-fn', version: 2 });
    await vm.stop();
    expect(records.find((x) => x.message === 'init ran')).toMatchObject({ stream: 'stdout', level: 'INFO', requestId: undefined, instance: vm.id, functionName: 'test-fn', version: 2 });
    expect(records.find((x) => x.message === 'serving /a/b')).toMatchObject({ requestId: 'req-fetch', level: 'INFO', stream: 'stdout' });
    expect(records.find((x) => x.message === 'multi\nline')).toMatchObject({ requestId: 'req-fetch', level: 'ERROR', stream: 'stderr' });
  });

  it.skipIf(probeBatchScheduling().error)('starts the guest under SCHED_BATCH when given chrt, and under the normal policy without', async () => {
    // The policy field of /proc/self/stat (sched(7): SCHED_OTHER 0, SCHED_BATCH 3), as the function sees it.
    const source = `import { readFileSync } from 'node:fs';
      export default { fetch() {
        const stat = readFileSync('/proc/self/stat', 'utf8');
        return new Response(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[38]);
      } };`;
    const { chrt } = probeBatchScheduling();
    const path = await bundle(source);
    const batch = await MicroVm.boot(config(path), { sink: { record: () => {} }, batch: chrt! });
    const normal = await MicroVm.boot(config(path), { sink: { record: () => {} } });
    vms.push(batch, normal);
    expect((await batch.invoke(req())).body.toString()).toBe('3');
    expect((await normal.invoke(req())).body.toString()).toBe('0');
    // chrt execs the guest: the pid MicroVm holds is the guest's own.
    expect(readFileSync(`/proc/${batch.pid}/cmdline`, 'utf8').split('\0')[0]).toBe(process.execPath);
  });

  it.each(['object', 'tuple'])('serves a guest of an older bundle that speaks the %s form', async (form) => {
    // Bundles built by an older platform keep running after an upgrade: the host must speak their form.
    const older = fileURLToPath(new URL('../fixtures/runtime/older-guest.cjs', import.meta.url));
    const vm = await MicroVm.boot(config(older, { env: { OLDER_GUEST_FORM: form } }), { sink: { record: () => {} } });
    vms.push(vm);
    expect(vm.bootInfo.fields).toBe(false);
    const first = await vm.invoke(req({ path: '/one' }));
    // Tuples only once the guest has answered with one.
    const second = await vm.invoke(req({ path: '/two', headers: ['x-latin1', '\u00e9t\u00e9'] }));
    expect(JSON.parse(first.body.toString())).toEqual({ got: 'object', path: '/one' });
    expect(JSON.parse(second.body.toString())).toEqual({ got: form, path: '/two' });
    expect(second).toMatchObject({ status: 200, headers: ['content-type', 'application/json'], handlerMs: 0.5, rssBytes: 1000 });
    await vm.stop();
    expect(vm.state).toBe('stopped');
  });

  it('gives a Lambda handler a 2.0 event and maps its result', async () => {
    const { vm } = await boot(`
      export const handler = async (event, context) => {
        if (event.rawPath === '/echo') {
          return { statusCode: 200, headers: { 'content-type': 'application/octet-stream' }, body: event.body, isBase64Encoded: event.isBase64Encoded };
        }
        return {
          query: event.queryStringParameters, cookies: event.cookies, headers: event.headers, body: JSON.parse(event.body),
          isBase64Encoded: event.isBase64Encoded, method: event.requestContext.http.method, requestId: event.requestContext.requestId,
          fn: context.functionName, version: context.functionVersion, memory: context.memoryLimitInMB, remaining: context.getRemainingTimeInMillis() > 0,
        };
      };
    `, { memoryMib: 256 });
    expect(vm.bootInfo!.style).toBe('lambda');
    const r = await vm.invoke(req({
      requestId: 'req-l',
      method: 'POST',
      path: '/items',
      query: 'a=1&a=2&b=x',
      headers: ['host', 'fn.test', 'cookie', 'sid=1; t=dark', 'content-type', 'application/json', 'x-rep', 'p', 'x-rep', 'q'],
      body: Buffer.from('{"n":5}'),
    }));
    expect(r.status).toBe(200);
    expect(r.headers).toEqual(['content-type', 'application/json']);
    const got = JSON.parse(r.body.toString());
    expect(got).toEqual({
      query: { a: '1,2', b: 'x' }, cookies: ['sid=1', 't=dark'], headers: { host: 'fn.test', 'content-type': 'application/json', 'x-rep': 'p,q' },
      body: { n: 5 }, isBase64Encoded: false, method: 'POST', requestId: 'req-l', fn: 'test-fn', version: '2', memory: '256', remaining: true,
    });
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const echo = await vm.invoke(req({ method: 'POST', path: '/echo', headers: ['content-type', 'application/octet-stream'], body: bytes }));
    expect(echo.headers).toEqual(['content-type', 'application/octet-stream']);
    expect(Buffer.compare(echo.body, bytes)).toBe(0);
  });

  it('serves a CommonJS Lambda handler (module.exports)', async () => {
    const { vm } = await boot(`module.exports = { handler: async (event) => ({ statusCode: 200, body: 'cjs ' + event.rawPath }) };`, {}, 'index.cjs');
    const r = await vm.invoke(req({ path: '/x' }));
    expect(r.body.toString()).toBe('cjs /x');
  });

  it('serves a Hono app exported as default', async () => {
    const { vm } = await boot(`
      import { Hono } from 'hono';
      const app = new Hono();
      app.get('/hello/:name', (c) => c.json({ hello: c.req.param('name'), q: c.req.query('q') }));
      app.post('/cookie', (c) => { c.header('set-cookie', 'a=1', { append: true }); c.header('set-cookie', 'b=2', { append: true }); return c.text('ok'); });
      export default app;
    `);
    const r = await vm.invoke(req({ path: '/hello/world', query: 'q=1' }));
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body.toString())).toEqual({ hello: 'world', q: '1' });
    const c = await vm.invoke(req({ method: 'POST', path: '/cookie' }));
    expect(c.headers.filter((_, i) => c.headers[i - 1] === 'set-cookie')).toEqual(['a=1', 'b=2']);
    expect((await vm.invoke(req({ path: '/nope' }))).status).toBe(404);
  });

  it('multiplexes concurrent requests and tags each console line with its own request', async () => {
    const { vm, records } = await boot(`
      let inflight = 0, most = 0;
      export default {
        async fetch(request) {
          const n = request.headers.get('x-n');
          inflight++; most = Math.max(most, inflight);
          console.log('start', n);
          await new Promise((r) => setTimeout(r, 5 + (Number(n) * 7) % 20));
          console.log('end', n);
          await new Promise((r) => setTimeout(r, 1));
          inflight--;
          return new Response(JSON.stringify({ n, most }));
        },
      };
    `, { concurrency: 8 });
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => vm.invoke(req({ requestId: `mux-${i}`, headers: ['x-n', String(i)] }))),
    );
    const bodies = results.map((r) => JSON.parse(r.body.toString()) as { n: string; most: number });
    expect(bodies.map((b) => b.n)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
    expect(Math.max(...bodies.map((b) => b.most))).toBeGreaterThan(1);
    await vm.stop();
    for (let i = 0; i < 8; i++) {
      const mine = records.filter((r) => r.requestId === `mux-${i}`).map((r) => r.message);
      expect(mine).toEqual([`start ${i}`, `end ${i}`]);
    }
  });

  it('matches every answer to its request across the renewals of its map of requests in flight', async () => {
    // The map is replaced every 64 requests (see MicroVm's pending): 300 requests, 16 at a time, answered
    // out of order, keep requests in flight across four renewals; a timeout must still find its own.
    const { vm } = await boot(`
      export default {
        async fetch(request) {
          const n = Number(new URL(request.url).searchParams.get('n'));
          await new Promise((r) => setTimeout(r, n === 150 ? 10_000 : (n * 7) % 5));
          return new Response(String(n));
        },
      };
    `, { concurrency: 16, timeoutMs: 1000 });
    const started: Promise<string>[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < 300) {
        const n = next++;
        started[n] = vm.invoke(req({ query: `n=${n}` })).then((r) => r.body.toString(), (e: FnError) => e.code);
        await started[n];
      }
    };
    await Promise.all(Array.from({ length: 15 }, worker));
    const answers = await Promise.all(started);
    expect(answers[150]).toBe('FUNCTION_TIMEOUT');
    expect(answers.filter((_, n) => n !== 150)).toEqual(Array.from({ length: 300 }, (_, n) => String(n)).filter((_, n) => n !== 150));
  });

  it('answers handlers that return synchronously among ones that await, each with its own console lines', async () => {
    const { vm, records } = await boot(`
      export default {
        fetch(request) {
          const n = new URL(request.url).searchParams.get('n');
          console.log('handling', n);
          if (Number(n) % 2) return new Response('sync ' + n, { headers: { 'x-n': n } });
          return new Promise((r) => setTimeout(r, 5)).then(() => {
            console.log('after wait', n);
            return new Response('async ' + n);
          });
        },
      };
    `, { concurrency: 6 });
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => vm.invoke(req({ requestId: `mix-${i}`, query: `n=${i}` }))));
    expect(results.map((r) => r.body.toString())).toEqual(['async 0', 'sync 1', 'async 2', 'sync 3', 'async 4', 'sync 5']);
    expect(results[3]!.headers).toEqual(expect.arrayContaining(['x-n', '3']));
    expect(vm.info()).toMatchObject({ state: 'idle', inflight: 0, invocations: 6 });
    await vm.stop();
    for (let i = 0; i < 6; i++) {
      const mine = records.filter((r) => r.requestId === `mix-${i}`).map((r) => r.message);
      expect(mine).toEqual(i % 2 ? [`handling ${i}`] : [`handling ${i}`, `after wait ${i}`]);
    }
  });

  it('refuses more than its concurrency and anything after it stopped', async () => {
    const { vm } = await boot(`export default { fetch: () => new Promise((r) => setTimeout(() => r(new Response('ok')), 50)) };`);
    const first = vm.invoke(req());
    expect(vm.state).toBe('busy');
    expect((await invokeError(vm)).code).toBe('THROTTLED');
    expect((await first).body.toString()).toBe('ok');
    expect(vm.state).toBe('idle');
    await vm.stop();
    expect((await invokeError(vm)).code).toBe('NOT_ALLOWED_IN_STATE');
  });

  it('reports a throwing handler as FUNCTION_ERROR and keeps serving', async () => {
    const { vm, records } = await boot(`
      export default {
        fetch(request) {
          if (request.url.endsWith('/throw')) throw new TypeError('bad input');
          if (request.url.endsWith('/wrong')) return { status: 200 };
          return new Response('fine');
        },
      };
    `);
    const err = await invokeError(vm, req({ requestId: 'req-throw', path: '/throw' }));
    expect(err.code).toBe('FUNCTION_ERROR');
    expect(err.message).toBe('bad input');
    expect(String(err.details?.stack)).toMatch(/TypeError: bad input\n\s+at /);
    const wrong = await invokeError(vm, req({ path: '/wrong' }));
    expect(wrong).toMatchObject({ code: 'FUNCTION_ERROR', message: 'fetch handler returned an object (Object), expected a Response' });
    expect((await vm.invoke(req())).body.toString()).toBe('fine');
    expect(vm.state).toBe('idle');
    expect(records.find((r) => r.requestId === 'req-throw' && r.level === 'ERROR')?.message).toMatch(/bad input/);
  });

  it('fails in-flight requests with FUNCTION_CRASHED when the guest exits', async () => {
    const { vm } = await boot(`export const handler = async () => { process.exit(1); };`);
    const exit = new Promise<ExitInfo>((resolve) => vm.once('exit', resolve));
    const err = await invokeError(vm);
    expect(err.code).toBe('FUNCTION_CRASHED');
    expect(err.message).toContain(`microVM ${vm.id} exited with code 1`);
    const info = await exit;
    expect(info).toMatchObject({ id: vm.id, state: 'failed', code: 1 });
    expect(vm.state).toBe('failed');
  });

  it('kills the whole process group on timeout: FUNCTION_TIMEOUT, others FUNCTION_CRASHED', async () => {
    const { vm, records } = await boot(`
      import { spawn } from 'node:child_process';
      export default {
        fetch(request) {
          if (request.url.endsWith('/slow')) {
            const child = spawn('sleep', ['30'], { stdio: 'ignore' });
            console.log('child', child.pid);
            return new Promise(() => {});
          }
          return new Promise(() => {});
        },
      };
    `, { timeoutMs: 3000, concurrency: 2 });
    const pid = vm.pid!;
    // Both in flight well before the first times out, even on a slow machine; the second
    // starts later, so its own deadline is not yet due when the first one's kills the microVM.
    const slow = invokeError(vm, req({ path: '/slow' }));
    await new Promise((r) => setTimeout(r, 200));
    const other = invokeError(vm, req({ path: '/other' }));
    while (!records.some((r) => r.message.startsWith('child '))) await new Promise((r) => setTimeout(r, 10));
    const childPid = Number(records.find((r) => r.message.startsWith('child '))?.message.split(' ')[1]);
    expect(liveInGroup(pid).sort()).toEqual([pid, childPid].sort());
    const err = await slow;
    expect(err.code).toBe('FUNCTION_TIMEOUT');
    expect(err.message).toBe('function timed out after 3.00 seconds');
    expect((await other).code).toBe('FUNCTION_CRASHED');
    const info = await vm.exited;
    expect(info.state).toBe('failed');
    expect(info.signal).toBe('SIGKILL');
    expect(await liveInGroupAfterKill(pid)).toEqual([]);
  });

  it('times a request out at its own deadline, after earlier ones finished', async () => {
    const { vm } = await boot(`
      export default {
        fetch(request) {
          return request.url.endsWith('/hang') ? new Promise(() => {}) : new Response('ok');
        },
      };
    `, { timeoutMs: 1000, concurrency: 2 });
    // The first request arms the one deadline timer and finishes at once; the second starts
    // 600 ms later, so its deadline is 600 ms after the timer first fires.
    expect((await vm.invoke(req({ path: '/ok' }))).status).toBe(200);
    await new Promise((r) => setTimeout(r, 600));
    const sent = performance.now();
    const err = await invokeError(vm, req({ path: '/hang' }));
    const waited = performance.now() - sent;
    expect(err.code).toBe('FUNCTION_TIMEOUT');
    expect(waited).toBeGreaterThanOrEqual(990);
    expect(waited).toBeLessThan(2500);
  });

  it('times out every request whose deadline passed, not only the oldest', async () => {
    const { vm } = await boot(`export default { fetch: () => new Promise(() => {}) };`, { timeoutMs: 1000, concurrency: 2 });
    // Sent in the same tick: both deadlines have passed when the one timer fires.
    const [a, b] = await Promise.all([invokeError(vm, req({ path: '/a' })), invokeError(vm, req({ path: '/b' }))]);
    expect([a.code, b.code]).toEqual(['FUNCTION_TIMEOUT', 'FUNCTION_TIMEOUT']);
  });

  it('reports heap exhaustion as OUT_OF_MEMORY naming the limit', async () => {
    const { vm } = await boot(`
      const hoard = [];
      export const handler = async () => { for (;;) hoard.push(new Array(10000).fill(1.5)); };
    `, { memoryMib: 64 });
    expect(guestNodeFlags({ memoryMib: 64 })).toContain('--max-old-space-size=48');
    const err = await invokeError(vm);
    expect(err.code).toBe('OUT_OF_MEMORY');
    expect(err.message).toBe('function ran out of memory (limit 64 MiB)');
    expect((await vm.exited).state).toBe('failed');
  });

  it('fails boot with INIT_FAILED and the stack when init throws', async () => {
    const err = await bootError(`
      function loadConfig() { throw new Error('config is missing'); }
      loadConfig();
      export default { fetch: () => new Response('never') };
    `);
    expect(err.code).toBe('INIT_FAILED');
    expect(err.message).toContain('config is missing');
    expect(err.message).toMatch(/at loadConfig/);
    expect(String(err.details?.stack)).toMatch(/at loadConfig/);
  });

  it('fails boot with INIT_FAILED when init leaves a rejected promise', async () => {
    const err = await bootError(`
      Promise.reject(new Error('async init broke'));
      export default { fetch: () => new Response('never') };
    `);
    expect(err.code).toBe('INIT_FAILED');
    expect(err.message).toContain('async init broke');
  });

  it('fails boot with INVALID_BUNDLE when there is no handler', async () => {
    const err = await bootError(`export const notAHandler = 1;`);
    expect(err.code).toBe('INVALID_BUNDLE');
    expect(err.message).toContain('export default { fetch(request, env, ctx)');
    expect(err.message).toContain('export const handler = async (event, context)');
    expect(err.message).toContain('notAHandler');
  });

  it('fails boot with INIT_TIMEOUT when init never ends, and leaves nothing running', async () => {
    const records: ConsoleRecord[] = [];
    const cfg = config(await bundle(`console.log('pid', process.pid); for (;;) {} export default {};`), { initTimeoutMs: 500 });
    const err = await MicroVm.boot(cfg, { sink: { record: (r) => records.push(r) } }).catch((e: unknown) => e as FnError);
    expect(err).toBeInstanceOf(FnError);
    expect(err).toMatchObject({ code: 'INIT_TIMEOUT', message: 'init did not finish within 0.5s' });
    const pid = Number(records.find((r) => r.message.startsWith('pid '))?.message.split(' ')[1]);
    expect(pid).toBeGreaterThan(0);
    expect(await liveInGroupAfterKill(pid)).toEqual([]);
  });

  it('stops gracefully: in-flight requests finish, then the guest exits', async () => {
    const { vm } = await boot(`
      export default { fetch: () => new Promise((r) => setTimeout(() => r(new Response('finished')), 200)) };
    `, { concurrency: 2 });
    const a = vm.invoke(req());
    const b = vm.invoke(req());
    const exit = new Promise<ExitInfo>((resolve) => vm.once('exit', resolve));
    const stopped = vm.stop(5000);
    expect(vm.state).toBe('stopping');
    expect((await invokeError(vm)).code).toBe('NOT_ALLOWED_IN_STATE');
    expect((await a).body.toString()).toBe('finished');
    expect((await b).body.toString()).toBe('finished');
    await stopped;
    await vm.stop();
    expect(vm.state).toBe('stopped');
    const info = await exit;
    expect(info).toMatchObject({ state: 'stopped', code: 0 });
    expect(info.error).toBeUndefined();
  });

  it('kill() fails what is in flight and ends stopped', async () => {
    const { vm } = await boot(`export default { fetch: () => new Promise(() => {}) };`);
    const pending = invokeError(vm);
    await vm.kill('pool shrinking');
    await vm.kill('again');
    const err = await pending;
    expect(err.code).toBe('FUNCTION_CRASHED');
    expect(err.message).toContain('pool shrinking');
    expect(vm.state).toBe('stopped');
  });
});
