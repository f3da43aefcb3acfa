// The arithmetic of load reports, kept pure so it can be tested on its own: response times and
// their percentiles, the log-spaced histogram, the server-timing header, error codes from bodies,
// and Zipf-skewed popularity.
import type { Percentiles, StartKind } from './report/schema.js';

/** Response times in ms, appended without allocating per sample. */
export class Samples {
  private values = new Float64Array(1 << 10);
  size = 0;
  private sortedSize = -1;

  add(ms: number): void {
    if (this.size === this.values.length) {
      const next = new Float64Array(this.values.length * 2);
      next.set(this.values);
      this.values = next;
    }
    this.values[this.size++] = ms;
  }

  /** The samples in ascending order (a view, valid until the next add). */
  sorted(): Float64Array {
    const view = this.values.subarray(0, this.size);
    if (this.sortedSize !== this.size) {
      view.sort();
      this.sortedSize = this.size;
    }
    return view;
  }

  /** p50…max and mean, in ms; null when there are none. */
  summary(): Percentiles | null {
    return percentiles(this.sorted());
  }

  clear(): void {
    this.size = 0;
    this.sortedSize = -1;
  }
}

/** The nearest-rank percentile P (0–100) of ascending SORTED, as HdrHistogram (and so autocannon) reports it. */
export function nearestRank(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  // The small subtraction keeps float error (99.9 / 100 × 1000 = 999.0000000000001) from moving the rank.
  return sorted[Math.min(n - 1, Math.max(0, Math.ceil((p * n) / 100 - 1e-9) - 1))]!;
}

/** p50, p90, p99, p99.9, max and mean of ascending SORTED; null when it is empty. */
export function percentiles(sorted: ArrayLike<number>): Percentiles | null {
  const n = sorted.length;
  if (n === 0) return null;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i]!;
  return {
    p50: nearestRank(sorted, 50),
    p90: nearestRank(sorted, 90),
    p99: nearestRank(sorted, 99),
    p999: nearestRank(sorted, 99.9),
    max: sorted[n - 1]!,
    mean: sum / n,
  };
}

/** Buckets per decade of the latency histogram: bounds 1, 1.26, 1.58, 2, 2.5, 3.16, 4, 5, 6.3, 7.9 × 10^k ms. */
export const BUCKETS_PER_DECADE = 10;
const LOWEST_BOUND_MS = 0.01;

/** The upper bound (ms) of histogram bucket I, rounded to three significant digits. */
export function bucketBound(i: number): number {
  return Number((LOWEST_BOUND_MS * 10 ** (i / BUCKETS_PER_DECADE)).toPrecision(3));
}

/** The index of the first bucket whose upper bound is ≥ MS. */
export function bucketIndex(ms: number): number {
  if (ms <= LOWEST_BOUND_MS) return 0;
  let i = Math.max(0, Math.floor(Math.log10(ms / LOWEST_BOUND_MS) * BUCKETS_PER_DECADE) - 1);
  while (bucketBound(i) < ms) i++;
  return i;
}

/**
 * Log-spaced histogram of ascending SORTED: every bucket from the one holding the fastest sample to
 * the one holding the slowest, empty ones included so the buckets read as one axis.
 */
export function histogram(sorted: ArrayLike<number>): { leMs: number; count: number }[] {
  const n = sorted.length;
  if (n === 0) return [];
  const first = bucketIndex(sorted[0]!);
  const last = bucketIndex(sorted[n - 1]!);
  const buckets = [];
  let j = 0;
  for (let i = first; i <= last; i++) {
    const le = bucketBound(i);
    let count = 0;
    while (j < n && sorted[j]! <= le) {
      count++;
      j++;
    }
    buckets.push({ leMs: le, count });
  }
  return buckets;
}

/** The phases of a server-timing header (`queue;dur=0.1, restore;dur=41.2, handler;dur=0.3`), in ms. */
export function parseServerTiming(header: string | undefined): Record<string, number> {
  const phases: Record<string, number> = {};
  if (!header) return phases;
  for (const entry of header.split(',')) {
    const [name, ...params] = entry.trim().split(';');
    if (!name) continue;
    for (const p of params) {
      const m = /^\s*dur\s*=\s*"?([\d.]+)"?\s*$/.exec(p);
      if (m) phases[name.trim()] = Number(m[1]);
    }
  }
  return phases;
}

/** How a response started, from its x-fn-start value; `none` when absent or not one the platform sends. */
export function startOf(header: string | undefined): StartKind {
  switch (header) {
    case 'cold':
    case 'restore':
    case 'standby':
    case 'warm':
      return header;
    default:
      return 'none';
  }
}

/** The error code of a non-2xx response: the platform's `{"error": {"code"}}`, else `HTTP_<status>`. */
export function errorCodeOf(status: number, body: string): string {
  try {
    const code = (JSON.parse(body) as { error?: { code?: unknown } } | null)?.error?.code;
    if (typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code)) return code;
  } catch {
    // not JSON: the function's own error page
  }
  return `HTTP_${status}`;
}

/** Zipf weights of N ranks with exponent S: rank k (0-based) weighs 1/(k+1)^S, normalised to sum to 1. */
export function zipfWeights(n: number, s: number): number[] {
  const raw = Array.from({ length: n }, (_, k) => 1 / (k + 1) ** s);
  const total = raw.reduce((a, b) => a + b, 0);
  return raw.map((w) => w / total);
}

/** Picks a rank 0…n−1 with Zipf-skewed probability, from a uniform RANDOM in [0, 1). */
export function zipfPicker(n: number, s: number, random: () => number = Math.random): () => number {
  const cumulative: number[] = [];
  let acc = 0;
  for (const w of zipfWeights(n, s)) cumulative.push((acc += w));
  return () => {
    const u = random() * acc;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! > u) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
}
