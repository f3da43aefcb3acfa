// The autoscaler, in the style of Knative's KPA: collect → aggregate → decide → actuate. This file
// holds the middle two: a sliding window of observed concurrency, and a pure decide(input, now)
// that turns the window's averages into a desired number of microVMs. Only the outer tick loop
// reads the clock, so tests step a fake one and never sleep.
//
// It is the one scale-down mechanism: pools never stop a microVM because it is idle. `idle` (the
// contract's "seconds an unused microVM is kept") enters the decision twice: microVMs that served
// nothing for `idle` while the others served every request are surplus (outside panic), and a
// function with no request for `idle` scales to zero, or to `min`.
import { z } from 'zod';
import { validate } from '../core/config.js';

export const AutoscalerConfigSchema = z
  .object({
    /** Share of `concurrency` a microVM should run at: target = concurrency × utilisation. */
    targetUtilization: z.number().gt(0, { error: 'must be in (0, 1]' }).max(1, { error: 'must be in (0, 1]' }),
    stableWindowMs: z.number().int().min(6_000, { error: 'must be in [6s, 1h]' }).max(3_600_000, { error: 'must be in [6s, 1h]' }),
    panicWindowMs: z.number().int().min(1_000, { error: 'must be in [1s, stable window]' }),
    /** Panic when the panic window wants this many times the microVMs there are (2 = 200 %). */
    panicThreshold: z.number().gt(1, { error: 'must be above 1 (100 %)' }),
    /** At most this many times the ready microVMs in one decision. */
    maxScaleUpRate: z.number().gt(1, { error: 'must be above 1' }),
    /** At least ready / this many microVMs after one decision. */
    maxScaleDownRate: z.number().gt(1, { error: 'must be above 1' }),
    tickMs: z.number().int().min(100, { error: 'must be at least 100 ms' }),
  })
  .strict()
  .refine((c) => c.panicWindowMs <= c.stableWindowMs, { error: 'panic window must not exceed the stable window', path: ['panicWindowMs'] });

export type AutoscalerConfig = z.output<typeof AutoscalerConfigSchema>;

export const autoscalerDefaults: AutoscalerConfig = {
  targetUtilization: 0.7,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  panicThreshold: 2,
  maxScaleUpRate: 1000,
  maxScaleDownRate: 2,
  tickMs: 2_000,
};

export function autoscalerConfig(overlay: Partial<AutoscalerConfig> = {}): AutoscalerConfig {
  return validate(AutoscalerConfigSchema, { ...autoscalerDefaults, ...overlay }, { what: 'autoscaler config' });
}

/**
 * Observed concurrency as intervals [start, end) with the average value over each; averages over
 * the last N ms integrate their overlap with the window. One interval per tick per pool, so a
 * 60 s window holds a few dozen.
 */
export class ConcurrencyWindow {
  private readonly samples: { start: number; end: number; value: number }[] = [];
  private firstStart: number | undefined;

  constructor(private readonly spanMs: number) {}

  /** Record `value` (requests in flight or queued) as held for `durationMs` ending at `now`. */
  record(now: number, value: number, durationMs: number): void {
    if (durationMs <= 0) return;
    this.firstStart ??= now - durationMs;
    this.samples.push({ start: now - durationMs, end: now, value });
    while (this.samples.length > 0 && this.samples[0]!.end <= now - this.spanMs) this.samples.shift();
  }

  /**
   * Average over the last `windowMs`; time without samples counts as zero, so a function that
   * went quiet decays towards zero instead of keeping its last value. With less history than the
   * window, the average is over the history there is (as Knative does), so a new function's first
   * minute is not diluted by a minute it did not exist.
   */
  average(now: number, windowMs: number): number {
    if (this.firstStart === undefined) return 0;
    windowMs = Math.min(windowMs, now - this.firstStart);
    if (windowMs <= 0) return 0;
    const from = now - windowMs;
    let area = 0;
    for (const s of this.samples) {
      const overlap = Math.min(s.end, now) - Math.max(s.start, from);
      if (overlap > 0) area += s.value * overlap;
    }
    return area / windowMs;
  }
}

