// The typed messages between host and guest, and their framing on the vsock-like channel (a
// socketpair on fd 3 of the guest). A frame is:
//
//   u32 LE  length of everything after this field
//   u8      type (FrameType), with FIELDS set when the meta is in the fields form
//   u32 LE  id (request id on the channel; 0 for messages about the whole microVM)
//   u32 LE  length of the meta
//   ...     meta: UTF-8 JSON typed by FrameType, or latin1 fields (below)
//   ...     payload: raw bytes (request or response body), so binary bodies need no encoding
//
// Multiplexed by id, so one microVM can serve `concurrency` requests at once.
//
// The two metas of every invocation, INVOKE and RESPONSE, have two cheaper forms than a JSON
// object, and the decoder accepts every form and always hands out objects:
// - fields: the meta's strings joined by NUL and sent as latin1, marked by FIELDS in the type
//   byte. No JSON to write or parse, and the host writes a whole tick's INVOKEs as one string.
//   Every string the gateway takes from node's HTTP parser is latin1 and free of NUL, and so are
//   nearly all response headers; a meta that is not goes as JSON (invokeFields and responseFields
//   say which).
//   A guest that reads them says so in READY (`fields`) and answers in them.
// - tuples: positional JSON arrays (InvokeTuple, ResponseTuple), what the guests of bundles built
//   before the fields form send; the host answers a guest that sent one with tuple INVOKEs.
// Bundles older than both (still running after a platform upgrade) get JSON objects.
import type { ErrorPayload } from './errors.js';

export const FrameType = {
  /** guest → host, id 0: init finished, the guest takes invocations. */
  READY: 1,
  /** guest → host, id 0: init failed; the guest exits after sending it. */
  INIT_ERROR: 2,
  /** host → guest: run the handler for one request. */
  INVOKE: 3,
  /** guest → host: the handler's response. */
  RESPONSE: 4,
  /** guest → host: the handler threw or returned something that is not a response. */
  ERROR: 5,
  /** host → guest, id 0: finish what is in flight, then exit. */
  SHUTDOWN: 6,
} as const;

export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Set in the type byte of an INVOKE or RESPONSE whose meta is in the fields form. */
export const FIELDS = 0x80;
/** Between the fields of a meta in the fields form. */
const SEP = '\0';
const NOT_LATIN1 = /[^\0-\xff]/;

export type HandlerStyle = 'fetch' | 'lambda';

/** Headers as a flat list [name, value, name, value, …], names lower-case; repeats allowed. */
export type FlatHeaders = string[];

export interface ReadyMeta {
  pid: number;
  style: HandlerStyle;
  /** Milliseconds the module top level (the function's initialisation) took. */
  initMs: number;
  /** True when the guest was restored from a snapshot rather than booted. */
  restored: boolean;
  /** Milliseconds from the process start to ready, as the guest saw them. */
  startupMs: number;
  /** The guest reads INVOKEs in the fields form (absent in bundles built before it). */
  fields?: boolean;
}

export interface InvokeMeta {
  requestId: string;
  method: string;
  /** Path as the function sees it: always starts with '/'. */
  path: string;
  /** Raw query string without the '?', '' when none. */
  query: string;
  headers: FlatHeaders;
  /** Milliseconds the handler may run; the host enforces it too. */
  timeoutMs: number;
  sourceIp: string;
}

export interface ResponseMeta {
  status: number;
  headers: FlatHeaders;
  /** Milliseconds the handler took, measured in the guest. */
  handlerMs: number;
  /** Resident memory of the guest after the handler, bytes. */
  rssBytes: number;
}

export interface ErrorMeta extends ErrorPayload {
  handlerMs: number;
  rssBytes: number;
}

export interface MetaByType {
  [FrameType.READY]: ReadyMeta;
  [FrameType.INIT_ERROR]: ErrorPayload;
  [FrameType.INVOKE]: InvokeMeta;
  [FrameType.RESPONSE]: ResponseMeta;
  [FrameType.ERROR]: ErrorMeta;
  [FrameType.SHUTDOWN]: Record<string, never>;
}

export interface Frame<T extends FrameType = FrameType> {
  type: T;
  id: number;
  meta: MetaByType[T];
  payload: Buffer;
  /** The meta came as a tuple: the sender understands tuples. */
  tuple: boolean;
}

/** INVOKE meta as a tuple. */
export type InvokeTuple = [requestId: string, method: string, path: string, query: string, timeoutMs: number, sourceIp: string, headers: FlatHeaders];
/** RESPONSE meta as a tuple. */
export type ResponseTuple = [status: number, handlerMs: number, rssBytes: number, headers: FlatHeaders];

/**
 * The object an INVOKE or RESPONSE tuple stands for; a protocol error for anything else. The
 * numbers of a RESPONSE are checked, as the host formats them; its headers are checked where they
 * are used (the HTTP server validates them).
 */
