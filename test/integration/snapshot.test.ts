// Integration tests of V8 startup snapshots with real guests: fixture functions are bundled with the
// real runtime, built into snapshots by snapshots/builder.ts, and restored as microVMs.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FnError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { MicroVm, guestNodeFlags } from '../../microvm/microvm.js';
import type { InvokeRequest, MicroVmConfig } from '../../microvm/types.js';
import { buildSnapshot, type BuildNotSnapshotable, type BuildOk, type BuildResult } from '../../snapshots/builder.js';
import { clearVerifyCache, hashFile } from '../../snapshots/format.js';
import { SnapshotStore } from '../../snapshots/store.js';
import { bundleGuest, type GuestBundle } from '../helpers/guest-bundle.js';

const fixtures = fileURLToPath(new URL('../fixtures/snapshot/', import.meta.url));
const bundles: GuestBundle[] = [];
const vms: MicroVm[] = [];
let seq = 0;

afterEach(async () => {
  await Promise.all(vms.splice(0).map((vm) => vm.kill('test over')));
});
afterAll(async () => {
  await Promise.all(bundles.map((b) => b.cleanup()));
});

async function bundle(fixture: string, source = readFileSync(join(fixtures, fixture), 'utf8')): Promise<GuestBundle> {
  const b = await bundleGuest(source, fixture);
  bundles.push(b);
  return b;
}

/** Bundle a fixture and build its snapshot next to the bundle. */
async function build(fixture: string, options: { initTimeoutMs?: number; source?: string } = {}): Promise<{ b: GuestBundle; result: BuildResult }> {
  const b = await bundle(fixture, options.source);
  const result = await buildSnapshot({ bundlePath: b.bundlePath, outPath: join(b.dir, 'snapshot.blob'), memoryMib: 128, initTimeoutMs: options.initTimeoutMs ?? 10_000 });
  return { b, result };
}

async function buildOk(fixture: string): Promise<{ b: GuestBundle; snap: BuildOk }> {
  const { b, result } = await build(fixture);
  if (result.status !== 'ok') throw new Error(`${fixture} was not snapshotted: ${result.reason}`);
  return { b, snap: result };
}

async function notSnapshotable(fixture: string, options: { initTimeoutMs?: number; source?: string } = {}): Promise<BuildNotSnapshotable> {
  const { result } = await build(fixture, options);
  if (result.status !== 'not-snapshotable') throw new Error(`${fixture} was snapshotted`);
  return result;
}

function config(bundlePath: string, env: Record<string, string> = {}): MicroVmConfig {
  return {
    id: `vm-snap-${++seq}`,
    functionName: 'snap-fn',
    version: 1,
    vcpus: 1,
    memoryMib: 128,
    network: 'host',
    rootfs: { bundlePath },
    env,
    // A timer that never fires after restore shows up as a timeout.
    timeoutMs: 5_000,
    initTimeoutMs: 10_000,
    concurrency: 1,
  };
}

async function restore(blob: string, bundlePath: string, env: Record<string, string> = {}): Promise<MicroVm> {
  const vm = await MicroVm.boot(config(bundlePath, env), {
    sink: { record: () => {} },
    restore: true,
    spawnArgs: (c) => ({ command: process.execPath, args: [...guestNodeFlags(c), '--snapshot-blob', blob] }),
  });
  vms.push(vm);
  return vm;
}

async function bootPlain(bundlePath: string, env: Record<string, string> = {}): Promise<MicroVm> {
  const vm = await MicroVm.boot(config(bundlePath, env), { sink: { record: () => {} } });
  vms.push(vm);
  return vm;
}

function req(path = '/', query = ''): InvokeRequest {
  return { requestId: `req-${++seq}`, method: 'GET', path, query, headers: ['host', 'fn.test'], body: Buffer.alloc(0), sourceIp: '127.0.0.1' };
}

