// End to end, as a user: `fnctl up` in its own process, `fnctl deploy` of a file, a TypeScript
// file, a folder with its own node_modules and a Hono app, then HTTP calls in both handler styles.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { request } from 'undici';
import { PlatformProcess, repoRoot } from '../helpers/platform.js';
import { probeBatchScheduling } from '../../microvm/sched.js';

const fixtures = path.join(repoRoot, 'test/fixtures');
const examples = path.join(repoRoot, 'functions/examples');
const platform = new PlatformProcess();

async function http(pathname: string, options: Parameters<typeof request>[1] = {}) {
  const res = await request(platform.url + pathname, options);
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body, text: body.toString('utf8') };
}

async function deploy(args: string[]) {
  const r = await platform.fnctl(['deploy', ...args]);
  expect(r.stderr + r.stdout, `deploy ${args.join(' ')}`).toMatch(/deployed|unchanged/);
  expect(r.code).toBe(0);
  return r;
}

beforeAll(async () => {
  await platform.start();
}, 60_000);

afterAll(async () => {
  await platform.cleanup();
});

describe('deploy and call over HTTP', () => {
  it('deploys a fetch-style file and prints name, version, snapshot status, init time and URL', async () => {
    const r = await deploy([path.join(examples, 'hello.js')]);
    expect(r.stdout).toMatch(/deployed hello version 1/);
    expect(r.stdout).toMatch(/snapshot: ready \([\d.]+ MB, taken in \d+ ms\)/);
    expect(r.stdout).toMatch(/init: +[\d.]+ ms/);
    expect(r.stdout).toContain(`${platform.url}/fn/hello`);
    const res = await http('/fn/hello');
    expect(res.status).toBe(200);
    expect(res.text).toContain('Hello');
    expect(res.headers['x-fn-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers['x-fn-instance']).toMatch(/^vm-hello-/);
    expect(res.headers['x-fn-start']).toBe('restore');
    expect(res.headers['server-timing']).toMatch(/queue;dur=[\d.]+, restore;dur=[\d.]+, handler;dur=[\d.]+/);
    const again = await http('/fn/hello');
    expect(again.headers['x-fn-start']).toBe('warm');
    expect(again.headers['x-fn-instance']).toBe(res.headers['x-fn-instance']);
    expect(again.headers['server-timing']).not.toMatch(/restore|init/);
  });

  it('boots without a snapshot when snapshots are off: cold, with init', async () => {
    const r = await deploy([path.join(examples, 'hello.js'), '--name', 'hello-cold', '--snapshot', 'off']);
    expect(r.stdout).toMatch(/snapshot: off \(disabled with --snapshot off\)/);
    const res = await http('/fn/hello-cold');
    expect(res.status).toBe(200);
    expect(res.headers['x-fn-start']).toBe('cold');
    expect(res.headers['server-timing']).toMatch(/queue;dur=[\d.]+, init;dur=[\d.]+, handler;dur=[\d.]+/);
  });

  it('passes method, path, query, headers and JSON and binary bodies through a fetch handler', async () => {
    await deploy([path.join(fixtures, 'behaviour/echo.mjs'), '--env', 'GREETING=hi there']);
    const json = await http('/fn/echo/a/b?x=1&y=two', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-custom': 'yes' },
      body: JSON.stringify({ hello: 'world' }),
    });
    expect(json.status).toBe(200);
    const seen = JSON.parse(json.text);
    expect(seen.method).toBe('POST');
    expect(seen.path).toBe('/a/b');
    expect(seen.query).toEqual({ x: '1', y: 'two' });
    expect(seen.headers['x-custom']).toBe('yes');
    expect(Buffer.from(seen.body, 'base64').toString()).toBe('{"hello":"world"}');
    expect(seen.greeting).toBe('hi there');
    expect(seen.processGreeting).toBe('hi there');

    const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7) % 256));
    const bin = await http('/fn/echo', { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: bytes });
    const echoed = JSON.parse(bin.text);
    expect(echoed.bodyBytes).toBe(4096);
    expect(Buffer.from(echoed.body, 'base64').equals(bytes)).toBe(true);
    const root = await http('/fn/echo');
    expect(JSON.parse(root.text).path).toBe('/');
  });

  it('runs a Lambda-style handler with a payload format 2.0 event', async () => {
    await deploy([path.join(examples, 'lambda.mjs')]);
    const res = await http('/fn/lambda/items/7?color=red', { method: 'POST', body: '{"n":1}', headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(200);
    const body = JSON.parse(res.text);
    expect(body.path).toBe('/items/7');
    expect(body.method).toBe('POST');
    expect(body.query).toEqual({ color: 'red' });
  });

  it('deploys a TypeScript file and a CommonJS Lambda handler', async () => {
    await deploy([path.join(fixtures, 'functions/ts-fn.ts'), '--name', 'typed']);
    const ts = await http('/fn/typed/greet');
    expect(ts.status).toBe(200);
    expect(JSON.parse(ts.text)).toEqual({ message: 'hello from typescript', path: '/greet' });
    await deploy([path.join(fixtures, 'functions/lambda.cjs'), '--name', 'lambda-cjs']);
    const cjs = await http('/fn/lambda-cjs/x');
    expect(cjs.status).toBe(200);
    expect(cjs.headers['content-type']).toMatch(/application\/json/);
    expect(JSON.parse(cjs.text)).toEqual({ style: 'lambda-cjs', path: '/x' });
  });

  it('deploys a folder with its own node_modules, bundled', async () => {
    await deploy([path.join(fixtures, 'functions/with-deps'), '--name', 'with-deps']);
    const res = await http('/fn/with-deps?n=42');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toEqual({ padded: '00042' });
  });

  it('serves a Hono app exported as default', async () => {
    await deploy([path.join(examples, 'hono-app')]);
    const user = await http('/fn/hono-app/users/2');
    expect(user.status).toBe(200);
    expect(JSON.parse(user.text)).toEqual({ id: 2, name: 'Grace Hopper' });
    // The app's own 404 passes through as the app wrote it.
    const missing = await http('/fn/hono-app/users/42');
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.text)).toEqual({ error: 'no such user' });
    const echo = await http('/fn/hono-app/echo', { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } });
    expect(echo.status).toBe(200);
    expect(JSON.parse(echo.text)).toMatchObject({ method: 'POST', body: { a: 1 } });
  });

  it('lists functions, instances and logs through the CLI', async () => {
    const ls = await platform.fnctl(['ls', '--json']);
    expect(ls.code).toBe(0);
    const listed = JSON.parse(ls.stdout) as { name: string; version: number; settings: { memory: number }; instances: { idle: number } }[];
    const echo = listed.find((f) => f.name === 'echo')!;
    expect(echo.version).toBe(1);
    expect(echo.settings.memory).toBe(128);
    expect(echo.instances.idle).toBeGreaterThanOrEqual(1);

    const human = await platform.fnctl(['ls']);
    expect(human.stdout).toMatch(/NAME\s+VERSION/);

    const instances = await http('/api/functions/echo/instances', { headers: { authorization: `Bearer ${platform.token}` } });
    const list = JSON.parse(instances.text).instances;
    expect(list[0]).toMatchObject({ state: expect.any(String), start: 'restore', invocations: expect.any(Number) });

    const call = await http('/fn/echo/logged');
    const requestId = String(call.headers['x-fn-request-id']);
    let logs = '';
    for (let i = 0; i < 20 && !logs.includes('REPORT'); i++) {
      logs = (await platform.fnctl(['logs', 'echo', '--request', requestId])).stdout;
      if (!logs.includes('REPORT')) await new Promise((r) => setTimeout(r, 100));
    }
    expect(logs).toContain(`${requestId} INFO echo GET /logged`);
    expect(logs).toMatch(new RegExp(`REPORT RequestId: ${requestId}\\s+Duration: [\\d.]+ ms\\s+Billed Duration: \\d+ ms\\s+Memory Size: 128 MB\\s+Max Memory Used: \\d+ MB`));
  });

  it('invokes through the CLI with --data, --method and --path', async () => {
    const r = await platform.fnctl(['invoke', 'echo', '--data', '{"k":"v"}', '--path', '/cli']);
    expect(r.code).toBe(0);
    const seen = JSON.parse(r.stdout);
    expect(seen.method).toBe('POST');
    expect(seen.path).toBe('/cli');
    expect(seen.headers['content-type']).toBe('application/json');
    const missing = await platform.fnctl(['invoke', 'nope']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/function nope does not exist/);
  });
});

