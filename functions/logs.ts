// Function logs, behind `fnctl logs NAME [--follow]`: every console record of every microVM lands
// here. Per function: an in-memory ring of the latest records for listings, live followers, and an
// append-only JSON-lines file (`<logDir>/<name>.log`, rotated to `.log.1`) so history survives a
// restart. recordLine() sits on the invoke path (a REPORT line per invocation): it only touches
// memory; files are written in batches every 100 ms (or at 256 KiB) through a WriteStream.
//
// Records are kept as their JSON lines in off-heap buffers, both in the ring and while they wait
// for the disk, not as JS objects: kept objects outlive many young-generation collections and are
// copied by each, which measured as a fifth of the gateway's CPU per invocation. recent() parses
// the few lines it is asked for back into records.
import { createWriteStream, closeSync, openSync, readSync, fstatSync, type WriteStream } from 'node:fs';
import { mkdir, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { ConsoleRecord, ConsoleSink } from '../microvm/types.js';
import { validateName } from './settings.js';

export interface LogStoreOptions {
  /** Records kept in memory per function (default 2000). */
  ringSize?: number;
  /** A log file is rotated to `.log.1` past this size (default 10 MiB). */
  maxFileBytes?: number;
  /** Bytes waiting for the disk per function before new lines are dropped from the file (default 8 MiB). */
  maxPendingBytes?: number;
}

export interface RecentOptions {
  /** At most this many records, the newest. */
  limit?: number;
  /** Only records at or after this time (ms since epoch). */
  since?: number;
  requestId?: string;
}

export type LogListener = (record: ConsoleRecord) => void;

/** Lines are written to the file at most this often… */
const FLUSH_INTERVAL_MS = 100;
/** …unless this much is waiting. */
const FLUSH_NOW_BYTES = 256 * 1024;

/** How much of a log file's tail is read to refill the ring after a restart. */
const HISTORY_BYTES = 4 * 1024 * 1024;

/** Bytes of one ring chunk; a line longer than a quarter of it is kept as a string instead. */
const RING_CHUNK_BYTES = 64 * 1024;

/**
 * The latest `capacity` records as JSON lines in off-heap chunks, at most about `maxBytes` of
 * them (the oldest go first when lines are long). push is O(1) and allocates nothing on the JS
 * heap; reading parses. Chunks are recycled, never freed: a new off-heap buffer every few hundred
 * records made V8 promote young objects and mark the old generation far more often (scavenges
 * twice as long, a major GC every two seconds, measured on the gateway under load).
 */
class LineRing {
  /** Per slot: sequence number of the chunk holding the line, or -1 when it is in `strings`. */
  private readonly chunkOf: Int32Array;
  private readonly offset: Int32Array;
  private readonly length: Int32Array;
  private readonly strings: (string | undefined)[];
  private head = 0;
  private count = 0;
  /** chunks[k] has sequence number firstSeq + k; the last one is being filled. */
  private chunks: Buffer[] = [];
  private readonly spare: Buffer[] = [];
  private firstSeq = 0;
  private pos = RING_CHUNK_BYTES;

  constructor(
    private readonly capacity: number,
    private readonly maxBytes: number,
  ) {
    this.chunkOf = new Int32Array(capacity);
    this.offset = new Int32Array(capacity);
    this.length = new Int32Array(capacity);
    this.strings = new Array<string | undefined>(capacity).fill(undefined);
  }

  get size(): number {
    return this.count;
  }

  /** Keep LINE, BYTES long in ENCODING (its UTF-8 bytes either way). */
  push(line: string, bytes: number, encoding: 'utf8' | 'latin1' = 'utf8'): void {
    if (this.capacity === 0) return;
    if (this.count === this.capacity) this.evict();
    const slot = (this.head + this.count) % this.capacity;
    if (bytes > RING_CHUNK_BYTES / 4) {
      this.strings[slot] = line;
      this.chunkOf[slot] = -1;
    } else {
      if (this.pos + bytes > RING_CHUNK_BYTES) {
        this.chunks.push(this.spare.pop() ?? Buffer.allocUnsafeSlow(RING_CHUNK_BYTES));
        this.pos = 0;
      }
      this.chunks[this.chunks.length - 1]!.write(line, this.pos, bytes, encoding);
      this.chunkOf[slot] = this.firstSeq + this.chunks.length - 1;
      this.offset[slot] = this.pos;
      this.length[slot] = bytes;
      this.pos += bytes;
    }
    this.count++;
    while (this.chunks.length * RING_CHUNK_BYTES > this.maxBytes && this.count > 1) this.evict();
  }

  /** The kept records, oldest first. */
  toArray(): ConsoleRecord[] {
    const out: ConsoleRecord[] = [];
    for (let i = 0; i < this.count; i++) {
      const slot = (this.head + i) % this.capacity;
      const seq = this.chunkOf[slot]!;
      const line =
        seq < 0 ? this.strings[slot]! : this.chunks[seq - this.firstSeq]!.toString('utf8', this.offset[slot]!, this.offset[slot]! + this.length[slot]!);
      out.push(JSON.parse(line) as ConsoleRecord);
    }
    return out;
  }

  /** Put older records before the current ones, keeping the newest `capacity`. */
  prependOlder(items: ConsoleRecord[]): void {
    const all = [...items, ...this.toArray()].slice(-this.capacity);
    this.head = 0;
    this.count = 0;
    this.spare.push(...this.chunks);
    this.chunks = [];
    this.pos = RING_CHUNK_BYTES;
    this.strings.fill(undefined);
    for (const r of all) {
      const line = JSON.stringify(r);
      this.push(line, Buffer.byteLength(line));
    }
  }

  /** Drop the oldest record, and the chunks nothing refers to any more. */
  private evict(): void {
    this.strings[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    if (this.chunks.length <= 1) return;
    const current = this.firstSeq + this.chunks.length - 1;
    let oldest = current;
    for (let i = 0; i < this.count; i++) {
      const seq = this.chunkOf[(this.head + i) % this.capacity]!;
      if (seq >= 0) {
        oldest = Math.min(seq, current);
        break;
      }
    }
    if (oldest > this.firstSeq) {
      this.spare.push(...this.chunks.splice(0, oldest - this.firstSeq));
      this.firstSeq = oldest;
    }
  }
}

/** Lines waiting for the disk, in one off-heap buffer that a flush hands to the WriteStream whole. */
class Pending {
  private buf: Buffer | undefined;
  /** Size of the next buffer: about what the last one reached, so a busy log does not regrow. */
  private nextSize = 2048;
  bytes = 0;

  append(line: string, bytes: number, encoding: 'utf8' | 'latin1'): void {
    const need = this.bytes + bytes + 1;
    if (!this.buf || need > this.buf.length) {
      // Grown by doubling; a fresh one after each flush, as the stream still holds the old one.
      const next = Buffer.allocUnsafeSlow(Math.max(need, this.buf ? this.buf.length * 2 : this.nextSize));
      if (this.buf) this.buf.copy(next, 0, 0, this.bytes);
      this.buf = next;
    }
    this.buf.write(line, this.bytes, bytes, encoding);
    this.buf[this.bytes + bytes] = 0x0a;
    this.bytes = need;
  }

  /** The bytes so far; the buffer is the caller's from now on. */
  take(): Buffer | undefined {
    if (!this.buf || this.bytes === 0) return undefined;
    const out = this.buf.subarray(0, this.bytes);
    this.nextSize = Math.min(Math.max(this.bytes + (this.bytes >> 1), 2048), FLUSH_NOW_BYTES * 2);
    this.buf = undefined;
    this.bytes = 0;
    return out;
  }

  clear(): void {
    this.buf = undefined;
    this.bytes = 0;
  }
}

interface FnLog {
  name: string;
  file: string | undefined;
  ring: LineRing;
  /** History from disk has been merged into the ring. */
  loaded: boolean;
  /** The file writer is being set up (history load, then open); undefined before the first record. */
  ready: Promise<void> | undefined;
  stream: WriteStream | undefined;
  pending: Pending;
  fileBytes: number;
  flushScheduled: boolean;
  rotating: Promise<void> | undefined;
  dropped: number;
  closed: boolean;
}

export class LogStore implements ConsoleSink {
  private readonly logs = new Map<string, FnLog>();
  private readonly followers = new Map<string, Set<LogListener>>();
  private readonly removing = new Map<string, Promise<void>>();
  private readonly ringSize: number;
  private readonly maxFileBytes: number;
  private readonly maxPendingBytes: number;
  private closing = false;

  /** LOGDIR holds one `<name>.log` per function (the platform passes `<dataDir>/logs`). */
  constructor(readonly logDir: string, options: LogStoreOptions = {}) {
    this.ringSize = options.ringSize ?? 2000;
    this.maxFileBytes = options.maxFileBytes ?? 10 * 1024 * 1024;
    this.maxPendingBytes = options.maxPendingBytes ?? 8 * 1024 * 1024;
  }

  record(entry: ConsoleRecord): void {
    const line = JSON.stringify(entry);
    this.keep(entry.functionName, line, Buffer.byteLength(line), 'utf8', entry);
  }

  recordLine(functionName: string, line: string, entry: () => ConsoleRecord): void {
    // ASCII: its length is its size, and latin1 writes it as UTF-8 would, only faster.
    this.keep(functionName, line, line.length, 'latin1', entry);
  }

  /** Keep LINE (BYTES long in ENCODING) in the ring, pass ENTRY to followers, queue LINE for the file. */
  private keep(name: string, line: string, bytes: number, encoding: 'utf8' | 'latin1', entry: ConsoleRecord | (() => ConsoleRecord)): void {
    if (this.closing) return;
    const log = this.logFor(name);
    log.ring.push(line, bytes, encoding);
    const listeners = this.followers.get(name);
    if (listeners) {
      const record = typeof entry === 'function' ? entry() : entry;
      for (const listener of listeners) {
        try {
          listener(record);
        } catch {
          // A broken follower must not break the invocation that logged.
        }
      }
    }
    if (!log.file) return;
    if (log.pending.bytes + (log.stream?.writableLength ?? 0) > this.maxPendingBytes) {
      log.dropped++;
      return;
    }
    log.pending.append(line, bytes, encoding);
    log.ready ??= this.prepare(log).catch(() => {
      // No log folder (permissions, full disk): the ring still serves listings and followers.
      log.file = undefined;
      log.pending.clear();
    });
    this.scheduleFlush(log);
  }

  /** The latest records of NAME, oldest first; after a restart, read back from its log file. */
  recent(name: string, options: RecentOptions = {}): ConsoleRecord[] {
    const log = this.logFor(name);
    if (!log.loaded) {
      // The writer has not opened the file yet (it waits for the load), so the file holds exactly
      // the history from before this process, and nothing is counted twice.
      if (log.file && !this.removing.has(name)) log.ring.prependOlder(readHistorySync(log.file, this.ringSize));
      log.loaded = true;
    }
    let out = log.ring.toArray();
    const { since, requestId, limit } = options;
    if (since !== undefined || requestId !== undefined) {
      out = out.filter((r) => (since === undefined || r.time >= since) && (requestId === undefined || r.requestId === requestId));
    }
    if (limit !== undefined && out.length > limit) out = out.slice(out.length - Math.max(0, limit));
    return out;
  }

  /** Call LISTENER with every new record of NAME until the returned function is called. */
  follow(name: string, listener: LogListener): () => void {
    let set = this.followers.get(name);
    if (!set) {
      set = new Set();
      this.followers.set(name, set);
    }
    set.add(listener);
    return () => {
      const current = this.followers.get(name);
      current?.delete(listener);
      if (current?.size === 0) this.followers.delete(name);
    };
  }

  /** Forget NAME's logs and delete its files. Followers stay subscribed (the caller ends them). */
  remove(name: string): Promise<void> {
    const log = this.logs.get(name);
    this.logs.delete(name);
    const file = log?.file ?? this.fileFor(name);
    if (log) log.closed = true;
    const previous = this.removing.get(name) ?? Promise.resolve();
    const done = previous.then(async () => {
      if (log) {
        await log.ready?.catch(() => undefined);
        await log.rotating;
        await endStream(log.stream);
        log.stream = undefined;
      }
      if (file) await Promise.all([unlinkQuietly(file), unlinkQuietly(`${file}.1`)]);
    });
    this.removing.set(name, done);
    void done.finally(() => {
      if (this.removing.get(name) === done) this.removing.delete(name);
    });
    return done;
  }

  /** Write out what is pending and close every file. Records after close() are dropped. */
  async close(): Promise<void> {
    this.closing = true;
    const logs = [...this.logs.values()];
    await Promise.all(logs.map((l) => l.ready?.catch(() => undefined)));
    await Promise.all(logs.map((l) => l.rotating));
    await Promise.all(
      logs.map((log) => {
        this.flush(log);
        const stream = log.stream;
        log.stream = undefined;
        return endStream(stream);
      }),
    );
    await Promise.all([...this.removing.values()]);
    this.logs.clear();
  }

  /** Records that could not be written to NAME's file because the disk fell behind. */
  droppedLines(name: string): number {
    return this.logs.get(name)?.dropped ?? 0;
  }

  private logFor(name: string): FnLog {
    let log = this.logs.get(name);
    if (!log) {
      log = {
        name,
        file: this.fileFor(name),
        ring: new LineRing(this.ringSize, Math.max(this.ringSize * 1024, 4 * RING_CHUNK_BYTES)),
        loaded: false,
        ready: undefined,
        stream: undefined,
        pending: new Pending(),
        fileBytes: 0,
        flushScheduled: false,
        rotating: undefined,
        dropped: 0,
        closed: false,
      };
      this.logs.set(name, log);
    }
    return log;
  }

  /** The file of NAME, or undefined when NAME could not be a file name (never for registered names). */
  private fileFor(name: string): string | undefined {
    try {
      return path.join(this.logDir, `${validateName(name)}.log`);
    } catch {
      return undefined;
    }
  }

  /** Load history (unless recent() did), then open the file for appending and flush. */
  private async prepare(log: FnLog): Promise<void> {
    await this.removing.get(log.name);
    await mkdir(this.logDir, { recursive: true, mode: 0o700 });
    if (!log.loaded) {
      const history = await readHistory(log.file!, this.ringSize);
      if (!log.loaded) {
        log.ring.prependOlder(history);
        log.loaded = true;
      }
    }
    log.fileBytes = await stat(log.file!).then((s) => s.size, () => 0);
    if (log.closed) return;
    this.openStream(log);
  }

  private openStream(log: FnLog): void {
    const stream = createWriteStream(log.file!, { flags: 'a', mode: 0o600 });
    stream.on('error', () => {
      // A full or broken disk: keep the ring (listings and followers still work), stop writing.
      if (log.stream === stream) log.stream = undefined;
      log.file = undefined;
      log.pending.clear();
    });
    log.stream = stream;
    this.scheduleFlush(log);
  }

  private scheduleFlush(log: FnLog): void {
    if (!log.stream || log.rotating) return;
    if (log.pending.bytes >= FLUSH_NOW_BYTES) {
      this.flush(log);
      return;
    }
    if (log.flushScheduled) return;
    log.flushScheduled = true;
    // One file write per interval, not per event-loop turn: under load, a write per turn woke the
    // thread pool thousands of times a second and cost a third of the gateway's throughput.
    const timer = setTimeout(() => {
      log.flushScheduled = false;
      this.flush(log);
    }, FLUSH_INTERVAL_MS);
    timer.unref();
  }

  private flush(log: FnLog): void {
    if (!log.stream || log.rotating) return;
    const chunk = log.pending.take();
    if (!chunk) return;
    log.stream.write(chunk);
    log.fileBytes += chunk.length;
    if (log.fileBytes >= this.maxFileBytes && !this.closing) log.rotating = this.rotate(log);
  }

  /** Close the full file, rename it to .log.1 (replacing the older one) and start a new one. */
  private async rotate(log: FnLog): Promise<void> {
    const old = log.stream;
    log.stream = undefined;
    await endStream(old);
    await rename(log.file!, `${log.file!}.1`).catch(() => undefined);
    log.fileBytes = 0;
    log.rotating = undefined;
    // Even while closing: close() waits for this, then flushes what queued up meanwhile.
    if (!log.closed && log.file) this.openStream(log);
  }
}

function endStream(stream: WriteStream | undefined): Promise<void> {
  if (!stream || stream.closed || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once('close', () => resolve());
    stream.end();
  });
}

async function unlinkQuietly(file: string): Promise<void> {
  await unlink(file).catch(() => undefined);
}

/** The last `max` records of FILE (and of FILE.1 when FILE alone has too few). */
async function readHistory(file: string, max: number): Promise<ConsoleRecord[]> {
  const records = parseLines(await readTail(file, HISTORY_BYTES));
  if (records.length >= max) return records.slice(-max);
  const older = parseLines(await readTail(`${file}.1`, HISTORY_BYTES));
  return [...older, ...records].slice(-max);
}

function readHistorySync(file: string, max: number): ConsoleRecord[] {
  const records = parseLines(readTailSync(file, HISTORY_BYTES));
  if (records.length >= max) return records.slice(-max);
  const older = parseLines(readTailSync(`${file}.1`, HISTORY_BYTES));
  return [...older, ...records].slice(-max);
}

async function readTail(file: string, maxBytes: number): Promise<{ text: string; partial: boolean }> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch {
    return { text: '', partial: false };
  }
  try {
    const size = (await handle.stat()).size;
    const length = Math.min(size, maxBytes);
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, size - length);
    return { text: buf.toString('utf8'), partial: size > length };
  } finally {
    await handle.close();
  }
}

function readTailSync(file: string, maxBytes: number): { text: string; partial: boolean } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return { text: '', partial: false };
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, maxBytes);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    return { text: buf.toString('utf8'), partial: size > length };
  } finally {
    closeSync(fd);
  }
}

/** JSON lines to records; a line cut by the tail read or by a crash mid-write is skipped. */
function parseLines({ text, partial }: { text: string; partial: boolean }): ConsoleRecord[] {
  const lines = text.split('\n');
  if (partial) lines.shift();
  const out: ConsoleRecord[] = [];
  for (const line of lines) {
    if (!line) continue;
    try {
      const r = JSON.parse(line) as ConsoleRecord;
      if (r && typeof r.time === 'number' && typeof r.message === 'string') out.push(r);
    } catch {
      // a torn line
    }
  }
  return out;
}
