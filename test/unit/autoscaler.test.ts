// The autoscaler's decisions with a fake clock: time is stepped ("now + 5 min + 2 s"), never slept.
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../core/clock.js';
import { ConcurrencyWindow, autoscalerConfig, autoscalerDefaults, calm, decide, type Decision, type PanicState, type ScaleSettings } from '../../gateway/autoscaler.js';

const config = autoscalerDefaults;
const settings: ScaleSettings = { concurrency: 10, min: 0, max: 20, standby: 0, idleMs: 60_000 };

/** A function under load: observed concurrency is fed in every second, decisions every tick. */
class Sim {
  readonly clock = new FakeClock(1_700_000_000_000);
  readonly window = new ConcurrencyWindow(config.stableWindowMs);
  state: PanicState = calm;
  ready = 0;
  lastActivityAt: number | undefined;
  decisions: Decision[] = [];

  constructor(readonly s: ScaleSettings = settings) {}

  /** Hold `concurrency` for `seconds`, deciding every tick; the ready count follows the decision. */
  run(concurrency: number, seconds: number): Decision {
    let last: Decision | undefined;
    for (let i = 0; i < seconds; i++) {
      this.clock.advance(1000);
      const now = this.clock.now();
      this.window.record(now, concurrency, 1000);
      if (concurrency > 0) this.lastActivityAt = now;
      if (i % (config.tickMs / 1000) === 0 || i === seconds - 1) {
        last = decide(
          {
            settings: this.s,
            stableConcurrency: this.window.average(now, config.stableWindowMs),
            panicConcurrency: this.window.average(now, config.panicWindowMs),
            ready: this.ready,
            lastActivityAt: this.lastActivityAt,
            state: this.state,
          },
          now,
          config,
        );
        this.state = last.state;
        this.ready = last.desired;
        this.decisions.push(last);
      }
    }
    return last!;
  }
}

