// One autocannon run, summarised: throughput, latency percentiles, errors. Every start kind the
// platform reports in x-fn-start is counted, so warm figures are never mixed with cold ones.
//
// Latency percentiles are computed here from every 2xx response's time, as autocannon reports it
// per response (in fractional ms): autocannon's own histogram keeps whole milliseconds, too
// coarse when a bare server's p99 is 1 to 2 ms and the goal is a ratio to it.
import autocannon from 'autocannon';

export interface LoadResult {
  label: string;
  connections: number;
  durationS: number;
  requests: number;
  rps: number;
  latencyMs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  /** Responses by x-fn-start (warm, cold, restore, standby); empty for a non-fnctl target. */
  starts: Record<string, number>;
}

export interface RunOptions {
  label: string;
  url: string;
  connections: number;
  durationS: number;
  method?: 'GET' | 'POST';
  body?: string;
}

/**
 * The x-fn-start value of a response, from what autocannon 9 emits as 'headers': its parser's info
 * object ({statusCode, headers: [name, value, …], …}); a bare list is accepted too.
 */
export function startKind(info: unknown): string | undefined {
  const list = Array.isArray(info) ? (info as unknown[]) : (info as { headers?: unknown } | null)?.headers;
  if (!Array.isArray(list)) return undefined;
  for (let i = 0; i + 1 < list.length; i += 2) {
    const name = list[i];
    // Length first: this runs once per response inside the load generator, which shares the CPUs
    // with what it measures.
    if (typeof name === 'string' && name.length === 10 && name.toLowerCase() === 'x-fn-start') return String(list[i + 1]);
  }
  return undefined;
}

/** Response times in ms, appended without allocating per sample. */
class Samples {
  private values = new Float64Array(1 << 16);
  size = 0;

  add(ms: number): void {
    if (this.size === this.values.length) {
      const next = new Float64Array(this.values.length * 2);
      next.set(this.values);
      this.values = next;
    }
    this.values[this.size++] = ms;
  }

  /** p50…max and mean, in ms; undefined when there are none. */
  summary(): LoadResult['latencyMs'] | undefined {
    if (this.size === 0) return undefined;
    const sorted = this.values.subarray(0, this.size).sort();
    // Nearest rank, as HdrHistogram (and so autocannon) reports percentiles.
    const at = (p: number) => sorted[Math.min(this.size - 1, Math.max(0, Math.ceil((p / 100) * this.size) - 1))]!;
    let sum = 0;
    for (let i = 0; i < this.size; i++) sum += sorted[i]!;
    return { p50: at(50), p90: at(90), p99: at(99), p999: at(99.9), max: sorted[this.size - 1]!, mean: sum / this.size };
  }
}

export async function runLoad(options: RunOptions): Promise<LoadResult> {
  const starts: Record<string, number> = {};
  const times = new Samples();
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.durationS,
    method: options.method ?? 'GET',
    ...(options.body ? { body: options.body } : {}),
    setupClient: (client) => {
      client.on('headers', (info: unknown) => {
        const kind = startKind(info);
        if (kind !== undefined) starts[kind] = (starts[kind] ?? 0) + 1;
      });
      client.on('response', (status: number, _bytes: number, ms: number) => {
        if (status >= 200 && status < 300) times.add(ms);
      });
    },
  });
  const l = result.latency as unknown as Record<string, number>;
  const fallback = { p50: l.p50!, p90: l.p90!, p99: l.p99!, p999: l.p99_9 ?? l.p999 ?? l.max!, max: l.max!, mean: l.average! };
  return {
    label: options.label,
    connections: options.connections,
    durationS: options.durationS,
    requests: result.requests.total,
    rps: result.requests.average,
    latencyMs: times.summary() ?? fallback,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    starts,
  };
}