async function getJson(vm: MicroVm, path = '/', query = ''): Promise<{ status: number; body: any }> {
  const res = await vm.invoke(req(path, query));
  return { status: res.status, body: JSON.parse(res.body.toString('utf8')) };
}

function gone(pid: number | undefined): boolean {
  try {
    process.kill(pid!, 0);
    return false;
  } catch {
    return true;
  }
}

describe('restored microVMs', () => {
  it('answer with a fetch handler, and report the restore phase in READY', async () => {
    const { b, snap } = await buildOk('fetch.mjs');
    expect(snap).toMatchObject({ status: 'ok', style: 'fetch', flags: guestNodeFlags({ memoryMib: 128 }) });
    expect(snap.blobBytes).toBeGreaterThan(0);
    const vm = await restore(snap.blobPath, b.bundlePath);
    expect(vm.start).toBe('restore');
    expect(vm.bootInfo).toMatchObject({ style: 'fetch', restored: true, fields: true });
    expect(vm.bootInfo.initMs).toBeGreaterThanOrEqual(0);
    expect(await getJson(vm, '/sq', 'n=12')).toEqual({ status: 200, body: { style: 'fetch', path: '/sq', square: 144, entries: 1000 } });
  });

  it('answer a fetch handler that returns new Response(text) without loading undici (~20 ms of a first request)', async () => {
    const source = `export default {
  fetch(request) {
    const name = new URL(request.url).searchParams.get('name') ?? 'world';
    const undici = process.moduleLoadList.some((m) => m.includes('undici'));
    return new Response(JSON.stringify({ hello: name, undici }), { headers: { 'content-type': 'application/json' } });
  },
};`;
    const { b, result } = await build('light.mjs', { source });
    if (result.status !== 'ok') throw new Error(result.reason);
    const vm = await restore(result.blobPath, b.bundlePath);
    expect(await getJson(vm, '/', 'name=Ada')).toEqual({ status: 200, body: { hello: 'Ada', undici: false } });
    // After a whole request and its response, still not loaded.
    expect(await getJson(vm)).toEqual({ status: 200, body: { hello: 'world', undici: false } });
  });

  it('start child node processes with their own script: the snapshot is not in process.execArgv', async () => {
    // fork() and `node ...process.execArgv` pass execArgv on; with --snapshot-blob in it, the child
    // ran this runtime from the function's snapshot instead of its script (and failed on fd 3).
    const source = `import { execFileSync } from 'node:child_process';
export default {
  fetch() {
    const out = execFileSync(process.execPath, [...process.execArgv, '-e', 'process.stdout.write(String(6 * 7))'], { encoding: 'utf8', timeout: 10000 });
    return new Response(JSON.stringify({ out, execArgv: process.execArgv }));
  },
};`;
    const { b, result } = await build('child.mjs', { source });
    if (result.status !== 'ok') throw new Error(result.reason);
    const vm = await restore(result.blobPath, b.bundlePath);
    const { status, body } = await getJson(vm);
    expect({ status, out: body.out }).toEqual({ status: 200, out: '42' });
    expect(body.execArgv).toEqual(guestNodeFlags({ memoryMib: 128 }));
  });

  it("never ran the function's handlers while the snapshot was built (the runtime warms up with its own)", async () => {
    for (const [fixture, source] of [
      ['calls-fetch.mjs', 'let calls = 0;\nexport default { fetch() { calls++; return Response.json({ calls }); } };'],
      ['calls-lambda.mjs', 'let calls = 0;\nexport const handler = async () => { calls++; return { calls }; };'],
    ] as const) {
      const { b, result } = await build(fixture, { source });
      if (result.status !== 'ok') throw new Error(result.reason);
      const vm = await restore(result.blobPath, b.bundlePath);
      expect(await getJson(vm)).toEqual({ status: 200, body: { calls: 1 } });
    }
  });

  it('answer with a Lambda handler', async () => {
    const { b, snap } = await buildOk('lambda.mjs');
    expect(snap.style).toBe('lambda');
    const vm = await restore(snap.blobPath, b.bundlePath);
    const { status, body } = await getJson(vm, '/orders');
    expect(status).toBe(201);
    expect(body).toEqual({ style: 'lambda', path: '/orders', method: 'GET', fn: 'snap-fn', started: '1970-01-01T00:00:00.000Z' });
  });

  it('answer with a Hono app', async () => {
    const { b, snap } = await buildOk('hono.mjs');
    const vm = await restore(snap.blobPath, b.bundlePath);
    expect(await getJson(vm, '/hello/ada')).toEqual({ status: 200, body: { style: 'hono', hello: 'ada' } });
    const miss = await vm.invoke(req('/nope'));
    expect([miss.status, miss.body.toString()]).toEqual([404, 'no route']);
  });

  it('see the env of their own microVM, never the build’s', async () => {
    const { b, snap } = await buildOk('env.mjs');
    const [one, two] = await Promise.all([
      restore(snap.blobPath, b.bundlePath, { GREETING: 'hello' }),
      restore(snap.blobPath, b.bundlePath, { GREETING: 'bonjour' }),
    ]);
    const a = (await getJson(one!)).body;
    const c = (await getJson(two!)).body;
    // Built with an empty env apart from PATH: no function env or secret is in the heap.
    expect(a.atInit).toEqual(['PATH']);
    expect([a.greeting, c.greeting]).toEqual(['hello', 'bonjour']);
    // The handler sees its env and the platform's FNCTL_ names, not node's settings (GLIBC_TUNABLES).
    expect(a.names).toEqual(['GREETING', 'PATH']);
    expect([a.instance, c.instance]).toEqual([one!.id, two!.id]);
  });

  it('booted without a snapshot, see only their env and the platform’s FNCTL_ names, at init too', async () => {
    const { b } = await buildOk('env.mjs');
    const vm = await bootPlain(b.bundlePath, { GREETING: 'hi' });
    const a = (await getJson(vm)).body;
    expect(a.atInit.filter((k: string) => !k.startsWith('FNCTL_'))).toEqual(['GREETING', 'PATH']);
    expect(a.names).toEqual(['GREETING', 'PATH']);
    await vm.kill('test over');
  });

  it('never share randomness, even when init drew from every source', async () => {
    const { b, snap } = await buildOk('random.mjs');
    const [one, two] = await Promise.all([restore(snap.blobPath, b.bundlePath), restore(snap.blobPath, b.bundlePath)]);
    const a = (await getJson(one!)).body;
    const c = (await getJson(two!)).body;
    // Same snapshot: what init drew is the same in both...
    expect(a.atInit).toEqual(c.atInit);
    // ...but nothing drawn after restore is, across a whole UUID cache refill and beyond.
    const shared = (a.uuids as string[]).filter((u) => (c.uuids as string[]).includes(u));
    expect(shared).toEqual([]);
    expect(a.uuids).not.toContain(a.atInit.uuid);
    expect(a.webUuid).not.toBe(c.webUuid);
    expect(a.math).not.toEqual(c.math);
    expect(a.bytes).not.toBe(c.bytes);
    expect(a.values).not.toBe(c.values);
    expect(a.ints).not.toEqual(c.ints);
  });

  it('run restore hooks in registration order, beforeSnapshot at build and afterRestore per restore', async () => {
    const { b, snap } = await buildOk('hooks.mjs');
    const vm = await restore(snap.blobPath, b.bundlePath, { DB_URL: 'postgres://db' });
    expect(await getJson(vm)).toEqual({
      status: 200,
      body: { events: ['before:1', 'before:2', 'after:1', 'after:2'], connection: 'reopened with postgres://db' },
    });
    // Booted without a snapshot, as Lambda does without SnapStart: neither kind of hook runs.
    const plain = await bootPlain(b.bundlePath);
    expect(await getJson(plain)).toEqual({ status: 200, body: { events: [], connection: 'none' } });
  });

  it('keep working timers when init set and cleared timers', async () => {
    const { b, snap } = await buildOk('timers.mjs');
    // A fresh microVM for each: what matters is the first timer after restore.
    const [short, long] = await Promise.all([restore(snap.blobPath, b.bundlePath), restore(snap.blobPath, b.bundlePath)]);
    const [a, c] = await Promise.all([getJson(short!, '/', 'ms=30'), getJson(long!, '/', 'ms=1000')]);
    expect([a.body, c.body]).toEqual([{ waited: true }, { waited: true }]);
  });

  it('fail to start, naming the hook, when an afterRestore hook throws', async () => {
    const source = `fnctl.afterRestore(() => { throw new Error('token refresh failed'); });\nexport default { fetch: () => new Response('x') };\n`;
    const { b, result } = await build('after-throws.mjs', { source });
    expect(result.status).toBe('ok');
    const err = await restore((result as BuildOk).blobPath, b.bundlePath).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FnError);
    expect((err as FnError).code).toBe('INIT_FAILED');
    expect((err as FnError).message).toMatch(/afterRestore hook failed: .*token refresh failed/);
  });
});

