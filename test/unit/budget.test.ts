// The host memory budget: its accounting alone (reserve, release, LRU eviction of idle microVMs of
// other pools, claims in line), then pools sharing one budget with microVM doubles and a fake
// clock. No sleeps: microtasks and setImmediate only.
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../core/clock.js';
import { silentLogger } from '../../core/log.js';
import { MemoryBudget, MiB, type BudgetOwner, type Eviction, type Reservation } from '../../core/budget.js';
import { Pool, type PoolSpec } from '../../microvm/pool.js';
import type { InvokeRequest } from '../../microvm/types.js';
import { FakeVm } from '../helpers/fake-vm.js';

const flush = () => new Promise((r) => setImmediate(r));

class Owner implements BudgetOwner {
  freed = 0;
  constructor(
    readonly functionName: string,
    readonly version = 1,
  ) {}
  memoryFreed(): void {
    this.freed++;
  }
}

/** A microVM double as the budget sees it: idle or busy, and evicted by a stop that exits at once. */
class Holder {
  busy = false;
  evicted: string | undefined;
  constructor(
    readonly budget: MemoryBudget,
    readonly r: Reservation,
    readonly instance: string,
  ) {
    budget.attach(r, this);
  }
  evictable(): boolean {
    return !this.busy && !this.evicted;
  }
  evict(reason: string): void {
    this.evicted = reason;
  }
  exit(): void {
    this.budget.release(this.r);
  }
}

function budgetOf(mib: number) {
  const evictions: Eviction[] = [];
  const budget = new MemoryBudget({ budgetBytes: mib * MiB, onEvict: (e) => evictions.push(e) });
  const start = (owner: Owner, name: string, mib = 128) => {
    const r = budget.reserve(owner, mib * MiB, { forRequest: false });
    if (!r) throw new Error(`no room for ${name}`);
    return new Holder(budget, r, name);
  };
  return { budget, evictions, start };
}

