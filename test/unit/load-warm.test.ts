// warm's ratios to the baseline: throughput counts 2xx responses only, so failed responses that
// carry x-fn-start: warm do not pass for throughput.
import { describe, expect, it } from 'vitest';
import { BARE, okRps, warmRatios } from '../../load/scenarios/warm.js';
import type { ClassStats } from '../../load/report/schema.js';
import type { DriveResult } from '../../load/run.js';

const p = (p99: number) => ({ p50: p99 / 2, p90: p99, p99, p999: p99, max: p99, mean: p99 / 2 });

function cls(target: string, start: ClassStats['start'], requests: number, ok: number, rps: number, p99: number): ClassStats {
  return { target, start, requests, ok, rps, latencyMs: ok > 0 ? p(p99) : null, errors: ok < requests ? { FUNCTION_ERROR: requests - ok } : {}, startPhaseMs: { init: null, restore: null }, histogram: [] };
}

const drove = (okRps: number, p99: number): DriveResult => ({ elapsedMs: 1000, allServedMs: 10, statuses: {}, okRps, latencyMs: p(p99) });

describe('warmRatios', () => {
  it('compares 2xx responses per second: half of the warm responses failing halves the throughput ratio', () => {
    const classes = [cls(BARE, 'baseline', 10_000, 10_000, 1000, 2), cls('hello', 'warm', 10_000, 5_000, 1000, 4)];
    expect(okRps(classes[1]!)).toBe(500);
    const round = new Map([[BARE, drove(1000, 2)], ['hello', drove(500, 4)]]);
    const { ratios, notes } = warmRatios(classes, ['hello'], [round]);
    expect(ratios).toEqual([
      { name: `hello warm throughput / ${BARE}`, value: 0.5, goal: '≥ 0.5', met: true },
      { name: `hello warm p99 / ${BARE} p99`, value: 2, goal: '≤ 2', met: true },
    ]);
    expect(notes).toEqual([`hello by round, throughput/p99 to ${BARE} (2xx of any start): round 1 0.50/2.00×`]);
  });

  it('gives no ratio without warm responses or without a successful baseline', () => {
    const none = warmRatios([cls(BARE, 'baseline', 10, 10, 10, 1)], ['hello'], []);
    expect(none.ratios).toEqual([]);
    expect(none.notes).toEqual(['hello: no warm responses, so no ratio to the baseline']);
    const failedBase = warmRatios([cls(BARE, 'baseline', 10, 0, 10, 1), cls('hello', 'warm', 10, 10, 10, 1)], ['hello'], []);
    expect(failedBase.ratios).toEqual([]);
    expect(failedBase.notes).toEqual(['hello: no successful baseline responses, so no ratio to the baseline']);
  });
});
