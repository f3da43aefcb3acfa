// The function log store: ring, files, history after a restart, followers, rotation, removal.
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LogStore } from '../../functions/logs.js';
import type { ConsoleRecord } from '../../microvm/types.js';

let dir: string;
const stores: LogStore[] = [];

beforeEach(() => {
  dir = path.join(mkdtempSync(path.join(tmpdir(), 'fnctl-logs-')), 'logs');
});
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  rmSync(path.dirname(dir), { recursive: true, force: true });
});

function open(options?: ConstructorParameters<typeof LogStore>[1]): LogStore {
  const store = new LogStore(dir, options);
  stores.push(store);
  return store;
}

let t = 1_000;
function rec(functionName: string, message: string, extra: Partial<ConsoleRecord> = {}): ConsoleRecord {
  return { time: t++, functionName, version: 1, instance: 'vm-1', stream: 'stdout', message, ...extra };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));
const messages = (records: ConsoleRecord[]) => records.map((r) => r.message);

describe('LogStore', () => {
  it('keeps records per function, oldest first, in a ring of the last N', () => {
    const logs = open({ ringSize: 3 });
    for (const m of ['a', 'b', 'c', 'd']) logs.record(rec('hello', m));
    logs.record(rec('other', 'x'));
    expect(messages(logs.recent('hello'))).toEqual(['b', 'c', 'd']);
    expect(messages(logs.recent('other'))).toEqual(['x']);
    expect(logs.recent('nobody')).toEqual([]);
  });

  it('filters by limit, since and request id', () => {
    const logs = open();
    logs.record(rec('hello', 'one', { time: 10, requestId: 'r1' }));
    logs.record(rec('hello', 'two', { time: 20, requestId: 'r2' }));
    logs.record(rec('hello', 'three', { time: 30, requestId: 'r1' }));
    expect(messages(logs.recent('hello', { limit: 2 }))).toEqual(['two', 'three']);
    expect(messages(logs.recent('hello', { since: 20 }))).toEqual(['two', 'three']);
    expect(messages(logs.recent('hello', { requestId: 'r1' }))).toEqual(['one', 'three']);
    expect(messages(logs.recent('hello', { requestId: 'r1', limit: 1 }))).toEqual(['three']);
    expect(logs.recent('hello', { limit: 0 })).toEqual([]);
  });

  it('writes JSON lines to <dir>/<name>.log off the calling path', async () => {
    const logs = open();
    const r = rec('hello', 'to disk', { stream: 'stderr', requestId: 'req-1', level: 'error' });
    logs.record(r);
    expect(existsSync(path.join(dir, 'hello.log'))).toBe(false); // nothing synchronous
    await logs.close();
    expect(readFileSync(path.join(dir, 'hello.log'), 'utf8')).toBe(JSON.stringify(r) + '\n');
  });

  it('reads history back after a restart, and appends after it without duplicates', async () => {
    const first = open();
    for (const m of ['a', 'b', 'c']) first.record(rec('hello', m));
    await first.close();

    const second = open();
    expect(messages(second.recent('hello'))).toEqual(['a', 'b', 'c']);
    second.record(rec('hello', 'd'));
    await second.close();

    // new records arrive before anyone asks: the history still comes first, once
    const third = open();
    third.record(rec('hello', 'e'));
    expect(messages(third.recent('hello'))).toEqual(['a', 'b', 'c', 'd', 'e']);
    await turn();
    await turn();
    third.record(rec('hello', 'f'));
    await third.close();

    const fourth = open();
    fourth.record(rec('hello', 'g'));
    await turn();
    await turn();
    expect(messages(fourth.recent('hello'))).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
    expect(messages(fourth.recent('hello', { limit: 2 }))).toEqual(['f', 'g']);
  });

  it('skips a torn last line left by a crash', async () => {
    const first = open();
    first.record(rec('hello', 'whole'));
    await first.close();
    appendFileSync(path.join(dir, 'hello.log'), '{"time":5,"functionName":"hel');
    expect(messages(open().recent('hello'))).toEqual(['whole']);
  });

  it('follows new records until unsubscribed; a throwing follower harms nothing', () => {
    const logs = open();
    const seen: string[] = [];
    const stop = logs.follow('hello', (r) => seen.push(r.message));
    logs.follow('hello', () => {
      throw new Error('broken follower');
    });
    logs.record(rec('hello', 'one'));
    logs.record(rec('other', 'not mine'));
    stop();
    logs.record(rec('hello', 'two'));
    expect(seen).toEqual(['one']);
    expect(messages(logs.recent('hello'))).toEqual(['one', 'two']);
  });

  it('rotates a full file to .log.1 and still reads history across both', async () => {
    const logs = open({ maxFileBytes: 500 });
    for (let i = 0; i < 25; i++) {
      logs.record(rec('hello', `line ${i} ${'x'.repeat(40)}`));
      await new Promise((resolve) => setTimeout(resolve, 10)); // let each rotation finish
    }
    await logs.close();
    const current = path.join(dir, 'hello.log');
    // ~3 kB written in all; the cap is approximate (lines that queue during a rotation are
    // written whole), but no file grows far past it
    expect(existsSync(`${current}.1`)).toBe(true);
    expect(readFileSync(current).length).toBeLessThan(1500);
    expect(readFileSync(`${current}.1`).length).toBeLessThan(1500);
    const after = open({ ringSize: 10_000 });
    const numbers = messages(after.recent('hello')).map((m) => Number(m.split(' ')[1]));
    // the newest two files: the tail of the sequence, in order, to the last line
    expect(numbers.at(-1)).toBe(24);
    expect(numbers[0]).toBeGreaterThan(0);
    expect(numbers).toEqual(Array.from({ length: numbers.length }, (_, i) => 25 - numbers.length + i));
  });

  it('remove forgets the records and deletes the files; the name can log again', async () => {
    const logs = open({ maxFileBytes: 200 });
    for (let i = 0; i < 5; i++) {
      logs.record(rec('hello', `old ${i} ${'x'.repeat(60)}`));
      await turn();
    }
    await turn();
    await logs.remove('hello');
    expect(existsSync(path.join(dir, 'hello.log'))).toBe(false);
    expect(existsSync(path.join(dir, 'hello.log.1'))).toBe(false);
    expect(logs.recent('hello')).toEqual([]);
    logs.record(rec('hello', 'new'));
    await logs.close();
    expect(messages(open().recent('hello'))).toEqual(['new']);
  });

  it('a record straight after remove lands in a fresh file', async () => {
    const logs = open();
    logs.record(rec('hello', 'old'));
    const removed = logs.remove('hello');
    logs.record(rec('hello', 'new'));
    await removed;
    await logs.close();
    expect(messages(open().recent('hello'))).toEqual(['new']);
  });

  it('drops records after close, and keeps names that cannot be files in memory only', async () => {
    const logs = open();
    logs.record(rec('../escape', 'memory only'));
    expect(messages(logs.recent('../escape'))).toEqual(['memory only']);
    await logs.close();
    logs.record(rec('hello', 'late'));
    expect(existsSync(path.join(dir, 'hello.log'))).toBe(false);
    expect(existsSync(path.join(path.dirname(dir), 'escape.log'))).toBe(false);
  });
});
