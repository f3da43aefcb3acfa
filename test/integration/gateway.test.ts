// The gateway in-process with real guests: every error of the contract, crash recovery,
// concurrency limits and throttling.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { TestGateway } from '../helpers/gateway.js';
import { isRunning } from '../helpers/process.js';
import { probeBatchScheduling } from '../../microvm/sched.js';

const t = new TestGateway({ queueWaitMs: 300, queueLength: 2, maxBodyBytes: 64 * 1024, shutdownGraceMs: 2000 });
const http = (pathname: string, options: Parameters<TestGateway['http']>[1] = {}) => t.http(pathname, options);
const deploy = (name: string, file: string, settings: Record<string, unknown> = {}) => t.deploy(name, `test/fixtures/behaviour/${file}`, settings);

beforeAll(async () => {
  await t.start();
  await deploy('faults', 'faults.mjs', { timeout: 0.5, max: 2 });
  await deploy('echo', 'echo.mjs');
}, 60_000);

afterAll(() => t.close());

function expectError(res: { status: number; headers: Record<string, unknown>; json: () => { error: Record<string, unknown> } }, status: number, code: string) {
  expect(res.status).toBe(status);
  const { error } = res.json();
  expect(error.code).toBe(code);
  expect(typeof error.message).toBe('string');
  expect(error.requestId).toBe(res.headers['x-fn-request-id']);
}

describe('response bodies', () => {
  it('come back byte for byte, binary or UTF-8, small (written with the headers) or large', async () => {
    for (const n of [0, 1, 255, 256, 1024, 1025, 70_000]) {
      const res = await request(`${t.url}/fn/echo/bytes?n=${n}`);
      const got = Buffer.from(await res.body.arrayBuffer());
      expect(res.headers['content-length']).toBe(String(n));
      expect(got.equals(Buffer.from(Uint8Array.from({ length: n }, (_, i) => (i * 7) % 256)))).toBe(true);
    }
    const text = await http('/fn/echo/utf8');
    expect(text.text).toBe('héllo, wörld ✓ 🚀\n');
    expect(text.headers['content-length']).toBe(String(Buffer.byteLength('héllo, wörld ✓ 🚀\n')));
  });
});

