// A scenario session against a local server that answers like the platform's control API: the
// counters of a run are the /metrics totals after it minus those before it, and when the read
// before failed they are not counted (the totals after are the platform's lifetime ones).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Session, counterDelta } from '../../load/scenarios/session.js';

let server: http.Server | undefined;

afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

/** A platform whose /metrics answers METRICS in turn (a number: that HTTP status). */
async function platform(metrics: (string | number)[]): Promise<{ url: string; token: string }> {
  let scrape = 0;
  server = http.createServer((req, res) => {
    if (req.url === '/metrics') {
      const m = metrics[Math.min(scrape++, metrics.length - 1)]!;
      if (typeof m === 'number') res.writeHead(m).end('down');
      else res.writeHead(200, { 'content-type': 'text/plain' }).end(m);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ functions: [] }));
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't' };
}

const metrics = (starts: number, evictions: number) =>
  [
    '# TYPE fnctl_microvm_starts_total counter',
    `fnctl_microvm_starts_total{function="f",version="1"} ${starts}`,
    `fnctl_microvm_starts_total{function="other",version="1"} 1000`,
    '# TYPE fnctl_evictions_total counter',
    `fnctl_evictions_total{function="f"} ${evictions}`,
    '',
  ].join('\n');

const run = (target: { url: string; token: string }) =>
  Session.run({ platform: target }, 'burst', ['f'], 100, async () => ({ options: { functions: ['f'], connections: 1, durationS: 0.1 } }));

describe('Session counters', () => {
  it("are this run's: the totals after minus those before", async () => {
    const report = await run(await platform([metrics(5, 1), metrics(7, 4)]));
    expect(report.counters).toMatchObject({ microvmsStarted: 2, evictions: 3 });
  });

  it('are not counted (null) when /metrics could not be read before the run', async () => {
    const report = await run(await platform([503, metrics(7, 4)]));
    expect(report.counters).toMatchObject({ microvmsStarted: null, evictions: null });
    expect(report.notes).toContain('GET /metrics could not be read before the run: microVMs started and evictions are not counted');
  });

  it('counterDelta: null without either read, from 0 for a counter not exported before', () => {
    expect(counterDelta({ sum: 5, samples: 1 }, { sum: 7, samples: 1 })).toBe(2);
    expect(counterDelta(undefined, { sum: 7, samples: 1 })).toBeNull();
    expect(counterDelta({ sum: 5, samples: 1 }, undefined)).toBeNull();
    expect(counterDelta(null, { sum: 7, samples: 1 })).toBe(7);
    expect(counterDelta({ sum: 5, samples: 1 }, null)).toBeNull();
    expect(counterDelta({ sum: 9, samples: 1 }, { sum: 7, samples: 1 })).toBe(0);
  });
});
