// What every scenario shares: a Recorder for its responses, the timeline sampled beside it, the
// /metrics counters read before and after (microVMs started, evictions), progress for the
// display, and the report at the end.
import type { LoadReport, Scenario, TimelinePoint } from '../report/schema.js';
import { buildReport, type ReportParts } from '../report/build.js';
import { Recorder } from '../recorder.js';
import { Timeline } from '../timeline.js';
import { metricSum, microvmState, scrapeMetrics, type PlatformTarget } from '../platform-api.js';

export interface Progress {
  /** 0 to 1. */
  fraction: number;
  /** What runs now, e.g. "round 1/2: hello". */
  phase: string;
  /** The latest timeline point, if one was taken. */
  point?: TimelinePoint;
}

export interface ScenarioEnv {
  platform: PlatformTarget;
  onProgress?: (p: Progress) => void;
  /** Timeline interval, ms (default 250). */
  intervalMs?: number;
}

type MetricSum = ReturnType<typeof metricSum>;

interface Counters {
  starts: MetricSum;
  evictions: MetricSum;
}

async function readCounters(platform: PlatformTarget, functions: ReadonlySet<string>): Promise<Counters | undefined> {
  try {
    const text = await scrapeMetrics(platform);
    return { starts: metricSum(text, 'fnctl_microvm_starts_total', functions), evictions: metricSum(text, 'fnctl_evictions_total', functions) };
  } catch {
    return undefined;
  }
}

/**
 * This run's share of a counter: AFTER − BEFORE; null when either read failed (a missing BEFORE
 * would make AFTER, the platform's lifetime total, pass for this run's), or the platform does not
 * export it. A counter whose function had no sample yet before the run counts from 0.
 */
export function counterDelta(before: MetricSum | undefined, after: MetricSum | undefined): number | null {
  if (!after || before === undefined) return null;
  return Math.max(0, after.sum - (before?.sum ?? 0));
}

export type CloseParts = Pick<ReportParts, 'options' | 'ratios' | 'counters'>;

export class Session {
  readonly recorder = new Recorder();
  readonly startedAt = new Date();
  readonly notes: string[] = [];
  /** Connections the load generator holds open now (for the timeline). */
  connections = 0;
  private phase = '';
  private fraction: () => number;
  private readonly timeline: Timeline;
  private lastPoint: TimelinePoint | undefined;

  private constructor(
    private readonly env: ScenarioEnv,
    private readonly scenario: Scenario,
    private readonly functions: ReadonlySet<string>,
    private readonly before: Counters | undefined,
    plannedMs: number,
  ) {
    this.timeline = new Timeline({
      recorder: this.recorder,
      connections: () => this.connections,
      readState: () => microvmState(env.platform, functions),
      intervalMs: env.intervalMs ?? 250,
      onPoint: (point) => {
        this.lastPoint = point;
        this.report();
      },
    });
    this.fraction = () => Math.min(1, this.timeline.elapsedMs() / plannedMs);
  }

  /** Opens a session on FUNCTIONS (the ones whose microVMs the timeline counts); PLANNED_MS paces the progress bar. */
  private static async open(env: ScenarioEnv, scenario: Scenario, functions: string[], plannedMs: number): Promise<Session> {
    const set = new Set(functions);
    return new Session(env, scenario, set, await readCounters(env.platform, set), plannedMs);
  }

  /**
   * Runs BODY in a session on FUNCTIONS and returns its report; BODY returns the report's options,
   * ratios and counters. The timeline stops whether BODY succeeds or fails.
   */
  static async run(env: ScenarioEnv, scenario: Scenario, functions: string[], plannedMs: number, body: (session: Session) => Promise<CloseParts>): Promise<LoadReport> {
    const session = await Session.open(env, scenario, functions, plannedMs);
    let parts: CloseParts;
    try {
      parts = await body(session);
    } catch (err) {
      await session.timeline.stop();
      throw err;
    }
    return session.close(parts);
  }

  /** What runs now; FRACTION overrides the time-based progress (scenarios paced by samples). */
  setPhase(phase: string, fraction?: number): void {
    this.phase = phase;
    if (fraction !== undefined) this.fraction = () => fraction;
    this.report();
  }

  private report(): void {
    this.env.onProgress?.({ fraction: this.fraction(), phase: this.phase, ...(this.lastPoint ? { point: this.lastPoint } : {}) });
  }

  elapsedMs(): number {
    return this.timeline.elapsedMs();
  }

  /** Stops the timeline, reads the counters again and builds the report. */
  private async close(parts: CloseParts): Promise<LoadReport> {
    const durationMs = this.timeline.elapsedMs();
    const timeline = await this.timeline.stop();
    const after = await readCounters(this.env.platform, this.functions);
    const delta = (k: keyof Counters) => counterDelta(this.before?.[k], after?.[k]);
    let microvmsStarted = delta('starts');
    if (!after?.starts?.samples) {
      // A platform that does not count starts (or not yet for these functions): every response
      // that started cold or restored started one microVM on demand.
      microvmsStarted = this.recorder.startedOnDemand();
      this.notes.push('microVMs started: counted from cold and restore responses (fnctl_microvm_starts_total has no samples for these functions)');
    }
    if (after && !this.before) {
      // The counts after the run alone are the platform's lifetime totals, not this run's.
      this.notes.push(`GET /metrics could not be read before the run: ${after.starts?.samples ? 'microVMs started and evictions are' : 'evictions are'} not counted`);
    }
    if (!after) this.notes.push('GET /metrics could not be read: evictions are not counted');
    else if (after.evictions === null) this.notes.push('the platform exports no fnctl_evictions_total (no memory budget): evictions are not counted');
    this.setPhase('done', 1);
    return buildReport({
      scenario: this.scenario,
      startedAt: this.startedAt,
      durationMs,
      url: this.env.platform.url,
      recorder: this.recorder,
      timeline,
      notes: this.notes,
      ...parts,
      counters: { microvmsStarted, evictions: delta('evictions'), ...parts.counters },
    });
  }
}