describe('functions that cannot be snapshotted say why', () => {
  it('an interval timer left running by init', async () => {
    const r = await notSnapshotable('open-interval.mjs');
    expect(r.kind).toBe('open-handle');
    expect(r.reason).toMatch(/^init left an open handle: Timeout \(setInterval of 1000 ms/);
  });

  it('a server left listening by init', async () => {
    const r = await notSnapshotable('open-server.mjs');
    expect(r.kind).toBe('open-handle');
    expect(r.reason).toContain('TCPServerWrap (a server listening on a TCP port)');
  });

  it('an unref’d timer still pending', async () => {
    const r = await notSnapshotable('pending-timer.mjs');
    expect(r.kind).toBe('pending-timer');
    expect(r.reason).toMatch(/setTimeout of 60000 ms \(unref’d\)/);
  });

  it('a beforeSnapshot hook that throws', async () => {
    const r = await notSnapshotable('hook-throws.mjs');
    expect(r.kind).toBe('hook-failed');
    expect(r.reason).toContain('a beforeSnapshot hook failed: Error: cannot close the pool');
  });

  it('what node does not offer while it builds a snapshot', async () => {
    const r = await notSnapshotable('unsupported.mjs');
    expect(r.kind).toBe('unsupported');
    expect(r.reason).toMatch(/toSorted.*does not provide while it builds a snapshot/);
  });

  it('an init that never finishes hits the time limit, and the builder is gone', async () => {
    const r = await notSnapshotable('runaway.mjs', { initTimeoutMs: 1500 });
    expect(r).toMatchObject({ kind: 'timeout', reason: 'init did not finish within 1.5 s' });
    expect(gone(r.pid)).toBe(true);
  });

  it('a native addon loaded by init', async (ctx) => {
    let gcc = true;
    try {
      execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    } catch {
      gcc = false;
    }
    // No prebuilt .node fixture: compile the smallest N-API module there is, when a C compiler is here.
    if (!gcc) return ctx.skip();
    const dir = await mkdtemp(join(tmpdir(), 'fnctl-addon-'));
    try {
      const c = join(dir, 'addon.c');
      await writeFile(c, 'typedef struct napi_env__* napi_env; typedef struct napi_value__* napi_value;\n__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) { return exports; }\n');
      const addon = join(dir, 'addon.node');
      execFileSync('gcc', ['-shared', '-fPIC', '-o', addon, c]);
      const source = `const m = { exports: {} };\nprocess.dlopen(m, ${JSON.stringify(addon)});\nexport default { fetch: () => new Response('x') };\n`;
      const r = await notSnapshotable('addon.mjs', { source });
      expect(r.kind).toBe('native-addon');
      expect(r.reason).toContain(`init loaded the native addon ${addon}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an init that throws fails with the function’s error and stack', async () => {
    const err = await build('init-throws.mjs').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FnError);
    expect((err as FnError).code).toBe('INIT_FAILED');
    expect((err as FnError).message).toMatch(/^init failed: Error: config file missing at init\n\s+at loadConfig \(/);
  });
});

describe('SnapshotStore', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'fnctl-store-'));
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('builds once for concurrent callers, verifies on get, and rebuilds a corrupted blob', async () => {
    const warnings: { obj: Record<string, unknown>; msg: string }[] = [];
    const log = { warn: (obj: Record<string, unknown>, msg: string) => warnings.push({ obj, msg }), info: () => {} } as unknown as Logger;
    const store = await SnapshotStore.open(dataDir, { log });
    const b = await bundle('fetch.mjs');
    const { sha256 } = await hashFile(b.bundlePath);

    expect(await store.get(sha256, 128)).toBeUndefined();
    const [first, second] = await Promise.all([store.build(b.bundlePath, sha256, 128, 10_000), store.build(b.bundlePath, sha256, 128, 10_000)]);
    expect(second).toBe(first);
    if (first.status !== 'ok') throw new Error(first.reason);
    const { snapshot } = first;
    expect(snapshot.blobPath).toBe(join(dataDir, 'snapshots', `${store.key(sha256, 128)}.blob`));
    expect(snapshot.meta).toMatchObject({ magic: 'fnctl-snapshot', formatVersion: 1, node: process.version, bundleSha256: sha256, memoryMib: 128 });
    expect((await readdir(join(dataDir, 'snapshots'))).sort()).toEqual([`${snapshot.key}.blob`, `${snapshot.key}.json`]);

    const found = await store.get(sha256, 128);
    expect(found?.meta).toEqual(snapshot.meta);
    const vm = await restore(found!.blobPath, b.bundlePath);
    expect((await getJson(vm, '/', 'n=3')).body.square).toBe(9);
    await vm.stop();

    // Flip one byte in the middle of the blob: same size, different content.
    const fh = await open(snapshot.blobPath, 'r+');
    const at = Math.floor(snapshot.meta.blobBytes / 2);
    const byte = Buffer.alloc(1);
    await fh.read(byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0xff;
    await fh.write(byte, 0, 1, at);
    await fh.close();
    clearVerifyCache();

    expect(await store.get(sha256, 128)).toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.obj.reason).toMatch(/does not match its sha256 \(corrupt\)/);
    expect(existsSync(snapshot.blobPath) || existsSync(snapshot.metaPath)).toBe(false);

    const rebuilt = await store.ensure(b.bundlePath, sha256, 128, 10_000);
    expect(rebuilt.status).toBe('ok');
    expect(await store.get(sha256, 128)).toBeDefined();

    // Keys of another node or bundle are never looked up again: prune drops them.
    await writeFile(join(dataDir, 'snapshots', `${'e'.repeat(64)}.blob`), 'old');
    expect(await store.prune([{ bundleSha256: sha256, memoryMib: 128 }])).toEqual(['e'.repeat(64)]);
    expect(await store.get(sha256, 128)).toBeDefined();
  });

  it('discards a snapshot whose metadata names another node', async () => {
    const warnings: string[] = [];
    const log = { warn: (obj: { reason: string }) => warnings.push(obj.reason), info: () => {} } as unknown as Logger;
    const store = await SnapshotStore.open(dataDir, { log });
    const b = await bundle('lambda.mjs');
    const { sha256 } = await hashFile(b.bundlePath);
    const built = await store.build(b.bundlePath, sha256, 128, 10_000);
    if (built.status !== 'ok') throw new Error(built.reason);
    const meta = { ...built.snapshot.meta, node: 'v20.1.0' };
    await writeFile(built.snapshot.metaPath, JSON.stringify(meta));
    expect(await store.get(sha256, 128)).toBeUndefined();
    expect(warnings).toEqual([`snapshot ${built.snapshot.blobPath} was built by node v20.1.0, this is ${process.version}`]);
  });
});
