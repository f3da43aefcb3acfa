// Platform metrics in Prometheus text format (GET /metrics). The invoke hot path takes its label
// children from a cache (invocationSeries), so per request it only increments numbers.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The two series every successful invocation updates. */
export interface InvocationSeries {
  ok: { inc(): void };
  duration: { observe(seconds: number): void };
}

/** What the scrape-time gauges read. */
export interface MetricsSource {
  memory(): { budgetBytes: number; reservedBytes: number };
  /** microVMs by function, then by state (starting, idle, busy, paused). */
  microvms(): Iterable<[string, Record<string, number>]>;
}

export class Metrics {
  readonly registry = new Registry();

  readonly invocations = new Counter({
    name: 'fnctl_invocations_total',
    help: 'Invocations by function, start kind and outcome code (ok or an error code)',
    labelNames: ['function', 'start', 'code'] as const,
    registers: [this.registry],
  });

  readonly duration = new Histogram({
    name: 'fnctl_invocation_duration_seconds',
    help: 'Gateway-side invocation latency by function and start kind',
    labelNames: ['function', 'start'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly starts = new Counter({
    name: 'fnctl_microvm_starts_total',
    help: 'microVMs started, by function and how (cold, restore)',
    labelNames: ['function', 'start'] as const,
    registers: [this.registry],
  });

  readonly microvms = new Gauge({
    name: 'fnctl_microvms',
    help: 'microVMs by function and state',
    labelNames: ['function', 'state'] as const,
    registers: [this.registry],
    collect: () => {
      const counts = this.source?.microvms();
      if (!counts) return;
      this.microvms.reset();
      for (const [fn, byState] of counts) {
        for (const [state, n] of Object.entries(byState)) this.microvms.labels(fn, state).set(n);
      }
    },
  });

  readonly throttled = new Counter({
    name: 'fnctl_throttled_total',
    help: 'Requests answered 429 THROTTLED, by function',
    labelNames: ['function'] as const,
    registers: [this.registry],
  });

  readonly evictions = new Counter({
    name: 'fnctl_evictions_total',
    help: 'Idle microVMs evicted to make room in the host memory budget, by the function evicted',
    labelNames: ['function'] as const,
    registers: [this.registry],
  });

  private source: MetricsSource | undefined;

  readonly memoryBudget = new Gauge({
    name: 'fnctl_memory_budget_bytes',
    help: 'The host memory budget: what the memory limits of all running microVMs may add up to',
    registers: [this.registry],
    collect: () => {
      const m = this.source?.memory();
      if (m) this.memoryBudget.set(m.budgetBytes);
    },
  });

  readonly memoryReserved = new Gauge({
    name: 'fnctl_memory_reserved_bytes',
    help: 'Memory limits of the running microVMs (starting, idle, busy, paused), reserved in the budget',
    registers: [this.registry],
    collect: () => {
      const m = this.source?.memory();
      if (m) this.memoryReserved.set(m.reservedBytes);
    },
  });

  /** Where the gauges read the platform's state, at scrape time (nothing is updated per request). */
  watch(source: MetricsSource): void {
    this.source = source;
  }

  // labels() hashes its label values on every call; the invoke path asks for the same few
  // children over and over, so they are kept per function and start kind.
  private readonly series = new Map<string, Map<string, InvocationSeries>>();

  /** The `ok` counter and duration histogram of FN started as START, created on first use. */
  invocationSeries(fn: string, start: string): InvocationSeries {
    let byStart = this.series.get(fn);
    if (!byStart) {
      byStart = new Map();
      this.series.set(fn, byStart);
    }
    let s = byStart.get(start);
    if (!s) {
      s = { ok: this.invocations.labels(fn, start, 'ok'), duration: this.duration.labels(fn, start) };
      byStart.set(start, s);
    }
    return s;
  }

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'fnctl_' });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
