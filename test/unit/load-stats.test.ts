import { describe, expect, it } from 'vitest';
import {
  Samples,
  bucketBound,
  bucketIndex,
  errorCodeOf,
  histogram,
  nearestRank,
  parseServerTiming,
  percentiles,
  startOf,
  zipfPicker,
  zipfWeights,
} from '../../load/stats.js';

describe('percentiles', () => {
  it('are nearest-rank over the sorted samples', () => {
    const sorted = Array.from({ length: 1000 }, (_, i) => i + 1);
    expect(percentiles(sorted)).toEqual({ p50: 500, p90: 900, p99: 990, p999: 999, max: 1000, mean: 500.5 });
    expect(nearestRank([7], 99.9)).toBe(7);
    expect(nearestRank([1, 2, 3, 4], 50)).toBe(2);
    expect(nearestRank([1, 2, 3, 4], 51)).toBe(3);
  });

  it('are null without samples', () => {
    expect(percentiles([])).toBeNull();
    expect(new Samples().summary()).toBeNull();
  });

  it('Samples grows past its first buffer and sorts what it holds', () => {
    const s = new Samples();
    for (let i = 5000; i > 0; i--) s.add(i / 10);
    expect(s.size).toBe(5000);
    const summary = s.summary()!;
    expect(summary.p50).toBe(250);
    expect(summary.max).toBe(500);
    s.add(0.05);
    expect(s.sorted()[0]).toBe(0.05);
    s.clear();
    expect(s.summary()).toBeNull();
  });
});

describe('histogram', () => {
  it('has ten log-spaced buckets per decade', () => {
    expect([0, 10, 20, 30, 40].map(bucketBound)).toEqual([0.01, 0.1, 1, 10, 100]);
    expect(bucketBound(21)).toBe(1.26);
    expect(bucketBound(25)).toBe(3.16);
  });

  it('puts a sample in the first bucket whose bound is not below it', () => {
    expect(bucketIndex(1)).toBe(20);
    expect(bucketIndex(1.0001)).toBe(21);
    expect(bucketIndex(1.26)).toBe(21);
    expect(bucketIndex(0.001)).toBe(0);
    for (const ms of [0.013, 0.4, 2.5, 7.77, 99, 12_345]) {
      const i = bucketIndex(ms);
      expect(bucketBound(i)).toBeGreaterThanOrEqual(ms);
      expect(bucketBound(i - 1)).toBeLessThan(ms);
    }
  });

  it('spans the fastest to the slowest sample, empty buckets included, and counts every sample', () => {
    const sorted = [0.5, 0.5, 0.7, 1, 30];
    const h = histogram(sorted);
    expect(h[0]).toEqual({ leMs: 0.501, count: 2 });
    expect(h.at(-1)).toEqual({ leMs: 31.6, count: 1 });
    expect(h.reduce((n, b) => n + b.count, 0)).toBe(5);
    expect(h.filter((b) => b.count === 0).length).toBeGreaterThan(0);
    for (let i = 1; i < h.length; i++) expect(h[i]!.leMs).toBeGreaterThan(h[i - 1]!.leMs);
    expect(histogram([])).toEqual([]);
  });
});

describe('server-timing', () => {
  it('reads each phase in ms', () => {
    expect(parseServerTiming('queue;dur=0.1, restore;dur=41.2, handler;dur=0.3')).toEqual({ queue: 0.1, restore: 41.2, handler: 0.3 });
    expect(parseServerTiming('init;desc="boot";dur=61')).toEqual({ init: 61 });
    expect(parseServerTiming('handler;dur="2.5"')).toEqual({ handler: 2.5 });
  });

  it('ignores phases without a duration and missing headers', () => {
    expect(parseServerTiming('miss, db;desc=x')).toEqual({});
    expect(parseServerTiming(undefined)).toEqual({});
    expect(parseServerTiming('')).toEqual({});
  });
});

describe('classification', () => {
  it('keeps the start kinds the platform sends and calls anything else none', () => {
    expect(['cold', 'restore', 'standby', 'warm'].map((s) => startOf(s))).toEqual(['cold', 'restore', 'standby', 'warm']);
    expect(startOf(undefined)).toBe('none');
    expect(startOf('baseline')).toBe('none');
    expect(startOf('WARM')).toBe('none');
  });

  it('reads the error code from the platform error body, else names the status', () => {
    expect(errorCodeOf(429, '{"error":{"code":"THROTTLED","message":"x","requestId":"r"}}')).toBe('THROTTLED');
    expect(errorCodeOf(502, '{"error":{"code":"FUNCTION_ERROR"}}')).toBe('FUNCTION_ERROR');
    expect(errorCodeOf(500, 'Internal error')).toBe('HTTP_500');
    expect(errorCodeOf(404, '{"error":"not found"}')).toBe('HTTP_404');
    expect(errorCodeOf(400, '{"error":{"code":"<script>"}}')).toBe('HTTP_400');
    expect(errorCodeOf(503, '')).toBe('HTTP_503');
  });
});

describe('Zipf popularity', () => {
  it('weighs rank k as 1/(k+1)^s, normalised', () => {
    const w = zipfWeights(4, 1);
    const h = 1 + 1 / 2 + 1 / 3 + 1 / 4;
    expect(w.map((x) => x * h)).toEqual([1, 1 / 2, 1 / 3, 1 / 4].map((x) => expect.closeTo(x, 12)));
    expect(zipfWeights(3, 0)).toEqual([1 / 3, 1 / 3, 1 / 3]);
  });

  it('picks ranks by where a uniform draw falls in the cumulative weights', () => {
    // weights for n = 3, s = 1: 6/11, 3/11, 2/11; cumulative 0.545…, 0.818…, 1
    const draws = [0, 0.5, 0.55, 0.8, 0.82, 0.999];
    let i = 0;
    const pick = zipfPicker(3, 1, () => draws[i++]!);
    expect(draws.map(() => pick())).toEqual([0, 0, 1, 1, 2, 2]);
  });

  it('gives the most popular function the largest share, in order', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const pick = zipfPicker(10, 1, random);
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 20_000; i++) counts[pick()]!++;
    const weights = zipfWeights(10, 1);
    counts.forEach((c, k) => expect(c / 20_000).toBeCloseTo(weights[k]!, 1));
    expect(counts[0]).toBeGreaterThan(counts[1]!);
    expect(counts[1]).toBeGreaterThan(counts[9]!);
  });
});