describe('versions', () => {
  it('a redeploy serves the new version; rollback and pinning serve older ones', async () => {
    await deploy([path.join(fixtures, 'behaviour/version-a.mjs'), '--name', 'ver']);
    expect((await http('/fn/ver')).text).toBe('version A');
    const b = await deploy([path.join(fixtures, 'behaviour/version-b.mjs'), '--name', 'ver']);
    expect(b.stdout).toMatch(/version 2/);
    expect((await http('/fn/ver')).text).toBe('version B');
    expect((await http('/fn/ver@1')).text).toBe('version A');
    const same = await deploy([path.join(fixtures, 'behaviour/version-b.mjs'), '--name', 'ver']);
    expect(same.stdout).toMatch(/unchanged ver version 2/);

    const rb = await platform.fnctl(['rollback', 'ver']);
    expect(rb.code).toBe(0);
    expect(rb.stdout).toMatch(/version 1/);
    expect((await http('/fn/ver')).text).toBe('version A');
    expect((await platform.fnctl(['rollback', 'ver', '2'])).code).toBe(0);
    expect((await http('/fn/ver')).text).toBe('version B');
    expect((await http('/fn/ver@9')).status).toBe(404);
  });

  it('a failed deploy leaves the previous version serving', async () => {
    const bad = await platform.fnctl(['deploy', path.join(fixtures, 'functions/syntax-error.js'), '--name', 'ver']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim().split('\n').at(-1)).toMatch(/^fnctl: error: .*syntax-error\.js:\d+:\d+/);
    const initFails = await platform.fnctl(['deploy', path.join(fixtures, 'behaviour/init-throws.mjs'), '--name', 'ver']);
    expect(initFails.code).not.toBe(0);
    expect(initFails.stderr).toContain('config file missing at init');
    const noHandler = await platform.fnctl(['deploy', path.join(fixtures, 'functions/no-handler.js'), '--name', 'ver']);
    expect(noHandler.code).not.toBe(0);
    expect(noHandler.stderr).toMatch(/export default \{ fetch/);
    expect((await http('/fn/ver')).text).toBe('version B');
    const ls = JSON.parse((await platform.fnctl(['ls', '--json'])).stdout) as { name: string; version: number }[];
    expect(ls.find((f) => f.name === 'ver')!.version).toBe(2);
  });

  it('rm removes a function', async () => {
    await deploy([path.join(fixtures, 'behaviour/version-a.mjs'), '--name', 'gone']);
    const rm = await platform.fnctl(['rm', 'gone']);
    expect(rm.code).toBe(0);
    const res = await http('/fn/gone');
    expect(res.status).toBe(404);
    expect(JSON.parse(res.text).error.code).toBe('FUNCTION_NOT_FOUND');
  });
});

describe('bad input gets a clear error', () => {
  it.each([
    [['--memory', '-5'], /memory = -5, must be an integer in \[64, 10240\]/],
    [['--memory', 'lots'], /memory = "lots"/],
    [['--timeout', '0'], /timeout = 0, must be a number of seconds/],
    [['--max', '0'], /max = 0/],
    [['--min', '5', '--max', '2'], /min must not exceed max/],
    [['--env', 'BAD-KEY=1'], /env names must match/],
    [['--name', '../x'], /name = "\.\.\/x", must be/],
    [['--name', 'a'.repeat(64)], /must be 1-63 characters/],
    [['--bogus'], /unknown option '--bogus'/],
  ])('deploy %j fails with one line naming the problem', async (args, message) => {
    const r = await platform.fnctl(['deploy', path.join(examples, 'hello.js'), ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
  });

  it('deploy of a missing path names it', async () => {
    const r = await platform.fnctl(['deploy', 'no/such/file.js']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no\/such\/file\.js/);
  });

  it('commands without a platform say how to start one', async () => {
    const r = await platform.fnctl(['--data', '/nonexistent-fnctl', 'ls']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/fnctl up/);
  });

  it('the control API wants the token', async () => {
    const none = await http('/api/functions');
    expect(none.status).toBe(401);
    expect(JSON.parse(none.text).error.code).toBe('UNAUTHORIZED');
    const wrong = await http('/api/functions', { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    const health = await http('/healthz');
    expect(health.status).toBe(200);
    const metrics = await http('/metrics');
    expect(metrics.text).toContain('fnctl_invocations_total');
  });
});

describe('a restart of the platform', () => {
  it('keeps every function and version', async () => {
    const before = JSON.parse((await platform.fnctl(['ls', '--json'])).stdout) as { name: string; version: number }[];
    expect(await platform.stop()).toBe(0);
    await platform.start();
    const after = JSON.parse((await platform.fnctl(['ls', '--json'])).stdout) as { name: string; version: number }[];
    expect(after.map((f) => [f.name, f.version])).toEqual(before.map((f) => [f.name, f.version]));
    expect((await http('/fn/ver')).text).toBe('version B');
    expect((await http('/fn/hello')).status).toBe(200);
  }, 60_000);
});

describe('fnctl doctor', () => {
  it('says whether guests can run under SCHED_BATCH, in text and in --json', async () => {
    const probe = probeBatchScheduling();
    const json = await platform.fnctl(['doctor', '--json']);
    expect(JSON.parse(json.stdout).scheduling).toEqual(probe);
    const text = await platform.fnctl(['doctor']);
    expect(text.stdout).toMatch(probe.chrt ? /^scheduling {5}SCHED_BATCH for guests/m : /^scheduling {5}normal policy for guests/m);
  }, 60_000);
});
