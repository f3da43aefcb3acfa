// The autocannon driver against a local server that answers like the platform: every response
// lands in the class of its target and x-fn-start, errors by the code in their JSON body, and
// init/restore from server-timing.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drive, scanHeaders } from '../../load/run.js';
import { Recorder } from '../../load/recorder.js';

let server: http.Server;
let url = '';
let served = 0;

beforeAll(async () => {
  // /fn/a: the first response of each connection restores, the rest are warm; every fifth is
  // throttled. /fn/b: a function that fails with its own non-JSON error page.
  const seen = new WeakSet<object>();
  server = http.createServer((req, res) => {
    served++;
    if (req.url?.startsWith('/fn/b')) {
      res.writeHead(500, { 'x-fn-start': 'warm', 'content-type': 'text/plain' });
      res.end('oops');
      return;
    }
    if (served % 5 === 0) {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify({ error: { code: 'THROTTLED', message: 'too many', requestId: 'r' } }));
      return;
    }
    const first = !seen.has(req.socket);
    seen.add(req.socket);
    res.writeHead(200, {
      'x-fn-start': first ? 'restore' : 'warm',
      'server-timing': first ? 'queue;dur=0.1, restore;dur=42.5, handler;dur=0.2' : 'queue;dur=0.0, handler;dur=0.1',
    });
    res.end('hi');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('scanHeaders', () => {
  it("reads x-fn-start and server-timing from autocannon's raw header list, any case", () => {
    expect(scanHeaders({ statusCode: 200, headers: ['Content-Type', 'text/plain', 'X-Fn-Start', 'cold', 'Server-Timing', 'init;dur=3'] })).toEqual({ start: 'cold', timing: 'init;dur=3' });
    expect(scanHeaders(['x-fn-start', 'warm'])).toEqual({ start: 'warm', timing: undefined });
    expect(scanHeaders(null)).toEqual({ start: undefined, timing: undefined });
  });
});

describe('drive', () => {
  it('classes responses by target and start, errors by code, restore phases from server-timing', async () => {
    const recorder = new Recorder();
    const r = await drive({ url: `${url}/fn/a`, target: 'a', connections: 3, durationS: 0.3, recorder });
    const classes = recorder.stats();
    expect(classes.map((c) => `${c.target}/${c.start}`).sort()).toEqual(['a/none', 'a/restore', 'a/warm']);
    const restore = classes.find((c) => c.start === 'restore')!;
    expect(restore.ok).toBe(3);
    expect(restore.startPhaseMs.restore).toMatchObject({ p50: 42.5, max: 42.5 });
    expect(restore.startPhaseMs.init).toBeNull();
    const warm = classes.find((c) => c.start === 'warm')!;
    expect(warm.ok).toBe(warm.requests);
    expect(warm.startPhaseMs.restore).toBeNull();
    expect(warm.latencyMs!.p50).toBeGreaterThan(0);
    expect(warm.histogram.reduce((n, b) => n + b.count, 0)).toBe(warm.ok);
    const none = classes.find((c) => c.start === 'none')!;
    expect(none.ok).toBe(0);
    expect(none.latencyMs).toBeNull();
    expect(none.errors).toEqual({ THROTTLED: none.requests });
    expect(r.statuses['429']).toBe(none.requests);
    expect(r.statuses['200']).toBe(warm.requests + restore.requests);
    expect(r.allServedMs).not.toBeNull();
    expect(warm.rps).toBeGreaterThan(0);
    expect(recorder.coldStartRate()).toBeCloseTo(3 / (3 + warm.requests), 10);
  });

  it('classes a baseline as baseline, and keeps targets apart', async () => {
    const recorder = new Recorder();
    await drive({ url: `${url}/fn/b`, target: 'b', connections: 1, durationS: 0.2, recorder });
    await drive({ url: `${url}/fn/b`, target: 'bare', baseline: true, connections: 1, durationS: 0.2, recorder });
    const classes = recorder.stats();
    expect(classes.map((c) => `${c.target}/${c.start}`)).toEqual(['b/warm', 'bare/baseline']);
    expect(classes[0]!.errors).toEqual({ HTTP_500: classes[0]!.requests });
    expect(classes[1]!.errors).toEqual({ HTTP_500: classes[1]!.requests });
    expect(recorder.coldStartRate()).toBe(0);
  });

  it('picks each request path with pickPath, and counts connection failures as TRANSPORT', async () => {
    const recorder = new Recorder();
    const paths: string[] = [];
    await drive({ url, target: 'group', connections: 1, durationS: 0.2, recorder, pickPath: () => (paths.push('/fn/b'), '/fn/b') });
    expect(paths.length).toBeGreaterThan(1);
    expect(recorder.stats()[0]!.errors.HTTP_500).toBeGreaterThan(0);

    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const down = new Recorder();
    const r = await drive({ url: `http://127.0.0.1:${port}/`, target: 'gone', connections: 1, durationS: 0.1, recorder: down });
    expect(down.stats()[0]).toMatchObject({ target: 'gone', start: 'none', ok: 0 });
    expect(down.stats()[0]!.errors.TRANSPORT).toBeGreaterThan(0);
    expect(r.allServedMs).toBeNull();
  });
});
