// The two series every invocation updates are plain numbers (core/metrics.ts); what /metrics shows
// of them must be what prom-client's own Counter and Histogram would show for the same calls.
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../core/metrics.js';

/** The lines of NAME's family in a Prometheus text exposition. */
function family(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(name) || l.startsWith(`# HELP ${name} `) || l.startsWith(`# TYPE ${name} `));
}

describe('Metrics', () => {
  it('shows invocation counts and durations exactly as prom-client would', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const reference = new Registry();
    const counter = new Counter({ name: 'fnctl_invocations_total', help: 'Invocations by function, start kind and outcome code (ok or an error code)', labelNames: ['function', 'start', 'code'], registers: [reference] });
    const histogram = new Histogram({
      name: 'fnctl_invocation_duration_seconds',
      help: 'Gateway-side invocation latency by function and start kind',
      labelNames: ['function', 'start'],
      buckets: metrics.duration.buckets.slice(),
      registers: [reference],
    });
    // Values on bucket bounds, between them, past the last one, and a sum that is not round.
    const calls: [string, string, number][] = [
      ['hello', 'warm', 0.0005],
      ['hello', 'warm', 0.0004],
      ['hello', 'warm', 0.0031],
      ['hello', 'cold', 0.3],
      ['hello', 'warm', 31],
      ['other', 'restore', 0.07],
      ['hello', 'warm', 1e-7],
    ];
    const check = async () => {
      for (const [fn, start, seconds] of calls) {
        const s = metrics.invocationSeries(fn, start);
        s.ok.inc();
        s.duration.observe(seconds);
        counter.labels(fn, start, 'ok').inc();
        histogram.labels(fn, start).observe(seconds);
      }
      // An error outcome goes to the counter directly, as the gateway does.
      metrics.invocations.labels('hello', 'none', 'FUNCTION_ERROR').inc();
      counter.labels('hello', 'none', 'FUNCTION_ERROR').inc();
      const ours = await metrics.text();
      const theirs = await reference.metrics();
      for (const name of ['fnctl_invocations_total', 'fnctl_invocation_duration_seconds']) {
        const lines = family(ours, name);
        expect(lines.length).toBeGreaterThan(2);
        // The same lines; series may come in another order (Prometheus does not mind).
        expect(lines.sort()).toEqual(family(theirs, name).sort());
      }
    };
    await check();
    // Counts keep adding up across scrapes.
    await check();
    expect(family(await metrics.text(), 'fnctl_invocations_total')).toContain('fnctl_invocations_total{function="hello",start="warm",code="ok"} 10');
    // A reset forgets everything, counts not yet scraped too, as prom-client's does.
    metrics.invocationSeries('hello', 'warm').ok.inc();
    metrics.registry.resetMetrics();
    reference.resetMetrics();
    const [ours, theirs] = [await metrics.text(), await reference.metrics()];
    for (const name of ['fnctl_invocations_total', 'fnctl_invocation_duration_seconds']) expect(family(ours, name)).toEqual(family(theirs, name));
    await check();
  });

  it('hands out the same series for the same function and start', () => {
    const metrics = new Metrics({ processMetrics: false });
    expect(metrics.invocationSeries('a', 'warm')).toBe(metrics.invocationSeries('a', 'warm'));
    expect(metrics.invocationSeries('a', 'warm')).not.toBe(metrics.invocationSeries('a', 'cold'));
  });
});
