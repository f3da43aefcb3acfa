// The autoscaler's loop over real pools with microVM doubles and a fake clock: observed load
// scales a pool up ahead of requests, panic is logged, and idle pools go to zero.
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { FakeClock } from '../../core/clock.js';
import { Pool } from '../../microvm/pool.js';
import { ScaleLoop } from '../../gateway/scaling.js';
import type { InvokeRequest } from '../../microvm/types.js';
import { FakeVm } from '../helpers/fake-vm.js';

const req = (n: number): InvokeRequest => ({ requestId: `r${n}`, method: 'GET', path: '/', query: '', headers: [], body: Buffer.alloc(0), sourceIp: '' });
const flush = () => new Promise((r) => setImmediate(r));

function setup() {
  const clock = new FakeClock(1_700_000_000_000);
  const vms: FakeVm[] = [];
  const lines: { msg: string; level: number; err?: { message: string }; fn?: string }[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  let gate: Promise<void> = Promise.resolve();
  const pool = new Pool({
    spec: { functionName: 'f', version: 1, bundlePath: '/b', memoryMib: 128, timeoutMs: 60_000, concurrency: 1, min: 0, max: 10, standby: 0, idleMs: 30_000, env: {}, network: 'host' },
    factory: async (c) => {
      await gate;
      const vm = new FakeVm(c.id);
      vms.push(vm);
      return vm;
    },
    clock,
    log,
    sink: { record: () => {} },
    initTimeoutMs: 1000,
    queueWaitMs: 600_000,
    queueLength: 100,
  });
  const loop = new ScaleLoop(() => [pool], clock, log);
  return { clock, vms, pool, loop, lines, holdBoots: () => { let open!: () => void; gate = new Promise((r) => (open = r)); return open; } };
}

describe('ScaleLoop', () => {
  it('scales up under load (panicking on a spike) and to zero after idle', async () => {
    const { clock, vms, pool, loop, lines, holdBoots } = setup();
    // Six long requests at once start six microVMs (concurrency 1), which take a while to boot.
    const release = holdBoots();
    const calls = [0, 1, 2, 3, 4, 5].map((n) => pool.invoke(req(n)));
    await flush();
    clock.advance(2000);
    loop.tick();
    // None ready yet and 6 concurrent at a target of 0.7 each: the panic window wants 9.
    expect(lines.some((l) => l.msg.startsWith('autoscaler: entering panic mode'))).toBe(true);
    release();
    await flush();
    expect(vms).toHaveLength(9);
    for (const vm of vms) while (vm.pending.length) vm.finish();
    await Promise.all(calls);
    // No traffic: panic holds the count for a stable window, then decay, then zero after idle.
    for (let t = 0; t < 200; t += 2) {
      clock.advance(2000);
      loop.tick();
    }
    expect(lines.some((l) => l.msg === 'autoscaler: leaving panic mode')).toBe(true);
    expect(pool.instances()).toHaveLength(0);
  });

  it('stops a microVM unused for `idle` while another keeps serving: the autoscaler, not the pool', async () => {
    const { clock, vms, pool, loop } = setup();
    const calls = [0, 1].map((n) => pool.invoke(req(n)));
    await flush();
    for (const vm of vms) vm.finish();
    await Promise.all(calls);
    // One request at a time for 40 s: the most recently used microVM serves them all.
    for (let t = 0; t < 20; t++) {
      const call = pool.invoke(req(100 + t));
      await flush();
      const busy = vms.find((v) => v.pending.length > 0)!;
      clock.advance(1000);
      busy.finish();
      await call;
      clock.advance(1000);
      loop.tick();
    }
    expect(vms.filter((v) => !v.stopped)).toHaveLength(1);
    expect(pool.instances()).toHaveLength(1);
  });

  it('keeps ticking after a tick throws, and logs the error', async () => {
    const { clock, pool, lines } = setup();
    const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    let calls = 0;
    const loop = new ScaleLoop(
      () => {
        if (++calls === 1) throw new Error('pools unreadable');
        return [pool];
      },
      clock,
      log,
    );
    loop.start();
    expect(() => clock.advance(2000)).not.toThrow();
    const failed = lines.find((l) => l.msg.startsWith('autoscaler: tick failed'));
    expect(failed?.err?.message).toBe('pools unreadable');
    clock.advance(2000);
    expect(calls).toBe(2);
    clock.advance(2000);
    expect(calls).toBe(3);
    loop.stop();
    clock.advance(10_000);
    expect(calls).toBe(3);
  });

  it('a pool that throws is logged and skipped; the others are still scaled', async () => {
    const { clock, pool, lines } = setup();
    const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const broken = {
      functionName: 'broken',
      version: 3,
      observe: () => {
        throw new Error('observe failed');
      },
    } as unknown as Pool;
    const loop = new ScaleLoop(() => [broken, pool], clock, log);
    clock.advance(2000);
    const decisions = loop.tick();
    expect(decisions.has(pool)).toBe(true);
    expect(decisions.has(broken)).toBe(false);
    const failed = lines.find((l) => l.msg === 'autoscaler: scaling this function failed');
    expect(failed).toMatchObject({ fn: 'broken', err: { message: 'observe failed' } });
  });
});
