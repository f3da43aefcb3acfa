// The host memory budget with real microVMs: a budget that fits two 128 MiB microVMs, shared by two
// functions. A burst on one evicts the other's idle microVMs (least recently used first) and is
// served; with both busy up to the budget, further requests are throttled, and the budget is never
// overrun.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MiB } from '../../core/budget.js';
import { TestGateway } from '../helpers/gateway.js';

const t = new TestGateway({ memoryBudgetMiB: 256, queueWaitMs: 800, queueLength: 10 });
const get = (pathname: string) => t.http(pathname);
const ids = (name: string) => t.platform.instances(name).map((i) => i.id).sort();

beforeAll(async () => {
  await t.start();
  // a keeps two microVMs (min 2), so that the autoscaler cannot scale them down meanwhile: a
  // memory budget evicts those too, when they are idle.
  await t.deploy('a', 'test/fixtures/behaviour/faults.mjs', { min: 2 });
  await t.deploy('b', 'test/fixtures/behaviour/faults.mjs');
}, 60_000);
afterAll(() => t.close());

describe('host memory budget', () => {
  it("a burst on function b evicts function a's idle microVMs, least recently used first, and is served", async () => {
    // a has two idle microVMs; a request on one makes the other the least recently used.
    await expect.poll(() => t.platform.describe('a').instances.idle, { timeout: 10_000, interval: 20 }).toBe(2);
    const recent = (await get('/fn/a/ok')).headers['x-fn-instance'] as string;
    const lru = ids('a').find((id) => id !== recent)!;
    expect(t.platform.budget.reservedBytes).toBe(256 * MiB);

    // One slow request on b: one microVM of a must go, the least recently used.
    const b1 = get('/fn/b/sleep?ms=2500');
    await expect.poll(() => ids('a'), { timeout: 5000, interval: 20 }).toEqual([recent]);
    expect(lru).not.toBe(recent);
    // A second, while the first still runs: a's last microVM goes too.
    const b2 = get('/fn/b/sleep?ms=200');
    const served = await Promise.all([b1, b2]);
    expect(served.map((r) => r.status)).toEqual([200, 200]);
    expect(new Set(served.map((r) => r.headers['x-fn-instance'])).size).toBe(2);
    // Both of a's microVMs went (a starts its min again only once b gives memory back).
    expect(ids('a')).not.toContain(recent);
    expect(ids('a')).not.toContain(lru);
    expect(t.platform.budget.evictions).toBe(2);
    expect(t.platform.budget.peakBytes).toBeLessThanOrEqual(256 * MiB);
    const metrics = (await get('/metrics')).text;
    expect(metrics).toMatch(/^fnctl_evictions_total\{function="a"\} 2$/m);
    expect(metrics).toMatch(/^fnctl_memory_budget_bytes 268435456$/m);
  });

  it('with a and b busy up to the budget, further requests are THROTTLED, never a budget overrun', async () => {
    let peak = 0;
    const sample = setInterval(() => (peak = Math.max(peak, t.platform.budget.reservedBytes)), 5);
    try {
      // Whatever each function has now, both end up busy with one microVM each, the whole budget.
      const busy = [get('/fn/a/sleep?ms=2000'), get('/fn/b/sleep?ms=2000')];
      await expect.poll(() => t.platform.describe('a').instances.busy + t.platform.describe('b').instances.busy, { timeout: 5000, interval: 20 }).toBe(2);
      const more = await Promise.all([get('/fn/a/ok'), get('/fn/b/ok')]);
      for (const r of more) {
        expect(r.status).toBe(429);
        expect(r.json().error.code).toBe('THROTTLED');
        expect(r.headers['retry-after']).toBe('1');
      }
      expect(more[0]!.json().error.message).toMatch(/memory budget of 256 MiB has no room for another 128 MiB microVM/);
      expect((await Promise.all(busy)).map((r) => r.status)).toEqual([200, 200]);
    } finally {
      clearInterval(sample);
    }
    expect(peak).toBeLessThanOrEqual(256 * MiB);
    expect(t.platform.budget.peakBytes).toBeLessThanOrEqual(256 * MiB);
  });
});