function fromTuple(type: FrameType, t: unknown[]): InvokeMeta | ResponseMeta {
  if (type === FrameType.RESPONSE && t.length === 4 && typeof t[0] === 'number' && typeof t[1] === 'number' && typeof t[2] === 'number' && Array.isArray(t[3])) {
    return { status: t[0], handlerMs: t[1], rssBytes: t[2], headers: t[3] as FlatHeaders };
  }
  if (type === FrameType.INVOKE && t.length === 7 && Array.isArray(t[6])) {
    const [requestId, method, path, query, timeoutMs, sourceIp, headers] = t as InvokeTuple;
    return { requestId, method, path, query, headers, timeoutMs, sourceIp };
  }
  throw new Error(`channel protocol error: unexpected tuple meta for frame type ${type}`);
}

/**
 * The INVOKE meta in the fields form: requestId, method, path, query, timeoutMs, sourceIp, then
 * the headers' names and values; undefined when a string holds a NUL (it would shift every field
 * after it) or a character above U+00FF (latin1 cannot carry it).
 */
export function invokeFields(m: InvokeMeta): string | undefined {
  const h = m.headers;
  let s = m.requestId + SEP + m.method + SEP + m.path + SEP + m.query + SEP + m.timeoutMs + SEP + m.sourceIp;
  for (let i = 0; i < h.length; i++) s += SEP + h[i]!;
  return fieldsOk(s, 5 + h.length) ? s : undefined;
}

/**
 * The RESPONSE meta in the fields form: status, handlerMs (to the microsecond: the shortest form
 * of an unrounded double costs six times as much to write), rssBytes, then the headers; undefined
 * as for invokeFields.
 */
export function responseFields(m: ResponseMeta): string | undefined {
  const h = m.headers;
  let s = m.status + SEP + Math.round(m.handlerMs * 1000) / 1000 + SEP + m.rssBytes;
  for (let i = 0; i < h.length; i++) s += SEP + h[i]!;
  return fieldsOk(s, 2 + h.length) ? s : undefined;
}

/** Exactly `separators` NULs, so none came from a field, and nothing above latin1. */
function fieldsOk(s: string, separators: number): boolean {
  let n = 0;
  for (let i = s.indexOf(SEP); i !== -1; i = s.indexOf(SEP, i + 1)) n++;
  return n === separators && !NOT_LATIN1.test(s);
}

/**
 * The object a meta in the fields form stands for; a protocol error for anything else. Cut with
 * indexOf rather than split: split does the same in about twice the time on a string read from a
 * buffer (~0.3 µs an INVOKE).
 */
function fromFields(type: FrameType, meta: string): InvokeMeta | ResponseMeta {
  const fixed = type === FrameType.INVOKE ? 6 : type === FrameType.RESPONSE ? 3 : 0;
  const f: string[] = [];
  let at = 0;
  for (let i = meta.indexOf(SEP); i !== -1; i = meta.indexOf(SEP, at)) {
    f.push(meta.slice(at, i));
    at = i + 1;
  }
  f.push(meta.slice(at));
  // The fixed fields, then name/value pairs.
  if (fixed > 0 && f.length >= fixed && (f.length - fixed) % 2 === 0) {
    const headers = f.length === fixed ? [] : f.slice(fixed);
    if (type === FrameType.RESPONSE) {
      const status = Number(f[0]);
      const handlerMs = Number(f[1]);
      const rssBytes = Number(f[2]);
      if (Number.isInteger(status) && Number.isFinite(handlerMs) && Number.isFinite(rssBytes)) return { status, handlerMs, rssBytes, headers };
    } else {
      const timeoutMs = Number(f[4]);
      if (Number.isFinite(timeoutMs)) return { requestId: f[0]!, method: f[1]!, path: f[2]!, query: f[3]!, timeoutMs, sourceIp: f[5]!, headers };
    }
  }
  throw new Error(`channel protocol error: malformed fields meta for frame type ${type}`);
}

