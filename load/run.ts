// One autocannon run, summarised: throughput, latency percentiles, errors. Every start kind the
// platform reports in x-fn-start is counted, so warm figures are never mixed with cold ones.
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

export async function runLoad(options: RunOptions): Promise<LoadResult> {
  const starts: Record<string, number> = {};
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.durationS,
    method: options.method ?? 'GET',
    ...(options.body ? { body: options.body } : {}),
    setupClient: (client) => {
      client.on('headers', (headers: unknown) => {
        // autocannon hands headers as a flat [name, value, …] list.
        const list = headers as string[];
        for (let i = 0; i < list.length; i += 2) {
          if (list[i]!.toLowerCase() === 'x-fn-start') {
            const kind = list[i + 1]!;
            starts[kind] = (starts[kind] ?? 0) + 1;
            break;
          }
        }
      });
    },
  });
  const l = result.latency as unknown as Record<string, number>;
  return {
    label: options.label,
    connections: options.connections,
    durationS: options.durationS,
    requests: result.requests.total,
    rps: result.requests.average,
    latencyMs: { p50: l.p50!, p90: l.p90!, p99: l.p99!, p999: l.p99_9 ?? l.p999 ?? l.max!, max: l.max!, mean: l.average! },
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    starts,
  };
}