describe('MemoryBudget', () => {
  it('reserves while there is room, gives memory back on release, once', () => {
    const { budget } = budgetOf(256);
    const a = new Owner('a');
    const r1 = budget.reserve(a, 128 * MiB, { forRequest: false })!;
    const r2 = budget.reserve(a, 128 * MiB, { forRequest: false })!;
    expect(budget.reservedBytes).toBe(256 * MiB);
    expect(budget.reserve(a, 1, { forRequest: false })).toBeUndefined();
    budget.release(r1);
    budget.release(r1);
    expect(budget.reservedBytes).toBe(128 * MiB);
    budget.release(r2);
    expect(budget.reservedBytes).toBe(0);
    expect(budget.peakBytes).toBe(256 * MiB);
  });

  it('a request evicts idle microVMs of other functions, least recently used first, only as many as it needs', async () => {
    const { budget, evictions, start } = budgetOf(384);
    const a = new Owner('a');
    const b = new Owner('b');
    const a1 = start(a, 'a1');
    const a2 = start(a, 'a2');
    const a3 = start(a, 'a3');
    budget.touch(a1.r); // a2 is now the least recently used, then a3
    expect(budget.reserve(b, 128 * MiB, { forRequest: true })).toBeUndefined();
    expect([a1, a2, a3].map((h) => Boolean(h.evicted))).toEqual([false, true, false]);
    expect(evictions).toEqual([{ victim: { functionName: 'a', version: 1, instance: 'a2' }, claimant: { functionName: 'b', version: 1 }, bytes: 128 * MiB }]);
    // Asking again while the eviction is under way evicts nothing more.
    expect(budget.reserve(b, 128 * MiB, { forRequest: true })).toBeUndefined();
    expect(budget.evictions).toBe(1);
    // Memory comes back when the evicted microVM exits; the claimant hears of it and gets it.
    a2.exit();
    await flush();
    expect(b.freed).toBe(1);
    expect(budget.reserve(b, 128 * MiB, { forRequest: true })).toBeDefined();
    expect(budget.reservedBytes).toBe(384 * MiB);
  });

  it('evicts only idle microVMs of other pools: never busy ones, never the claimant\'s own', () => {
    const { budget, start } = budgetOf(384);
    const a = new Owner('a');
    const b = new Owner('b');
    const aOld = new Owner('a', 0);
    const busy = start(a, 'busy');
    busy.busy = true;
    const own = start(b, 'own');
    const olderVersion = start(aOld, 'a-v0');
    expect(budget.reserve(b, 128 * MiB, { forRequest: true })).toBeUndefined();
    expect(busy.evicted).toBeUndefined();
    expect(own.evicted).toBeUndefined();
    // Another version of the same function counts as another pool.
    expect(olderVersion.evicted).toBeDefined();
    // The same for a's current version: only b's idle microVM can go.
    expect(budget.reserve(a, 128 * MiB, { forRequest: true })).toBeUndefined();
    expect(own.evicted).toBeDefined();
  });

  it('a microVM still starting cannot be evicted; nothing evictable leaves the request waiting', () => {
    const { budget } = budgetOf(128);
    const a = new Owner('a');
    const b = new Owner('b');
    budget.reserve(a, 128 * MiB, { forRequest: false });
    expect(budget.reserve(b, 128 * MiB, { forRequest: true })).toBeUndefined();
    expect(budget.evictions).toBe(0);
    expect(budget.reservedBytes).toBe(128 * MiB);
  });

  it('background starts never evict and leave claimed memory to the requests that claimed it', async () => {
    const { budget, start } = budgetOf(256);
    const a = new Owner('a');
    const b = new Owner('b');
    const c = new Owner('c');
    const a1 = start(a, 'a1');
    start(a, 'a2').busy = true;
    expect(budget.reserve(c, 128 * MiB, { forRequest: false })).toBeUndefined();
    expect(a1.evicted).toBeUndefined();
    expect(budget.reserve(b, 128 * MiB, { forRequest: true })).toBeUndefined();
    expect(a1.evicted).toBeDefined();
    a1.exit();
    await flush();
    // Both hear of it; the request claimed it first.
    expect([b.freed, c.freed]).toEqual([1, 1]);
    expect(budget.reserve(c, 128 * MiB, { forRequest: false })).toBeUndefined();
    expect(budget.reserve(b, 128 * MiB, { forRequest: true })).toBeDefined();
  });

  it('claims are served in order, and two claimants never block each other', async () => {
    const { budget, start } = budgetOf(256);
    const a = new Owner('a');
    const b = new Owner('b');
    const c = new Owner('c');
    const a1 = start(a, 'a1');
    const a2 = start(a, 'a2');
    a1.busy = a2.busy = true;
    expect(budget.reserve(b, 128 * MiB, { forRequest: true })).toBeUndefined();
    expect(budget.reserve(c, 128 * MiB, { forRequest: true })).toBeUndefined();
    a1.exit();
    await flush();
    expect(budget.reserve(c, 128 * MiB, { forRequest: true })).toBeUndefined();
    expect(budget.reserve(b, 128 * MiB, { forRequest: true })).toBeDefined();
    a2.exit();
    await flush();
    expect(budget.reserve(c, 128 * MiB, { forRequest: true })).toBeDefined();
    // A claimant that gave up (its queue emptied) no longer holds anyone back.
    expect(budget.reserve(a, 128 * MiB, { forRequest: true })).toBeUndefined();
    budget.withdraw(a);
  });

  it('never reserves past the budget, whatever the sequence', () => {
    const { budget } = budgetOf(1024);
    const owners = ['a', 'b', 'c'].map((n) => new Owner(n));
    const held: Holder[] = [];
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    for (let step = 0; step < 2000; step++) {
      const op = rnd(4);
      if (op <= 1) {
        const owner = owners[rnd(3)]!;
        const r = budget.reserve(owner, [64, 128, 256, 512][rnd(4)]! * MiB, { forRequest: op === 1, want: 1 + rnd(3) });
        if (r) held.push(new Holder(budget, r, `vm${step}`));
        if (!r && op === 1 && rnd(2) === 0) budget.withdraw(owner);
      } else if (op === 2 && held.length > 0) {
        const h = held.splice(rnd(held.length), 1)[0]!;
        h.exit();
      } else if (held.length > 0) {
        const h = held[rnd(held.length)]!;
        h.busy = !h.busy;
        budget.touch(h.r);
      }
      // Evicted microVMs exit at once here.
      for (const h of held.filter((x) => x.evicted)) {
        h.exit();
        held.splice(held.indexOf(h), 1);
      }
      expect(budget.reservedBytes).toBeLessThanOrEqual(budget.budgetBytes);
    }
    expect(budget.peakBytes).toBeLessThanOrEqual(budget.budgetBytes);
    expect(budget.evictions).toBeGreaterThan(0);
  });
});

const req = (n: number): InvokeRequest => ({ requestId: `r${n}`, method: 'GET', path: '/', query: '', headers: [], body: Buffer.alloc(0), sourceIp: '' });

/** Pools of several functions sharing one budget, each microVM a FakeVm. */
function platformOf(budgetMib: number, queueWaitMs = 1000) {
  const clock = new FakeClock(1_000_000);
  const budget = new MemoryBudget({ budgetBytes: budgetMib * MiB, log: silentLogger() });
  const vms = new Map<string, FakeVm[]>();
  const pool = (name: string, spec: Partial<PoolSpec> = {}) => {
    vms.set(name, []);
    return new Pool({
      spec: { functionName: name, version: 1, bundlePath: '/b', memoryMib: 128, timeoutMs: 60_000, concurrency: 1, min: 0, max: 10, standby: 0, idleMs: 60_000, env: {}, network: 'host', ...spec },
      factory: async (c) => {
        const vm = new FakeVm(c.id);
        vms.get(name)!.push(vm);
        return vm;
      },
      clock,
      log: silentLogger(),
      sink: { record: () => {} },
      initTimeoutMs: 1000,
      queueWaitMs,
      queueLength: 10,
      budget,
    });
  };
  return { clock, budget, vms, pool };
}