/** u32 little-endian as four latin1 characters. */
function u32(n: number): string {
  return String.fromCharCode(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
}

/**
 * Frames waiting to be written, as latin1 strings (frames in the fields form, with a small payload
 * inside) or buffers, in order: flushed once per tick (`schedule`), in one write when they are all
 * strings. The host collects a tick's INVOKEs in one, the guest a tick's answers.
 */
export class Outbox {
  private parts: (string | Buffer)[] = [];
  private buffers = 0;
  private bufferBytes = 0;

  constructor(
    private readonly sink: () => { write(chunk: string | Buffer, encoding?: BufferEncoding): boolean; cork(): void; uncork(): void } | undefined,
    private readonly schedule: (flush: () => void) => void,
  ) {}

  get empty(): boolean {
    return this.parts.length === 0;
  }

  /**
   * An INVOKE: in the fields form when the guest reads it (`fields`, from its READY) and every
   * string fits, else as JSON (a tuple when the guest answered with one).
   */
  addInvoke(id: number, meta: InvokeMeta, payload: Uint8Array, fields: boolean, tuple: boolean): void {
    const f = fields ? invokeFields(meta) : undefined;
    if (f !== undefined) this.addFields(FrameType.INVOKE, id, f, payload);
    else this.add(FrameType.INVOKE, id, meta, payload, tuple);
  }

  /** A RESPONSE: in the fields form when every string fits, else as JSON. */
  addResponse(id: number, meta: ResponseMeta, payload: Uint8Array): void {
    const f = responseFields(meta);
    if (f !== undefined) this.addFields(FrameType.RESPONSE, id, f, payload);
    else this.add(FrameType.RESPONSE, id, meta, payload);
  }

  /** A frame whose meta is in the fields form (invokeFields, responseFields). */
  addFields(type: FrameType, id: number, meta: string, payload?: Uint8Array): void {
    const payloadLen = payload ? payload.byteLength : 0;
    const head = u32(HEADER - 4 + meta.length + payloadLen) + String.fromCharCode(type | FIELDS) + u32(id) + u32(meta.length) + meta;
    if (payloadLen === 0) return this.push(head);
    const bytes = Buffer.isBuffer(payload) ? payload : Buffer.from(payload!.buffer, payload!.byteOffset, payload!.byteLength);
    if (payloadLen <= INLINE_PAYLOAD_BYTES) return this.push(head + bytes.toString('latin1'));
    this.push(head);
    this.push(bytes);
  }

  /** A frame with a JSON meta (encodeFrame's form). */
  add<T extends FrameType>(type: T, id: number, meta: MetaByType[T], payload?: Uint8Array, tuple = false): void {
    for (const part of encodeFrame(type, id, meta, payload, tuple)) this.push(part);
  }

  private push(part: string | Buffer): void {
    if (this.parts.length === 0) this.schedule(this.flush);
    this.parts.push(part);
    if (typeof part !== 'string') {
      this.buffers++;
      this.bufferBytes += part.length;
    }
  }

  /** Write what is waiting now (before a frame that must follow it, or the end of the channel). */
  readonly flush = (): void => {
    const parts = this.parts;
    if (parts.length === 0) return;
    const { buffers, bufferBytes } = this;
    this.parts = [];
    this.buffers = 0;
    this.bufferBytes = 0;
    // No channel (the guest is gone): nobody is left to read them.
    const sink = this.sink();
    if (!sink) return;
    if (buffers === 0) {
      sink.write(parts.length === 1 ? (parts[0] as string) : parts.join(''), 'latin1');
    } else if (buffers === parts.length && bufferBytes <= OUTBOX_COPY_BYTES) {
      sink.write(parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts as Buffer[], bufferBytes));
    } else {
      // Large bodies go as they are, without a copy, in one corked batch.
      sink.cork();
      for (const part of parts) {
        if (typeof part === 'string') sink.write(part, 'latin1');
        else sink.write(part);
      }
      sink.uncork();
    }
  };
}

/** Node's OpenSSL config on a held guest's stdin: its gate (see microvm/microvm.ts HOLD_NODE_SCRIPT). */
export const HOLD_GATE_FLAG = '--openssl-config=/dev/stdin';
/** What a guest that is not held reads instead: the same empty config. The guest drops both from process.execArgv. */
export const EMPTY_SSL_FLAG = '--openssl-config=/dev/null';
/** The node flag, followed by the blob's path, that restores a guest from its snapshot; the guest drops it from process.execArgv too. */
export const SNAPSHOT_BLOB_FLAG = '--snapshot-blob';

/** A payload this small is copied after the meta: one buffer per frame for the socket to write. */
const INLINE_PAYLOAD_BYTES = 1024;
/** A flush's frames, all buffers, up to this size are copied into one buffer for the write. */
const OUTBOX_COPY_BYTES = 64 * 1024;

const HEADER = 13;
const EMPTY = Buffer.alloc(0);
/** A frame larger than this is a protocol violation (bodies are limited far below it). */
export const MAX_FRAME_BYTES = 1024 * 1024 * 1024;

/** The meta as it goes on the wire: RESPONSE always as a tuple, INVOKE as one when asked. */
function metaJson(type: FrameType, meta: unknown, tuple: boolean): string {
  if (type === FrameType.RESPONSE) {
    const m = meta as ResponseMeta;
    const t: ResponseTuple = [m.status, m.handlerMs, m.rssBytes, m.headers];
    return JSON.stringify(t);
  }
  if (tuple && type === FrameType.INVOKE) {
    const m = meta as InvokeMeta;
    const t: InvokeTuple = [m.requestId, m.method, m.path, m.query, m.timeoutMs, m.sourceIp, m.headers];
    return JSON.stringify(t);
  }
  return JSON.stringify(meta);
}

