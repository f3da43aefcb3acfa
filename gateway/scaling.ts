// The autoscaler's outer loop: every tick, collect each pool's observed concurrency, aggregate it
// in that pool's windows, decide, and actuate. The only part that reads the clock; decide() is
// pure. Entering and leaving panic, and every change of the desired count, are logged.
import type { Clock, Timer } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import type { Pool } from '../microvm/pool.js';
import { ConcurrencyWindow, autoscalerDefaults, calm, decide, type AutoscalerConfig, type Decision, type PanicState } from './autoscaler.js';

interface Scaled {
  window: ConcurrencyWindow;
  state: PanicState;
  last: Decision | undefined;
}

export class ScaleLoop {
  private readonly scaled = new WeakMap<Pool, Scaled>();
  private timer: Timer | undefined;
  private running = false;

  constructor(
    private readonly pools: () => Iterable<Pool>,
    private readonly clock: Clock,
    private readonly log: Logger,
    readonly config: AutoscalerConfig = autoscalerDefaults,
  ) {}

  /**
   * Tick every `tickMs`. A tick that throws is logged and the next one still comes: this loop is
   * the only scale-down, recycling and standby top-up, so it must not stop for good.
   */
  start(): void {
    this.running = true;
    const loop = () => {
      try {
        this.tick();
      } catch (err) {
        this.log.error({ err }, 'autoscaler: tick failed; trying again at the next one');
      } finally {
        if (this.running) this.timer = this.clock.setTimeout(loop, this.config.tickMs);
      }
    };
    this.timer = this.clock.setTimeout(loop, this.config.tickMs);
  }

  stop(): void {
    this.running = false;
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** One decision per pool; returns them for tests and listings. A pool that throws is logged and skipped. */
  tick(): Map<Pool, Decision> {
    const now = this.clock.now();
    const out = new Map<Pool, Decision>();
    for (const pool of this.pools()) {
      try {
        out.set(pool, this.scale(pool, now));
      } catch (err) {
        this.log.error({ fn: pool.functionName, version: pool.version, err }, 'autoscaler: scaling this function failed');
      }
    }
    return out;
  }

  private scale(pool: Pool, now: number): Decision {
    let s = this.scaled.get(pool);
    if (!s) {
      s = { window: new ConcurrencyWindow(this.config.stableWindowMs), state: calm, last: undefined };
      this.scaled.set(pool, s);
    }
    const observed = pool.observe();
    if (observed.durationMs > 0) s.window.record(now, observed.concurrency, observed.durationMs);
    const { spec } = pool;
    const decision = decide(
      {
        settings: { concurrency: spec.concurrency, min: spec.min, max: spec.max, standby: spec.standby, idleMs: spec.idleMs },
        stableConcurrency: s.window.average(now, this.config.stableWindowMs),
        panicConcurrency: s.window.average(now, this.config.panicWindowMs),
        ready: observed.ready,
        unused: observed.unused,
        lastActivityAt: observed.lastActivityAt,
        state: s.state,
      },
      now,
      this.config,
    );
    const fields = { fn: spec.functionName, version: spec.version, desired: decision.desired, ready: observed.ready };
    if (decision.panicChange === 'enter') this.log.info(fields, `autoscaler: entering panic mode: ${decision.reason}`);
    if (decision.panicChange === 'exit') this.log.info(fields, 'autoscaler: leaving panic mode');
    if (decision.desired !== s.last?.desired) this.log.debug(fields, `autoscaler: ${decision.reason}`);
    s.state = decision.state;
    s.last = decision;
    pool.scaleTo(decision.desired);
    return decision;
  }
}
