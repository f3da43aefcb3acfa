// Pools under load with real microVMs: max and throttling, reaping to zero, redeploy under load.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { Gateway } from '../../gateway/server.js';
import { silentLogger } from '../../core/log.js';
import { packageFunction } from '../../functions/package.js';
import { repoRoot } from '../helpers/platform.js';

const dataDir = mkdtempSync(path.join(tmpdir(), 'fnctl-scale-'));
let gateway: Gateway;
let url = '';

async function get(pathname: string) {
  const res = await request(url + pathname);
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

async function deploy(name: string, file: string, settings: Record<string, unknown> = {}) {
  const pkg = await packageFunction(path.join(repoRoot, file));
  return gateway.platform.deploy({ name, bundle: pkg.bundle, settings });
}

beforeAll(async () => {
  gateway = new Gateway({
    config: { port: 0, dataDir, queueWaitMs: 700, queueLength: 4 },
    token: 'test-token-0123456789abcdef',
    log: silentLogger(),
  });
  url = await gateway.listen();
}, 60_000);

afterAll(async () => {
  await gateway.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('pools under load', () => {
  it('with concurrency 1 and max 4, twelve slow requests use four microVMs; the rest wait or are throttled', async () => {
    await deploy('slow', 'test/fixtures/behaviour/faults.mjs', { concurrency: 1, max: 4 });
    const calls = await Promise.all(Array.from({ length: 12 }, () => get('/fn/slow/sleep?ms=500')));
    const served = calls.filter((c) => c.status === 200);
    const throttled = calls.filter((c) => c.status === 429);
    expect(served.length + throttled.length).toBe(12);
    expect(new Set(served.map((c) => c.headers['x-fn-instance'])).size).toBeLessThanOrEqual(4);
    expect(served.length).toBeGreaterThanOrEqual(4);
    expect(throttled.length).toBeGreaterThanOrEqual(1);
    for (const t of throttled) {
      expect(JSON.parse(t.text).error.code).toBe('THROTTLED');
      expect(t.headers['retry-after']).toBe('1');
    }
    expect(gateway.platform.instances('slow').length).toBeLessThanOrEqual(4);
  });

  it('after `idle` seconds without traffic the function has no microVM left', async () => {
    await deploy('brief', 'functions/examples/hello.js', { idle: 1 });
    expect((await get('/fn/brief')).status).toBe(200);
    expect(gateway.platform.instances('brief')).toHaveLength(1);
    await expect.poll(() => gateway.platform.instances('brief').length, { timeout: 6000, interval: 200 }).toBe(0);
    const again = await get('/fn/brief');
    expect(again.headers['x-fn-start']).toBe('restore');
  });

  it('a redeploy under steady load loses no request: new requests go to the new version', async () => {
    await deploy('steady', 'test/fixtures/behaviour/version-a.mjs', { concurrency: 4 });
    let stop = false;
    const seen: { status: number; text: string }[] = [];
    const workers = Array.from({ length: 4 }, async () => {
      while (!stop) seen.push(await get('/fn/steady'));
    });
    await new Promise((r) => setTimeout(r, 300));
    await deploy('steady', 'test/fixtures/behaviour/version-b.mjs', { concurrency: 4 });
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(workers);
    expect(seen.length).toBeGreaterThan(20);
    expect(seen.filter((r) => r.status !== 200)).toEqual([]);
    expect(seen[0]!.text).toBe('version A');
    expect(seen.at(-1)!.text).toBe('version B');
  });
});
