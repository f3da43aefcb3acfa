// The REPORT record's JSON line, made by a template (microvm/pool.ts report()), is exactly what
// JSON.stringify gives for the record, and the log store writes and keeps it as such; the record
// object is made only for followers. The store's off-heap ring keeps the newest records of any size.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../core/clock.js';
import { silentLogger } from '../../core/log.js';
import { LogStore } from '../../functions/logs.js';
import { Pool } from '../../microvm/pool.js';
import type { ConsoleRecord, ConsoleSink, InvokeRequest, MicroVmConfig } from '../../microvm/types.js';
import { FakeVm } from '../helpers/fake-vm.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const req = (requestId: string): InvokeRequest => ({ requestId, method: 'GET', path: '/', query: '', headers: [], body: Buffer.alloc(0), sourceIp: '' });
const flush = () => new Promise((r) => setImmediate(r));

/** A REPORT as the sink got it: the record, and its line when it came as one. */
interface Got {
  record: ConsoleRecord;
  line?: string;
}

async function reports(functionName: string, ids: string[], sink?: ConsoleSink): Promise<Got[]> {
  const got: Got[] = [];
  const pool = poolWith(functionName, {
    record: (record) => {
      got.push({ record });
      sink?.record(record);
    },
    recordLine: (fn, line, entry) => {
      expect(fn).toBe(functionName);
      got.push({ record: entry(), line });
      sink?.recordLine?.(fn, line, entry);
    },
  });
  await run(pool.pool, pool.vms, ids);
  return got.filter((r) => r.record.level === 'REPORT');
}

function poolWith(functionName: string, sink: ConsoleSink): { pool: Pool; vms: FakeVm[] } {
  const vms: FakeVm[] = [];
  const pool = new Pool({
    spec: { functionName, version: 4, bundlePath: '/b', memoryMib: 256, timeoutMs: 1000, concurrency: 1, min: 0, max: 1, standby: 0, idleMs: 60_000, env: {}, network: 'host' },
    factory: async (config: MicroVmConfig) => {
      const vm = new FakeVm(config.id);
      vms.push(vm);
      return vm;
    },
    clock: new FakeClock(1_700_000_000_123),
    log: silentLogger(),
    sink,
    initTimeoutMs: 1000,
    queueWaitMs: 500,
    queueLength: 10,
  });
  return { pool, vms };
}

async function run(pool: Pool, vms: FakeVm[], ids: string[]): Promise<void> {
  for (const id of ids) {
    const call = pool.invoke(req(id));
    await flush();
    vms[0]!.finish();
    await call;
  }
}

describe('REPORT line', () => {
  it('is JSON.stringify of the record, with and without the init duration', async () => {
    const rs = await reports('hello-fn', ['8ff3293f-82a9-4866-95b6-8b6c3d2bf0b4', 'r2']);
    expect(rs).toHaveLength(2);
    expect(rs[0]!.record.message).toMatch(/\tInit Duration: /);
    expect(rs[1]!.record.message).not.toMatch(/Init Duration/);
    for (const r of rs) {
      expect(r.line).toBeDefined();
      expect(r.line).toBe(JSON.stringify(r.record));
    }
  });

  it('is left to JSON.stringify when a string in it would need escaping', async () => {
    const [r] = await reports('hello-fn', ['we"ird\\id\t']);
    expect(r!.line).toBeUndefined();
    expect(r!.record.message).toContain('we"ird\\id\t');
  });

  it('failing to be recorded fails no request', async () => {
    const { pool, vms } = poolWith('hello-fn', {
      record: () => {
        throw new Error('disk on fire');
      },
      recordLine: () => {
        throw new Error('disk on fire');
      },
    });
    for (const id of ['a1', 'we"ird']) {
      const call = pool.invoke(req(id));
      await flush();
      vms[0]!.finish();
      expect((await call).result.status).toBe(200);
    }
    // The microVM was given back each time: one was enough.
    expect(vms).toHaveLength(1);
  });

  it('goes to a sink without recordLine as a record', async () => {
    const records: ConsoleRecord[] = [];
    const { pool, vms } = poolWith('hello-fn', { record: (r) => records.push(r) });
    await run(pool, vms, ['a1']);
    expect(records.filter((r) => r.level === 'REPORT').map((r) => r.requestId)).toEqual(['a1']);
  });

  it('is what the log store writes, keeps and hands its followers', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fnctl-report-'));
    dirs.push(dir);
    const store = new LogStore(dir);
    const followed: ConsoleRecord[] = [];
    store.follow('hello-fn', (r) => followed.push(r));
    const rs = await reports('hello-fn', ['a1', 'a2', 'we"ird'], store);
    expect(rs.map((r) => r.line !== undefined)).toEqual([true, true, false]);
    const records = rs.map((r) => r.record);
    expect(followed).toEqual(records);
    expect(store.recent('hello-fn')).toEqual(records);
    await store.close();
    expect(readFileSync(path.join(dir, 'hello-fn.log'), 'utf8')).toBe(records.map((r) => JSON.stringify(r) + '\n').join(''));
  });
});

describe('LogStore ring', () => {
  it('keeps the newest records across many chunks, long lines and short ones, in order', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fnctl-ring-'));
    dirs.push(dir);
    const store = new LogStore(dir, { ringSize: 50 });
    const rec = (i: number, size: number): ConsoleRecord => ({ time: i, functionName: 'memory only!', version: 1, instance: 'vm', stream: 'stdout', message: `${i} ${'é'.repeat(size)}` });
    // Short lines fill several 64 KiB chunks; every 7th is too long for a chunk and kept apart.
    for (let i = 0; i < 5000; i++) store.record(rec(i, i % 7 === 0 ? 20_000 : i % 300));
    const kept = store.recent('memory only!');
    expect(kept).toHaveLength(50);
    expect(kept.map((r) => r.time)).toEqual(Array.from({ length: 50 }, (_, i) => 4950 + i));
    expect(kept.map((r) => r.message)).toEqual(kept.map((r) => rec(r.time, r.time % 7 === 0 ? 20_000 : r.time % 300).message));
  });

  it('holds about ringSize KiB of lines at most: the oldest go first when lines are long', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fnctl-ring-'));
    dirs.push(dir);
    const store = new LogStore(dir, { ringSize: 1000 });
    for (let i = 0; i < 3000; i++) store.record({ time: i, functionName: 'memory only!', version: 1, instance: 'vm', stream: 'stdout', message: 'x'.repeat(4000) });
    const kept = store.recent('memory only!').map((r) => r.time);
    // 1000 KiB of 4 KB lines, give or take a chunk, and always the newest.
    expect(kept.length).toBeGreaterThan(220);
    expect(kept.length).toBeLessThan(260);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => 3000 - kept.length + i));
  });
});
