// Snapshots through the platform: deploy modes, env per deploy of one bundle, restore hooks, and
// a corrupted snapshot caught and rebuilt before any microVM is restored from it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { TestGateway } from '../helpers/gateway.js';

const t = new TestGateway({ initTimeoutMs: 3000 });
const get = (pathname: string) => t.http(pathname);
const deploy = (name: string, file: string, settings: Record<string, unknown> = {}) => t.deploy(name, file, settings);
const dataDir = t.dataDir;

beforeAll(() => t.start(), 60_000);
afterAll(() => t.close());

describe('snapshots through the platform', () => {
  it('two deploys of one bundle share its snapshot, each with its own env', async () => {
    const a = await deploy('env-a', 'test/fixtures/behaviour/echo.mjs', { env: { GREETING: 'from a' } });
    const b = await deploy('env-b', 'test/fixtures/behaviour/echo.mjs', { env: { GREETING: 'from b' } });
    expect(a.snapshot.status).toBe('ready');
    expect(b.snapshot.status).toBe('ready');
    const ra = await get('/fn/env-a');
    const rb = await get('/fn/env-b');
    expect(ra.headers['x-fn-start']).toBe('restore');
    expect(rb.headers['x-fn-start']).toBe('restore');
    expect(JSON.parse(ra.text).greeting).toBe('from a');
    expect(JSON.parse(rb.text).processGreeting).toBe('from b');
    // One blob on disk: the snapshot is keyed by the bundle, not by the deploy.
    expect(readdirSync(path.join(dataDir, 'snapshots')).filter((f) => f.endsWith('.blob'))).toHaveLength(1);
  });

  it('a start from zero takes the guest held ready for its version, with the env of its deploy; a redeploy drops it', async () => {
    await deploy('held', 'test/fixtures/behaviour/echo.mjs', { env: { GREETING: 'v1' } });
    const first = await get('/fn/held');
    expect(first.headers['x-fn-start']).toBe('restore');
    // The first start holds a guest for the next one (made 100 ms later, off this start's path).
    await new Promise((r) => setTimeout(r, 400));
    await t.platform.stopInstances('held');
    const second = await get('/fn/held');
    expect(second.headers['x-fn-start']).toBe('restore');
    expect(second.headers['x-fn-instance']).toMatch(/^vm-held-1-h/);
    expect(JSON.parse(second.text).greeting).toBe('v1');
    expect(second.headers['server-timing']).toMatch(/restore;dur=/);
    // A new version: its microVMs never come from the old version's held guest.
    await new Promise((r) => setTimeout(r, 400));
    await deploy('held', 'test/fixtures/behaviour/echo.mjs', { env: { GREETING: 'v2' } });
    const third = await get('/fn/held');
    expect(third.headers['x-fn-instance']).toMatch(/^vm-held-2-/);
    expect(JSON.parse(third.text).greeting).toBe('v2');
  });

  it('runs restore hooks, and restored microVMs do not share randomness', async () => {
    await deploy('hooks', 'functions/examples/restore-hooks.js', { max: 2, concurrency: 1 });
    const [one, two] = await Promise.all([get('/fn/hooks'), get('/fn/hooks')]);
    const s1 = JSON.parse(one.text);
    const s2 = JSON.parse(two.text);
    expect(one.headers['x-fn-instance']).not.toBe(two.headers['x-fn-instance']);
    expect(s1.connection).toBe('reopened');
    expect(s1.restoredAt).toEqual(expect.any(String));
    expect(s1.bootId).toBe(s2.bootId); // drawn during init, so frozen into the snapshot
    expect(s1.instanceId).not.toBe(s2.instanceId); // drawn after restore
  });

  it('--snapshot auto falls back to plain boots with the reason; required fails; off takes none', async () => {
    const auto = await deploy('interval', 'test/fixtures/snapshot/open-interval.mjs', { snapshot: 'auto' });
    expect(auto.snapshot).toMatchObject({ status: 'none', reason: expect.stringMatching(/open handle|interval|Timeout/i) });
    const res = await get('/fn/interval');
    expect(res.status).toBe(200);
    expect(res.headers['x-fn-start']).toBe('cold');
    await expect(deploy('interval-req', 'test/fixtures/snapshot/open-interval.mjs', { snapshot: 'required' })).rejects.toMatchObject({
      code: 'SNAPSHOT_FAILED',
      message: expect.stringMatching(/cannot be snapshotted/),
    });
    expect((await get('/fn/interval-req')).status).toBe(404);
    const off = await deploy('hello-off', 'functions/examples/hello.js', { snapshot: 'off' });
    expect(off.snapshot.status).toBe('off');
  });

  it('an init that never ends fails the deploy within the limit, and the previous version keeps serving', async () => {
    await deploy('runaway', 'functions/examples/hello.js');
    const started = Date.now();
    await expect(deploy('runaway', 'test/fixtures/snapshot/runaway.mjs')).rejects.toMatchObject({ code: 'INIT_TIMEOUT' });
    expect(Date.now() - started).toBeLessThan(20_000);
    expect((await get('/fn/runaway')).status).toBe(200);
  });

  it('a corrupted snapshot is detected and rebuilt before a microVM is restored from it', async () => {
    await deploy('corrupt', 'functions/examples/hello.js', { memory: 192 });
    expect((await get('/fn/corrupt')).headers['x-fn-start']).toBe('restore');
    await t.platform.stopInstances('corrupt');
    const snapDir = path.join(dataDir, 'snapshots');
    const metas = readdirSync(snapDir).filter((f) => f.endsWith('.json')).map((f) => path.join(snapDir, f));
    const meta = metas.map((m) => ({ file: m, meta: JSON.parse(readFileSync(m, 'utf8')) })).find((m) => m.meta.memoryMib === 192)!;
    const blob = meta.file.replace(/\.json$/, '.blob');
    const bytes = readFileSync(blob);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    writeFileSync(blob, bytes);
    const after = await get('/fn/corrupt');
    expect(after.status).toBe(200);
    expect(after.headers['x-fn-start']).toBe('restore');
    // Rebuilt: V8 snapshots are not byte-for-byte reproducible, so the new blob has a new hash,
    // and its metadata describes the blob now on disk.
    const rebuilt = readFileSync(blob);
    expect(rebuilt.equals(bytes)).toBe(false);
    expect(JSON.parse(readFileSync(meta.file, 'utf8')).sha256).toBe(createHash('sha256').update(rebuilt).digest('hex'));
  });
});