describe('errors of the contract', () => {
  it('404 FUNCTION_NOT_FOUND for an unknown function', async () => {
    expectError(await http('/fn/nope'), 404, 'FUNCTION_NOT_FOUND');
  });

  it('400 INVALID_REQUEST for a malformed version', async () => {
    const res = await http('/fn/echo@abc');
    expect(res.status).toBe(400);
    expect(res.json().error.code).toBe('INVALID_REQUEST');
  });

  it('413 PAYLOAD_TOO_LARGE over the body limit, with or without content-length', async () => {
    expectError(await http('/fn/echo', { method: 'POST', body: Buffer.alloc(64 * 1024 + 1) }), 413, 'PAYLOAD_TOO_LARGE');
    async function* chunks() {
      for (let i = 0; i < 20; i++) yield Buffer.alloc(8 * 1024);
    }
    expectError(await http('/fn/echo', { method: 'POST', body: chunks() }), 413, 'PAYLOAD_TOO_LARGE');
    expect((await http('/fn/echo', { method: 'POST', body: Buffer.alloc(64 * 1024) })).status).toBe(200);
  });

  it('502 FUNCTION_ERROR when the handler throws or returns a non-response; the instance keeps serving', async () => {
    const first = await http('/fn/faults/pid');
    const thrown = await http('/fn/faults/throw');
    expectError(thrown, 502, 'FUNCTION_ERROR');
    expect(thrown.json().error.message).toContain('boom from the handler');
    expectError(await http('/fn/faults/bad-return'), 502, 'FUNCTION_ERROR');
    const after = await http('/fn/faults/pid');
    expect(after.headers['x-fn-instance']).toBe(first.headers['x-fn-instance']);
  });

  it('502 FUNCTION_CRASHED when the microVM dies; the next call gets a new microVM', async () => {
    const before = await http('/fn/faults/pid');
    expectError(await http('/fn/faults/exit'), 502, 'FUNCTION_CRASHED');
    const next = await http('/fn/faults/pid');
    expect(next.status).toBe(200);
    expect(next.headers['x-fn-instance']).not.toBe(before.headers['x-fn-instance']);
  });

  it('504 FUNCTION_TIMEOUT kills the microVM; the next call succeeds on a new one', async () => {
    const before = await http('/fn/faults/pid');
    const slow = await http('/fn/faults/sleep?ms=5000');
    expectError(slow, 504, 'FUNCTION_TIMEOUT');
    const killed = t.platform.instances('faults').find((i) => i.id === before.headers['x-fn-instance']);
    // The kill is sent before the 504; the process is gone moments later.
    if (killed?.pid) await expect.poll(() => isRunning(killed.pid!), { timeout: 3000 }).toBe(false);
    await expect.poll(() => t.platform.instances('faults').some((i) => i.id === before.headers['x-fn-instance']), { timeout: 3000 }).toBe(false);
    const next = await http('/fn/faults/pid');
    expect(next.status).toBe(200);
    expect(next.headers['x-fn-instance']).not.toBe(before.headers['x-fn-instance']);
  });

  it('429 THROTTLED with retry-after when max microVMs are busy and the queue is full or waits too long', async () => {
    const slow = [http('/fn/faults/sleep?ms=400'), http('/fn/faults/sleep?ms=400')];
    await new Promise((r) => setTimeout(r, 50));
    const extra = await Promise.all([http('/fn/faults/sleep?ms=10'), http('/fn/faults/sleep?ms=10'), http('/fn/faults/sleep?ms=10')]);
    const statuses = extra.map((r) => r.status).sort();
    expect(statuses).toContain(429);
    const throttled = extra.find((r) => r.status === 429)!;
    expectError(throttled, 429, 'THROTTLED');
    expect(throttled.headers['retry-after']).toBe('1');
    for (const r of await Promise.all(slow)) expect(r.status).toBe(200);
  });

  it('a fault in one function does not affect another', async () => {
    const calls = await Promise.all([http('/fn/faults/exit'), http('/fn/echo/still-here')]);
    expect(calls[0].status).toBe(502);
    expect(calls[1].status).toBe(200);
  });
});

describe('deploy errors leave the previous version serving', () => {
  it('an init that throws fails the deploy with the function\'s error', async () => {
    await expect(deploy('echo', 'init-throws.mjs')).rejects.toMatchObject({ code: 'INIT_FAILED', message: expect.stringContaining('config file missing at init') });
    expect((await http('/fn/echo')).status).toBe(200);
  });

  it('bad settings name the key, the value and the rule', async () => {
    await expect(deploy('echo', 'echo.mjs', { memory: 5 })).rejects.toMatchObject({ code: 'INVALID_SETTING', message: expect.stringContaining('memory = 5, must be an integer in [64, 10240]') });
    await expect(deploy('echo', 'echo.mjs', { colour: 'red' })).rejects.toMatchObject({ code: 'INVALID_SETTING', message: expect.stringContaining('colour') });
  });
});

describe('concurrency', () => {
  it('one microVM serves `concurrency` requests at once', async () => {
    await deploy('conc', 'faults.mjs', { concurrency: 4, max: 1 });
    expect((await http('/fn/conc')).status).toBe(200);
    const calls = await Promise.all(Array.from({ length: 4 }, () => http('/fn/conc/sleep?ms=300')));
    const instances = new Set(calls.map((c) => c.headers['x-fn-instance']));
    expect(calls.every((c) => c.status === 200)).toBe(true);
    expect(instances.size).toBe(1);
  });
});

describe('guest scheduling', () => {
  it('guests, and what they start, run under SCHED_BATCH by default; under the normal policy with guestScheduling normal', async () => {
    // Where chrt cannot set the policy the platform warns and uses the normal one.
    const batch = probeBatchScheduling().chrt ? '3' : '0';
    await deploy('sched', 'sched-policy.mjs');
    expect((await http('/fn/sched')).json()).toEqual({ guest: batch, child: batch });
    const normal = await new TestGateway({ guestScheduling: 'normal' }).start();
    try {
      await normal.deploy('sched', 'test/fixtures/behaviour/sched-policy.mjs');
      expect((await normal.http('/fn/sched')).json()).toEqual({ guest: '0', child: '0' });
    } finally {
      await normal.close();
    }
  });
});