describe('decide', () => {
  it('steady load settles at concurrency / (target concurrency × 0.7)', () => {
    const sim = new Sim();
    // 35 concurrent requests, target 7 per microVM → 5 microVMs.
    const d = sim.run(35, 120);
    expect(d.desired).toBe(5);
    expect(sim.state.panicSince).toBeUndefined();
    expect(d.reason).toMatch(/^stable/);
  });

  it('a spike enters panic at once, never scales down in panic, and leaves after a calm stable window', () => {
    const sim = new Sim();
    sim.run(7, 90); // one microVM
    expect(sim.ready).toBe(1);
    const spike = sim.run(70, 4); // panic window sees 10 microVMs' worth
    expect(sim.decisions.some((d) => d.panicChange === 'enter')).toBe(true);
    expect(spike.reason).toMatch(/^panic/);
    expect(spike.desired).toBeGreaterThanOrEqual(4);
    const peak = sim.run(70, 10).desired;
    expect(peak).toBe(10);
    // Load drops: still in panic, so no scale-down, for a whole stable window after the last spike.
    const during = sim.run(7, 30);
    expect(during.desired).toBe(peak);
    expect(sim.state.panicSince).toBeDefined();
    sim.run(7, 40);
    expect(sim.decisions.some((d) => d.panicChange === 'exit')).toBe(true);
    expect(sim.state.panicSince).toBeUndefined();
  });

  it('decays gradually, bounded by the scale-down rate', () => {
    const sim = new Sim();
    sim.run(140, 120); // 20 microVMs (max)
    expect(sim.ready).toBe(20);
    const before = sim.ready;
    sim.run(0, 2);
    // Half at most per decision (maxScaleDownRate 2).
    expect(sim.ready).toBeGreaterThanOrEqual(Math.floor(before / 2));
    for (let i = 1; i < sim.decisions.length; i++) {
      const prev = sim.decisions[i - 1]!.desired;
      expect(sim.decisions[i]!.desired).toBeGreaterThanOrEqual(Math.floor(prev / 2));
    }
  });

  it('bounds scale-up by the scale-up rate', () => {
    const sim = new Sim({ ...settings, max: 1000, concurrency: 1 });
    const strict = autoscalerConfig({ maxScaleUpRate: 2 });
    const d = decide({ settings: sim.s, stableConcurrency: 500, panicConcurrency: 500, ready: 3, lastActivityAt: 0, state: calm }, 1000, strict);
    expect(d.desired).toBe(6);
  });

  it('scales to zero after `idle` with no traffic, to min when min is set', () => {
    const sim = new Sim();
    sim.run(14, 90);
    expect(sim.ready).toBe(2);
    sim.run(0, 59);
    expect(sim.ready).toBeGreaterThan(0);
    sim.run(0, 62);
    expect(sim.ready).toBe(0);
    expect(sim.decisions.at(-1)!.reason).toMatch(/no traffic/);

    const withMin = new Sim({ ...settings, min: 2 });
    withMin.run(0, 200);
    expect(withMin.ready).toBe(2);
  });

  it('treats microVMs unused for `idle` as surplus (what reaping was), but not in panic', () => {
    const input = { settings: { ...settings, concurrency: 1, idleMs: 10_000 }, stableConcurrency: 3.5, panicConcurrency: 1, ready: 5, lastActivityAt: 1000, state: calm };
    // The stable window still remembers 3.5 concurrent (5 microVMs), but 3 of 5 served nothing for 10 s.
    const d = decide({ ...input, unused: 3 }, 1000, config);
    expect(d.desired).toBe(2);
    expect(d.reason).toMatch(/3 microVMs unused for 10 s: scale to 2/);
    expect(decide({ ...input, unused: 0 }, 1000, config).desired).toBe(5);
    // Never below min.
    expect(decide({ ...input, settings: { ...input.settings, min: 4 }, unused: 3 }, 1000, config).desired).toBe(4);
    // In panic nothing scales down.
    const panic = decide({ ...input, panicConcurrency: 20, unused: 3 }, 1000, config);
    expect(panic.reason).toMatch(/^panic/);
    expect(panic.desired).toBeGreaterThanOrEqual(5);
  });

  it('never goes above max or below min', () => {
    const sim = new Sim({ ...settings, min: 3, max: 4 });
    expect(sim.run(1000, 30).desired).toBe(4);
    expect(sim.run(1, 200).desired).toBe(3);
  });

  it('keeps `standby` paused microVMs beside the active ones, even at zero', () => {
    const sim = new Sim({ ...settings, standby: 2 });
    expect(sim.run(0, 5).standby).toBe(2);
    expect(sim.run(35, 60).standby).toBe(2);
  });

  it('validates its config with messages that name the rule', () => {
    expect(() => autoscalerConfig({ stableWindowMs: 2000 })).toThrow(/stableWindowMs = 2000, must be in \[6s, 1h\]/);
    expect(() => autoscalerConfig({ panicWindowMs: 120_000 })).toThrow(/panic window must not exceed the stable window/);
  });
});

describe('ConcurrencyWindow', () => {
  it('averages time-weighted samples, with silent seconds counting as zero', () => {
    const w = new ConcurrencyWindow(60_000);
    const t0 = 1_000_000;
    w.record(t0 + 500, 10, 500); // 10 held over [t0, t0 + 0.5 s)
    w.record(t0 + 1000, 0, 500); // then 0 for half a second
    expect(w.average(t0 + 1000, 1000)).toBe(5);
    // Less history than the window: averaged over the history there is.
    expect(w.average(t0 + 6000, 6000)).toBeCloseTo(5 / 6);
    expect(w.average(t0 + 6000, 60_000)).toBeCloseTo(5 / 6);
    expect(w.average(t0 + 500, 500)).toBe(10);
    expect(w.average(t0 + 120_000, 60_000)).toBe(0);
  });
});
