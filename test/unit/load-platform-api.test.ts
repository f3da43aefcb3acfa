// Reads of a stalled platform during a run give up after their timeout (5 s by default), headers
// or body, so the end of a run is never held up by a platform that stopped answering.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { READ_TIMEOUT_MS, microvmState, scrapeMetrics } from '../../load/platform-api.js';

let server: http.Server;
let target = { url: '', token: 't' };

beforeAll(async () => {
  // /metrics: headers, then a body that never ends; anything else: no answer at all.
  server = http.createServer((req, res) => {
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('# TYPE fnctl_microvm_starts_total counter\n');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  target = { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't' };
});

afterAll(() => {
  server.closeAllConnections();
  return new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('control API reads', () => {
  it('time out after 5 s by default', () => {
    expect(READ_TIMEOUT_MS).toBe(5_000);
  });

  it('/metrics whose body stalls: gives up after its timeout', async () => {
    const t = performance.now();
    await expect(scrapeMetrics(target, 200)).rejects.toThrow('GET /metrics: no answer within 0.2 s');
    expect(performance.now() - t).toBeLessThan(2_000);
  });

  it('the microVM state from a platform that does not answer: gives up after its timeout', async () => {
    const t = performance.now();
    await expect(microvmState(target, new Set(['f']), 200)).rejects.toThrow('GET /api/functions: no answer within 0.2 s');
    expect(performance.now() - t).toBeLessThan(2_000);
  });
});
