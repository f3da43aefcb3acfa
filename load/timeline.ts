// The timeline of a scenario: every interval (250–500 ms), the responses of that interval (rps,
// p50, p99, errors), the connections held open, and the target functions' microVMs by state and
// queued requests as the control API reports them. Clock and timers are injectable for tests.
import type { TimelinePoint } from './report/schema.js';
import type { Recorder } from './recorder.js';
import type { MicrovmState } from './platform-api.js';

export interface TimelineOptions {
  recorder: Recorder;
  /** Connections the load generator holds open now. */
  connections: () => number;
  /** The microVMs' state now; null, or a rejection, when it cannot be read. */
  readState?: () => Promise<MicrovmState | null>;
  intervalMs?: number;
  /** Called with each point as it is taken (progress display). */
  onPoint?: (point: TimelinePoint) => void;
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

export class Timeline {
  readonly points: TimelinePoint[] = [];
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly t0: number;
  private last: number;
  private timer: unknown;
  private stopped = false;
  private pending: Promise<void> = Promise.resolve();
  /** The latest state read, so a point is never held up by a slow control API. */
  private state: MicrovmState | null = null;
  private reading = false;

  constructor(private readonly options: TimelineOptions) {
    this.intervalMs = options.intervalMs ?? 250;
    this.now = options.now ?? (() => performance.now());
    this.t0 = this.last = this.now();
    this.schedule(1);
    this.read();
  }

  /** Milliseconds since the timeline began. */
  elapsedMs(): number {
    return this.now() - this.t0;
  }

  private schedule(n: number): void {
    const set = this.options.setTimer ?? ((fn: () => void, ms: number) => setTimeout(fn, ms));
    const due = this.t0 + n * this.intervalMs;
    this.timer = set(() => {
      this.take();
      if (!this.stopped) this.schedule(Math.max(n + 1, Math.floor((this.now() - this.t0) / this.intervalMs) + 1));
    }, Math.max(0, due - this.now()));
  }

  /** Start reading the microVM state for the next point, unless a read is still under way. */
  private read(): void {
    const readState = this.options.readState;
    if (!readState || this.reading) return;
    this.reading = true;
    this.pending = readState()
      .then((s) => (this.state = s))
      .catch(() => (this.state = null))
      .then(() => {
        this.reading = false;
      });
  }

  /** A point for the interval ending now. */
  private take(): void {
    const t = this.now();
    const seconds = (t - this.last) / 1000;
    this.last = t;
    const i = this.options.recorder.takeInterval();
    const point: TimelinePoint = {
      tMs: Math.round(t - this.t0),
      connections: this.options.connections(),
      rps: seconds > 0 ? i.responses / seconds : 0,
      p50Ms: i.p50Ms,
      p99Ms: i.p99Ms,
      errors: i.errors,
      microvms: this.state ? { ...this.state.microvms } : null,
      queued: this.state ? this.state.queued : null,
    };
    this.points.push(point);
    this.options.onPoint?.(point);
    this.read();
  }

  /** Take a last point for the interval under way, stop, and return every point. */
  async stop(): Promise<TimelinePoint[]> {
    if (this.stopped) return this.points;
    this.stopped = true;
    (this.options.clearTimer ?? ((h: unknown) => clearTimeout(h as NodeJS.Timeout)))(this.timer);
    await this.pending;
    if (this.now() - this.last >= this.intervalMs / 4) {
      this.read();
      await this.pending;
      this.take();
    }
    await this.pending;
    return this.points;
  }
}