export interface ScaleSettings {
  /** Requests one microVM serves at once. */
  concurrency: number;
  min: number;
  max: number;
  standby: number;
  /** No request for this long scales the function to zero (or to min), and makes a microVM surplus. */
  idleMs: number;
}

export interface PanicState {
  /** When panic began or was last extended; undefined outside panic. */
  panicSince: number | undefined;
  /** Panic never scales down: the highest count decided during this panic. */
  panicFloor: number;
}

export const calm: PanicState = { panicSince: undefined, panicFloor: 0 };

export interface DecideInput {
  settings: ScaleSettings;
  /** Average concurrency over the stable and panic windows. */
  stableConcurrency: number;
  panicConcurrency: number;
  /** microVMs booted and serving now (not those still starting), as Knative counts ready pods. */
  ready: number;
  /** When a request last arrived or finished (now while any is in flight or queued); undefined when there never was one. */
  lastActivityAt: number | undefined;
  /** Ready microVMs that served no request for `idleMs` (the others served every one meanwhile). */
  unused?: number;
  state: PanicState;
}

export interface Decision {
  /** microVMs that should be running. */
  desired: number;
  /** Paused pre-restored microVMs to keep beside them. */
  standby: number;
  state: PanicState;
  /** Set when this decision entered or left panic mode (to be logged). */
  panicChange: 'enter' | 'exit' | undefined;
  reason: string;
}

/** The KPA decision: pure, so `now` is an argument and the previous panic state comes in. */
export function decide(input: DecideInput, now: number, config: AutoscalerConfig = autoscalerDefaults): Decision {
  const { settings, stableConcurrency, panicConcurrency, lastActivityAt } = input;
  const clamp = (n: number) => Math.min(settings.max, Math.max(settings.min, n));
  const standby = Math.min(settings.standby, settings.max);
  const idle = lastActivityAt === undefined || now - lastActivityAt >= settings.idleMs;
  if (idle) {
    const desired = clamp(0);
    const panicChange = input.state.panicSince !== undefined ? 'exit' : undefined;
    return { desired, standby, state: calm, panicChange, reason: `no traffic for ${Math.round(settings.idleMs / 1000)} s: scale to ${desired}` };
  }

  const target = settings.concurrency * config.targetUtilization;
  const ready = Math.max(1, input.ready);
  const maxUp = Math.ceil(config.maxScaleUpRate * ready);
  const maxDown = Math.floor(ready / config.maxScaleDownRate);
  const bound = (n: number) => Math.min(maxUp, Math.max(maxDown, n));
  // Some traffic, however little, keeps one microVM: scaling to zero is the idle rule's job.
  const stableWant = bound(Math.max(1, Math.ceil(stableConcurrency / target)));
  const panicWant = bound(Math.max(1, Math.ceil(panicConcurrency / target)));

  const overThreshold = panicWant / ready >= config.panicThreshold;
  let { panicSince, panicFloor } = input.state;
  let panicChange: Decision['panicChange'];
  if (overThreshold) {
    if (panicSince === undefined) panicChange = 'enter';
    panicSince = now;
  } else if (panicSince !== undefined && now - panicSince >= config.stableWindowMs) {
    panicSince = undefined;
    panicFloor = 0;
    panicChange = 'exit';
  }

  let desired: number;
  let reason: string;
  if (panicSince !== undefined) {
    desired = clamp(Math.max(panicWant, panicFloor, input.ready));
    panicFloor = desired;
    reason = `panic: ${panicConcurrency.toFixed(1)} concurrent over ${config.panicWindowMs / 1000} s, target ${target.toFixed(1)} per microVM`;
  } else {
    panicFloor = 0;
    reason = `stable: ${stableConcurrency.toFixed(1)} concurrent over ${config.stableWindowMs / 1000} s, target ${target.toFixed(1)} per microVM`;
    let want = stableWant;
    // Unused for `idle`: the window may still remember their load, but they are not needed.
    const unused = input.unused ?? 0;
    if (unused > 0 && input.ready - unused < want) {
      want = Math.max(1, input.ready - unused);
      reason = `${unused} microVM${unused > 1 ? 's' : ''} unused for ${Math.round(settings.idleMs / 1000)} s: scale to ${want}`;
    }
    desired = clamp(want);
  }
  return { desired, standby, state: { panicSince, panicFloor }, panicChange, reason };
}