/**
 * Encode a frame as [header+meta(+payload)] or [header+meta, payload]: a small payload is copied
 * in, so the socket has one chunk per frame; a large one is written without a copy. `tuple`
 * sends an INVOKE meta as an InvokeTuple (only to a guest that sent one, see the header).
 */
export function encodeFrame<T extends FrameType>(type: T, id: number, meta: MetaByType[T], payload?: Uint8Array, tuple = false): Buffer[] {
  const json = metaJson(type, meta, tuple);
  const metaLen = Buffer.byteLength(json);
  const payloadLen = payload ? payload.byteLength : 0;
  const inline = payloadLen <= INLINE_PAYLOAD_BYTES;
  const head = Buffer.allocUnsafe(HEADER + metaLen + (inline ? payloadLen : 0));
  head.writeUInt32LE(HEADER - 4 + metaLen + payloadLen, 0);
  head[4] = type;
  head.writeUInt32LE(id, 5);
  head.writeUInt32LE(metaLen, 9);
  head.write(json, HEADER, 'utf8');
  if (!payloadLen) return [head];
  if (inline) {
    head.set(payload!, HEADER + metaLen);
    return [head];
  }
  return [head, Buffer.isBuffer(payload) ? payload : Buffer.from(payload!.buffer, payload!.byteOffset, payload!.byteLength)];
}

/** Write a frame to a stream-like sink in one corked batch. */
export function writeFrame<T extends FrameType>(
  sink: { write(chunk: Buffer): boolean; cork?(): void; uncork?(): void },
  type: T,
  id: number,
  meta: MetaByType[T],
  payload?: Uint8Array,
  tuple = false,
): boolean {
  const parts = encodeFrame(type, id, meta, payload, tuple);
  if (parts.length === 1) return sink.write(parts[0]!);
  sink.cork?.();
  sink.write(parts[0]!);
  const ok = sink.write(parts[1]!);
  sink.uncork?.();
  return ok;
}

/** Reassembles frames from stream chunks. Payloads are views into the received chunks. */
export class FrameDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes the pending chunks must reach before a frame can be complete. */
  private needed = 0;

  constructor(private readonly onFrame: (frame: Frame) => void) {}

  push(chunk: Buffer): void {
    let buf: Buffer;
    if (this.pendingBytes === 0) {
      buf = chunk;
    } else {
      // A large frame arrives in many chunks: join them once it is whole, not at every chunk.
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < this.needed) return;
      buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32LE(off);
      if (len < HEADER - 4 || len > MAX_FRAME_BYTES) throw new Error(`channel protocol error: frame length ${len}`);
      if (buf.length - off - 4 < len) break;
      const typeByte = buf[off + 4]!;
      const type = (typeByte & ~FIELDS) as FrameType;
      const id = buf.readUInt32LE(off + 5);
      const metaLen = buf.readUInt32LE(off + 9);
      const metaStart = off + HEADER;
      const end = off + 4 + len;
      if (metaStart + metaLen > end) throw new Error(`channel protocol error: meta length ${metaLen}`);
      const payload = end > metaStart + metaLen ? buf.subarray(metaStart + metaLen, end) : EMPTY;
      off = end;
      if (typeByte & FIELDS) {
        this.onFrame({ type, id, meta: fromFields(type, buf.toString('latin1', metaStart, metaStart + metaLen)), payload, tuple: false } as Frame);
        continue;
      }
      if (metaLen === 0) {
        this.onFrame({ type, id, meta: {}, payload, tuple: false } as Frame);
        continue;
      }
      const parsed = JSON.parse(buf.toString('utf8', metaStart, metaStart + metaLen)) as unknown;
      if (Array.isArray(parsed)) this.onFrame({ type, id, meta: fromTuple(type, parsed), payload, tuple: true } as Frame);
      else this.onFrame({ type, id, meta: parsed, payload, tuple: false } as Frame);
    }
    if (off < buf.length) {
      const rest = buf.subarray(off);
      this.pending.push(rest);
      this.pendingBytes = rest.length;
      this.needed = rest.length >= 4 ? 4 + rest.readUInt32LE(0) : 4;
    }
  }
}

/** Convert node's raw header list to FlatHeaders (lower-case names). */
export function flattenRawHeaders(raw: string[]): FlatHeaders {
  const out: string[] = new Array(raw.length);
  for (let i = 0; i < raw.length; i += 2) {
    out[i] = raw[i]!.toLowerCase();
    out[i + 1] = raw[i + 1]!;
  }
  return out;
}