async function serveOnce(pool: Pool, vm: () => FakeVm, n: number) {
  const call = pool.invoke(req(n));
  await flush();
  vm().finish();
  return call;
}

describe('pools sharing a memory budget', () => {
  it("a burst on a busy function evicts another function's idle microVMs, least recently used first, and is served", async () => {
    const { budget, vms, pool, clock } = platformOf(256);
    const a = pool('a');
    const b = pool('b');
    // a gets two microVMs; a-1 serves last, so a-0 is the least recently used.
    const a0 = a.invoke(req(0));
    const a1 = a.invoke(req(1));
    await flush();
    const [va0, va1] = vms.get('a')!;
    va0!.finish();
    await a0;
    clock.advance(1000);
    va1!.finish();
    await a1;
    expect(budget.reservedBytes).toBe(256 * MiB);

    const b0 = b.invoke(req(2));
    await flush();
    expect([va0!.stopped, va1!.stopped]).toEqual([true, false]);
    const b1 = b.invoke(req(3));
    await flush();
    expect(va1!.stopped).toBe(true);
    for (const vm of vms.get('b')!) vm.finish();
    const served = await Promise.all([b0, b1]);
    expect(served.map((s) => s.result.status)).toEqual([200, 200]);
    expect(budget.evictions).toBe(2);
    expect(a.instances()).toHaveLength(0);
    expect(budget.peakBytes).toBe(256 * MiB);
  });

  it('when every microVM is busy up to the budget, a request waits and is THROTTLED; the budget is never exceeded', async () => {
    const { budget, vms, pool, clock } = platformOf(256, 500);
    const a = pool('a');
    const b = pool('b');
    const running = [a.invoke(req(0)), b.invoke(req(1))];
    await flush();
    const third = a.invoke(req(2));
    await flush();
    expect(vms.get('a')).toHaveLength(1);
    expect(a.counts().queued).toBe(1);
    clock.advance(500);
    await expect(third).rejects.toMatchObject({ code: 'THROTTLED', details: { retryAfterSeconds: 1 } });
    await expect(third).rejects.toThrow(/memory budget of 256 MiB has no room for another 128 MiB microVM/);
    expect(budget.peakBytes).toBe(256 * MiB);
    vms.get('a')![0]!.finish();
    vms.get('b')![0]!.finish();
    await Promise.all(running);
  });

  it("a queued request evicts another function's microVM as soon as it goes idle", async () => {
    const { vms, pool } = platformOf(128);
    const a = pool('a');
    const b = pool('b');
    const ra = a.invoke(req(0));
    await flush();
    const rb = b.invoke(req(1));
    await flush();
    expect(vms.get('b')).toHaveLength(0);
    vms.get('a')![0]!.finish();
    await ra;
    await flush();
    expect(vms.get('a')![0]!.stopped).toBe(true);
    expect(vms.get('b')).toHaveLength(1);
    vms.get('b')![0]!.finish();
    expect((await rb).result.status).toBe(200);
  });

  it('releases the memory of a microVM that crashed, was killed or was scaled down', async () => {
    const { budget, vms, pool } = platformOf(512);
    const a = pool('a', { min: 2 });
    a.ensureMin();
    await flush();
    expect(budget.reservedBytes).toBe(256 * MiB);
    const call = a.invoke(req(0));
    await flush();
    vms.get('a')!.find((v) => v.pending.length > 0)!.crash();
    await expect(call).rejects.toMatchObject({ code: 'FUNCTION_CRASHED' });
    await flush();
    // Replaced, to keep min: still two reserved, never more than held.
    expect(budget.size).toBe(2);
    a.updateScaling({ min: 0, max: 10, standby: 0 });
    a.scaleTo(0);
    await flush();
    expect(budget.reservedBytes).toBe(0);
  });

  it('min and standby starts take only free memory, and start when memory comes back', async () => {
    const { budget, vms, pool } = platformOf(256);
    const a = pool('a', { min: 2 });
    a.ensureMin();
    await flush();
    const b = pool('b', { min: 1, standby: 1 });
    b.ensureMin();
    await flush();
    expect(vms.get('b')).toHaveLength(0);
    expect(vms.get('a')!.some((v) => v.stopped)).toBe(false);
    a.updateScaling({ min: 0, max: 10, standby: 0 });
    a.scaleTo(0);
    await flush();
    await flush();
    expect(b.counts()).toMatchObject({ idle: 1, paused: 1 });
    expect(budget.reservedBytes).toBe(256 * MiB);
  });

  it('a function larger than the whole budget is refused at once', async () => {
    const { pool } = platformOf(256);
    const big = pool('big', { memoryMib: 512 });
    await expect(big.invoke(req(0))).rejects.toThrow(/needs 512 MiB per microVM, more than the host's memory budget of 256 MiB/);
  });
});
