// Where every response of a scenario goes: into its class (one target and one way of starting,
// never mixed), and into the current timeline interval.
import type { ClassStats, StartKind } from './report/schema.js';
import { Samples, histogram, percentiles } from './stats.js';

/** One class's responses: a target (function or baseline) and how they started. */
export class ClassAccumulator {
  requests = 0;
  ok = 0;
  readonly latency = new Samples();
  readonly errors: Record<string, number> = {};
  readonly init = new Samples();
  readonly restore = new Samples();

  constructor(
    readonly target: string,
    readonly start: StartKind,
    private readonly interval: IntervalAccumulator,
  ) {}

  /** A 2xx response that took MS. */
  success(ms: number): void {
    this.requests++;
    this.ok++;
    this.latency.add(ms);
    this.interval.latency.add(ms);
  }

  /** A non-2xx response or a transport failure, by its error code. */
  failure(code: string): void {
    this.requests++;
    this.errors[code] = (this.errors[code] ?? 0) + 1;
    this.interval.errors++;
  }

  /** The init or restore phase of a response, from its server-timing header. */
  phases(phases: Record<string, number>): void {
    if (phases.init !== undefined) this.init.add(phases.init);
    if (phases.restore !== undefined) this.restore.add(phases.restore);
  }

  stats(loadedMs: number): ClassStats {
    const sorted = this.latency.sorted();
    return {
      target: this.target,
      start: this.start,
      requests: this.requests,
      ok: this.ok,
      rps: loadedMs > 0 ? this.requests / (loadedMs / 1000) : 0,
      latencyMs: percentiles(sorted),
      errors: { ...this.errors },
      startPhaseMs: { init: this.init.summary(), restore: this.restore.summary() },
      histogram: histogram(sorted),
    };
  }
}

/** The responses since the last timeline point, whatever their class. */
class IntervalAccumulator {
  readonly latency = new Samples();
  errors = 0;
}

export interface IntervalStats {
  responses: number;
  errors: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

export class Recorder {
  private readonly classes = new Map<string, Map<StartKind, ClassAccumulator>>();
  private readonly loaded = new Map<string, number>();
  private readonly interval = new IntervalAccumulator();

  /** The class of TARGET's responses that started as START, created on first use. */
  classOf(target: string, start: StartKind): ClassAccumulator {
    let byStart = this.classes.get(target);
    if (!byStart) this.classes.set(target, (byStart = new Map()));
    let c = byStart.get(start);
    if (!c) byStart.set(start, (c = new ClassAccumulator(target, start, this.interval)));
    return c;
  }

  /** TARGET was under load for another MS (its classes' rps is per this time). */
  addLoadedTime(target: string, ms: number): void {
    this.loaded.set(target, (this.loaded.get(target) ?? 0) + ms);
  }

  /** The responses since the previous call, for a timeline point; starts the next interval. */
  takeInterval(): IntervalStats {
    const { latency } = this.interval;
    const summary = latency.summary();
    const out = { responses: latency.size + this.interval.errors, errors: this.interval.errors, p50Ms: summary?.p50 ?? null, p99Ms: summary?.p99 ?? null };
    latency.clear();
    this.interval.errors = 0;
    return out;
  }

  /** Every class with responses: targets in the order first seen, then baseline, warm, standby, restore, cold, none. */
  stats(): ClassStats[] {
    const order: StartKind[] = ['baseline', 'warm', 'standby', 'restore', 'cold', 'none'];
    const out: ClassStats[] = [];
    for (const [target, byStart] of this.classes) {
      for (const start of order) {
        const c = byStart.get(start);
        if (c && c.requests > 0) out.push(c.stats(this.loaded.get(target) ?? 0));
      }
    }
    return out;
  }

  /** Responses that started a microVM on demand (cold or restore). */
  startedOnDemand(): number {
    let n = 0;
    for (const byStart of this.classes.values()) n += (byStart.get('cold')?.requests ?? 0) + (byStart.get('restore')?.requests ?? 0);
    return n;
  }

  /** Responses of functions (not baselines) that did not start warm / all that started at all; null when none did. */
  coldStartRate(): number | null {
    let started = 0;
    let notWarm = 0;
    for (const byStart of this.classes.values()) {
      for (const [start, c] of byStart) {
        if (start === 'baseline' || start === 'none') continue;
        started += c.requests;
        if (start !== 'warm') notWarm += c.requests;
      }
    }
    return started === 0 ? null : notWarm / started;
  }
}
