// Platform metrics in Prometheus text format (GET /metrics), with prom-client. The two series
// every successful invocation updates are plain numbers instead (invocationSeries): prom-client's
// inc() and observe() hash their label values on every call, ~0.7 µs per invocation together.
// The `ok` counts are added to the prom-client counter when it is read; the duration histogram is
// a metric of its own that the registry reads as it reads prom-client's.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** The two series every successful invocation updates. */
export interface InvocationSeries {
  ok: { inc(): void };
  duration: { observe(seconds: number): void };
}

/** One label set of a SeriesHistogram: counts per bucket (not cumulative), the last one +Inf. */
class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Record<string, string>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

interface ExportedValue {
  value: number;
  labels: Record<string, string | number>;
  metricName: string;
}

/**
 * A histogram in prom-client's exposition, as prom-client's Histogram writes it (tested), whose
 * series are kept by the caller and observed with a bucket search and three additions.
 */
export class SeriesHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly all = new Map<string, HistogramSeries>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {}

  /** The series of these label values, created on first use: keep it, and observe it directly. */
  series(labels: Record<string, string>): HistogramSeries {
    const key = JSON.stringify(labels);
    let s = this.all.get(key);
    if (!s) this.all.set(key, (s = new HistogramSeries(labels, this.buckets)));
    return s;
  }

  /** What the registry reads: cumulative buckets, +Inf, sum and count of every series observed since the last reset. */
  async get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: ExportedValue[] }> {
    const values: ExportedValue[] = [];
    for (const s of this.all.values()) {
      // prom-client has no series for label values not observed since a reset.
      if (s.count === 0) continue;
      let acc = 0;
      this.buckets.forEach((le, i) => {
        acc += s.counts[i]!;
        values.push({ value: acc, labels: { le, ...s.labels }, metricName: `${this.name}_bucket` });
      });
      values.push(
        { value: s.count, labels: { le: '+Inf', ...s.labels }, metricName: `${this.name}_bucket` },
        { value: s.sum, labels: { ...s.labels }, metricName: `${this.name}_sum` },
        { value: s.count, labels: { ...s.labels }, metricName: `${this.name}_count` },
      );
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** As prom-client's reset(): no series shown until observed again. Kept series stay valid. */
  reset(): void {
    for (const s of this.all.values()) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}

/** prom-client's Counter, whose reset() also drops the `ok` counts not added to it yet. */
class InvocationCounter extends Counter<'function' | 'start' | 'code'> {
  constructor(
    config: ConstructorParameters<typeof Counter<'function' | 'start' | 'code'>>[0],
    private readonly dropPending: () => void,
  ) {
    super(config);
  }

  override reset(): void {
    // prom-client's constructor resets too, before dropPending is set.
    this.dropPending?.();
    super.reset();
  }
}

/** `ok` invocations of one function and start kind not yet added to the prom-client counter. */
class OkCount {
  pending = 0;
  inc(): void {
    this.pending++;
  }
}

/** What the scrape-time gauges read. */
export interface MetricsSource {
  memory(): { budgetBytes: number; reservedBytes: number };
  /** microVMs by function, then by state (starting, idle, busy, paused). */
  microvms(): Iterable<[string, Record<string, number>]>;
}

export class Metrics {
  readonly registry = new Registry();

  readonly invocations = new InvocationCounter(
    {
      name: 'fnctl_invocations_total',
      help: 'Invocations by function, start kind and outcome code (ok or an error code)',
      labelNames: ['function', 'start', 'code'] as const,
      registers: [this.registry],
      collect: () => {
        for (const [fn, byStart] of this.series) {
          for (const [start, s] of byStart) {
            if (s.ok.pending === 0) continue;
            this.invocations.labels(fn, start, 'ok').inc(s.ok.pending);
            s.ok.pending = 0;
          }
        }
      },
    },
    () => {
      for (const byStart of this.series.values()) for (const s of byStart.values()) s.ok.pending = 0;
    },
  );

  readonly duration = new SeriesHistogram(
    'fnctl_invocation_duration_seconds',
    'Gateway-side invocation latency by function and start kind',
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  );

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

  private readonly series = new Map<string, Map<string, { ok: OkCount; duration: HistogramSeries }>>();

  /** The `ok` counter and duration histogram of FN started as START, created on first use. */
  invocationSeries(fn: string, start: string): InvocationSeries {
    let byStart = this.series.get(fn);
    if (!byStart) {
      byStart = new Map();
      this.series.set(fn, byStart);
    }
    let s = byStart.get(start);
    if (!s) {
      s = { ok: new OkCount(), duration: this.duration.series({ function: fn, start }) };
      byStart.set(start, s);
    }
    return s;
  }

  constructor(options: { processMetrics?: boolean } = {}) {
    // The registry takes any metric it can read with get(); prom-client's types list only its own.
    this.registry.registerMetric(this.duration as unknown as Parameters<Registry['registerMetric']>[0]);
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'fnctl_' });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
