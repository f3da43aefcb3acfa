// The pool's rules with a fake clock and small honest microVM doubles: reuse, max, the bounded
// queue and its wait limit, throttling, scale-down through scaleTo only, recycling, crash
// handling, live scaling, drain.
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../core/clock.js';
import { silentLogger } from '../../core/log.js';
import { MiB, MemoryBudget } from '../../core/budget.js';
import { Pool, STANDBY_REFILL_MS, type PoolOptions, type PoolSpec } from '../../microvm/pool.js';
import type { ConsoleRecord, InvokeRequest, MicroVmConfig } from '../../microvm/types.js';
import { FakeVm } from '../helpers/fake-vm.js';

function setup(spec: Partial<PoolSpec> = {}, options: { queueLength?: number; queueWaitMs?: number; recycle?: PoolOptions['recycle']; budget?: MemoryBudget } = {}) {
  const clock = new FakeClock(1_000_000);
  const vms: FakeVm[] = [];
  const records: ConsoleRecord[] = [];
  let bootGate: Promise<void> = Promise.resolve();
  const pool = new Pool({
    spec: { functionName: 'f', version: 1, bundlePath: '/b', memoryMib: 128, timeoutMs: 1000, concurrency: 1, min: 0, max: 3, standby: 0, idleMs: 60_000, env: {}, network: 'host', ...spec },
    factory: async (config: MicroVmConfig) => {
      await bootGate;
      const vm = new FakeVm(config.id);
      vms.push(vm);
      return vm;
    },
    clock,
    log: silentLogger(),
    sink: { record: (r) => records.push(r) },
    initTimeoutMs: 1000,
    queueWaitMs: options.queueWaitMs ?? 500,
    queueLength: options.queueLength ?? 10,
    ...(options.recycle ? { recycle: options.recycle } : {}),
    ...(options.budget ? { budget: options.budget } : {}),
  });
  return { pool, clock, vms, records, holdBoots: (p: Promise<void>) => (bootGate = p) };
}

