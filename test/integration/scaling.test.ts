// Pools under load with real microVMs: max and throttling, reaping to zero, redeploy under load.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestGateway } from '../helpers/gateway.js';

const t = new TestGateway({ queueWaitMs: 700, queueLength: 4 });
const get = (pathname: string) => t.http(pathname);
const deploy = (name: string, file: string, settings: Record<string, unknown> = {}) => t.deploy(name, file, settings);

beforeAll(() => t.start(), 60_000);
afterAll(() => t.close());

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
    expect(t.platform.instances('slow').length).toBeLessThanOrEqual(4);
  });

  it('after `idle` seconds without traffic the function has no microVM left', async () => {
    await deploy('brief', 'functions/examples/hello.js', { idle: 1 });
    expect((await get('/fn/brief')).status).toBe(200);
    expect(t.platform.instances('brief')).toHaveLength(1);
    await expect.poll(() => t.platform.instances('brief').length, { timeout: 6000, interval: 200 }).toBe(0);
    const again = await get('/fn/brief');
    expect(again.headers['x-fn-start']).toBe('restore');
  });

  it('with standby 1 the first request is served by a pre-restored, paused microVM', async () => {
    await deploy('ready', 'functions/examples/hello.js', { standby: 1 });
    await expect.poll(() => t.platform.instances('ready').map((i) => i.state), { timeout: 10_000, interval: 100 }).toEqual(['paused']);
    const first = await get('/fn/ready');
    expect(first.status).toBe(200);
    expect(first.headers['x-fn-start']).toBe('standby');
    // Another standby takes its place.
    await expect.poll(() => t.platform.instances('ready').filter((i) => i.state === 'paused').length, { timeout: 10_000, interval: 100 }).toBe(1);
    expect((await get('/fn/ready')).headers['x-fn-start']).toBe('warm');
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