const req = (n = 0): InvokeRequest => ({ requestId: `r${n}`, method: 'GET', path: '/', query: '', headers: [], body: Buffer.alloc(0), sourceIp: '' });
const flush = () => new Promise((r) => setImmediate(r));
/** A gate for the fake factory: boots wait until it is opened. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}
/** Whether a promise has settled (without waiting for it). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  await flush();
  return done;
}

describe('Pool', () => {
  it('boots a microVM for the first request and reuses it warm', async () => {
    const { pool, vms } = setup();
    const first = pool.invoke(req(1));
    await flush();
    expect(vms).toHaveLength(1);
    vms[0]!.finish();
    const r1 = await first;
    expect(r1.lease.start).toBe('cold');
    expect(r1.lease.initMs).toBe(5);
    const second = pool.invoke(req(2));
    await flush();
    vms[0]!.finish();
    const r2 = await second;
    expect(r2.lease.start).toBe('warm');
    expect(r2.lease.instance).toBe(r1.lease.instance);
    expect(vms).toHaveLength(1);
  });

  it('writes a REPORT record per invocation, with the init duration on the first only', async () => {
    const { pool, vms, records } = setup();
    const a = pool.invoke(req(1));
    await flush();
    vms[0]!.finish();
    await a;
    const b = pool.invoke(req(2));
    await flush();
    vms[0]!.finish();
    await b;
    const reports = records.filter((r) => r.level === 'REPORT');
    expect(reports).toHaveLength(2);
    expect(reports[0]!.message).toMatch(/^REPORT RequestId: r1\tDuration: 1\.00 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: [\d.]+ ms$/);
    expect(reports[1]!.message).not.toMatch(/Init Duration/);
  });

  it('starts at most max microVMs, queues the rest and serves them as microVMs free up', async () => {
    const { pool, vms } = setup({ max: 2 });
    const calls = [0, 1, 2, 3].map((n) => pool.invoke(req(n)));
    await flush();
    expect(vms).toHaveLength(2);
    expect(pool.counts()).toMatchObject({ busy: 2, queued: 2 });
    vms[0]!.finish();
    await flush();
    vms[1]!.finish();
    await flush();
    vms[0]!.finish();
    vms[1]!.finish();
    const results = await Promise.all(calls);
    expect(results.map((r) => r.lease.start).sort()).toEqual(['cold', 'cold', 'warm', 'warm']);
  });

  it('throttles when the queue is full, and when a queued request waits past its limit', async () => {
    const { pool, vms, clock } = setup({ max: 1 }, { queueLength: 1, queueWaitMs: 500 });
    const running = pool.invoke(req(0));
    await flush();
    const queued = pool.invoke(req(1));
    await expect(pool.invoke(req(2))).rejects.toMatchObject({ code: 'THROTTLED' });
    clock.advance(499);
    expect(pool.counts().queued).toBe(1);
    clock.advance(1);
    await expect(queued).rejects.toMatchObject({ code: 'THROTTLED', details: { retryAfterSeconds: 1 } });
    vms[0]!.finish();
    await running;
  });

  it('serves `concurrency` requests on one microVM at once', async () => {
    const { pool, vms } = setup({ concurrency: 3, max: 1 });
    const first = pool.invoke(req(0));
    await flush();
    const more = [1, 2].map((n) => pool.invoke(req(n)));
    await flush();
    expect(vms).toHaveLength(1);
    expect(vms[0]!.pending).toHaveLength(3);
    vms[0]!.finish();
    vms[0]!.finish();
    vms[0]!.finish();
    await Promise.all([first, ...more]);
  });

  it('never stops an idle microVM on its own: scale-down is the autoscaler\'s (scaleTo), LRU first, down to min', async () => {
    const { pool, vms, clock } = setup({ max: 3, min: 1, idleMs: 60_000 });
    const calls = [0, 1, 2].map((n) => pool.invoke(req(n)));
    await flush();
    expect(vms).toHaveLength(3);
    vms[2]!.finish();
    await flush();
    clock.advance(10_000);
    vms[0]!.finish();
    await flush();
    clock.advance(10_000);
    vms[1]!.finish();
    await Promise.all(calls);
    clock.advance(600_000); // far past `idle`: nothing in the pool stops them
    expect(vms.map((v) => v.stopped)).toEqual([false, false, false]);
    pool.scaleTo(2); // vm 2 is the least recently used
    expect(vms.map((v) => v.stopped)).toEqual([false, false, true]);
    pool.scaleTo(0); // min 1 keeps vm 1, the most recently used
    expect(vms.map((v) => v.stopped)).toEqual([true, false, true]);
    expect(pool.instances()).toHaveLength(1);
  });

  it('scaleTo leaves busy microVMs to finish their requests', async () => {
    const { pool, vms } = setup({ max: 3 });
    const calls = [0, 1].map((n) => pool.invoke(req(n)));
    await flush();
    vms[0]!.finish();
    await flush();
    pool.scaleTo(0);
    expect(vms.map((v) => v.stopped)).toEqual([true, false]);
    vms[1]!.finish();
    await Promise.all(calls);
    pool.scaleTo(0);
    expect(vms.map((v) => v.stopped)).toEqual([true, true]);
  });

  it('recycles a microVM after its maximum number of invocations, once its requests are done', async () => {
    const { pool, vms } = setup({ max: 3 }, { recycle: { maxAgeMs: 0, maxInvocations: 2 } });
    for (let n = 0; n < 2; n++) {
      const call = pool.invoke(req(n));
      await flush();
      vms[0]!.finish();
      await call;
    }
    expect(vms[0]!.stopped).toBe(true);
    const next = pool.invoke(req(3));
    await flush();
    expect(vms).toHaveLength(2);
    vms[1]!.finish();
    expect((await next).lease.start).toBe('cold');
  });

  it('recycles idle microVMs and standbys past their maximum age at the next tick; min and standby are kept', async () => {
    const { pool, vms, clock } = setup({ min: 1, standby: 1 }, { recycle: { maxAgeMs: 3_600_000, maxInvocations: 0 } });
    pool.ensureMin();
    await flush();
    expect(vms).toHaveLength(2);
    clock.advance(3_600_000);
    pool.scaleTo(0);
    await flush();
    expect(vms.slice(0, 2).map((v) => v.stopped)).toEqual([true, true]);
    expect(vms).toHaveLength(4);
    expect(pool.counts()).toMatchObject({ idle: 1, paused: 1 });
  });

  it('updateScaling applies min, max and standby at once', async () => {
    const { pool, vms } = setup({ max: 3 });
    pool.updateScaling({ min: 2, max: 3, standby: 1 });
    await flush();
    expect(pool.counts()).toMatchObject({ idle: 2, paused: 1 });
    pool.updateScaling({ min: 0, max: 1, standby: 0 });
    await flush();
    expect(pool.counts()).toMatchObject({ idle: 1, paused: 0 });
    expect(vms.filter((v) => !v.stopped)).toHaveLength(1);
  });

  it('drops a crashed microVM and boots a new one for the next request', async () => {
    const { pool, vms } = setup();
    const a = pool.invoke(req(0));
    await flush();
    vms[0]!.crash();
    await expect(a).rejects.toMatchObject({ code: 'FUNCTION_CRASHED' });
    const b = pool.invoke(req(1));
    await flush();
    expect(vms).toHaveLength(2);
    vms[1]!.finish();
    expect((await b).lease.start).toBe('cold');
  });

  it('keeps min microVMs started', async () => {
    const { pool, vms } = setup({ min: 2 });
    pool.ensureMin();
    await flush();
    expect(vms).toHaveLength(2);
    vms[0]!.crash();
    await flush();
    expect(vms).toHaveLength(3);
  });

  it('keeps `standby` paused microVMs; a request takes one (standby) and a new one replaces it, a little later', async () => {
    const { pool, vms, clock } = setup({ standby: 1 });
    pool.ensureMin();
    await flush();
    expect(vms).toHaveLength(1);
    expect(vms[0]!.paused).toBe(true);
    const call = pool.invoke(req(1));
    await flush();
    expect(vms[0]!.paused).toBe(false);
    vms[0]!.finish();
    const r = await call;
    expect(r.lease.start).toBe('standby');
    expect(r.lease.instance).toBe(vms[0]!.id);
    await flush();
    // Not at once: its restore would take a core from the request the standby serves.
    expect(vms).toHaveLength(1);
    clock.advance(STANDBY_REFILL_MS);
    await flush();
    expect(vms).toHaveLength(2);
    expect(vms[1]!.paused).toBe(true);
    expect(pool.instances()).toHaveLength(2);
  });

  it('drain lets in-flight requests finish, then stops every microVM and refuses new ones', async () => {
    const { pool, vms, clock } = setup();
    const a = pool.invoke(req(0));
    await flush();
    const drained = pool.drain(5000);
    await expect(pool.invoke(req(1))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(vms[0]!.stopped).toBe(false);
    vms[0]!.finish();
    await a;
    await drained;
    expect(vms[0]!.stopped).toBe(true);
    clock.advance(10_000);
  });

  it('drain past its grace refuses the request whose microVM is still starting, and stops that microVM as soon as it is up', async () => {
    const budget = new MemoryBudget({ budgetBytes: 1024 * MiB });
    const { pool, vms, clock, holdBoots } = setup({}, { budget });
    const boot = gate();
    holdBoots(boot.promise);
    const call = pool.invoke(req(0));
    call.catch(() => {});
    await flush();
    expect(budget.reservedBytes).toBe(128 * MiB);
    const drained = pool.drain(1000);
    expect(await settled(drained)).toBe(false); // it waits for the start
    clock.advance(1000); // the start outlasts the grace
    await drained;
    expect(await settled(call)).toBe(true); // refused now, not left waiting for the start
    await expect(call).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    boot.open();
    await flush();
    expect(vms).toHaveLength(1);
    expect(vms[0]!.stopped).toBe(true);
    expect(vms[0]!.pending).toHaveLength(0);
    expect(budget.reservedBytes).toBe(0);
    expect(pool.instances()).toHaveLength(0);
    expect(pool.counts()).toMatchObject({ starting: 0, busy: 0, idle: 0 });
  });

  it('drain past its grace stops a background start as soon as it is up', async () => {
    const budget = new MemoryBudget({ budgetBytes: 1024 * MiB });
    const { pool, vms, clock, holdBoots } = setup({ min: 1 }, { budget });
    const boot = gate();
    holdBoots(boot.promise);
    pool.ensureMin();
    await flush();
    const drained = pool.drain(1000);
    clock.advance(1000);
    await drained;
    boot.open();
    await flush();
    expect(vms.map((v) => v.stopped)).toEqual([true]);
    expect(budget.reservedBytes).toBe(0);
    expect(pool.instances()).toHaveLength(0);
  });

  it('drain waits for standbys being restored, which stop when they land', async () => {
    const budget = new MemoryBudget({ budgetBytes: 1024 * MiB });
    const { pool, vms, holdBoots } = setup({ standby: 1 }, { budget });
    const boot = gate();
    holdBoots(boot.promise);
    pool.ensureMin();
    await flush();
    expect(pool.counts().starting).toBe(1);
    const drained = pool.drain(5000);
    expect(await settled(drained)).toBe(false);
    boot.open();
    await drained;
    expect(vms.map((v) => v.stopped)).toEqual([true]);
    expect(budget.reservedBytes).toBe(0);
    expect(pool.instances()).toHaveLength(0);
  });
});
