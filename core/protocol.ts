// The typed messages between host and guest, and their framing on the vsock-like channel (a
// socketpair on fd 3 of the guest). A frame is:
//
//   u32 LE  length of everything after this field
//   u8      type (FrameType)
//   u32 LE  id (request id on the channel; 0 for messages about the whole microVM)
//   u32 LE  length of the meta JSON
//   ...     meta: UTF-8 JSON, typed by FrameType
//   ...     payload: raw bytes (request or response body), so binary bodies need no encoding
//
// Multiplexed by id, so one microVM can serve `concurrency` requests at once.
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
}

const HEADER = 13;
const EMPTY = Buffer.alloc(0);
/** A frame larger than this is a protocol violation (bodies are limited far below it). */
export const MAX_FRAME_BYTES = 1024 * 1024 * 1024;

/** Encode a frame as [header+meta, payload] so the payload is written without a copy. */
export function encodeFrame<T extends FrameType>(type: T, id: number, meta: MetaByType[T], payload?: Uint8Array): Buffer[] {
  const metaJson = JSON.stringify(meta);
  const metaLen = Buffer.byteLength(metaJson);
  const payloadLen = payload ? payload.byteLength : 0;
  const head = Buffer.allocUnsafe(HEADER + metaLen);
  head.writeUInt32LE(HEADER - 4 + metaLen + payloadLen, 0);
  head.writeUInt8(type, 4);
  head.writeUInt32LE(id, 5);
  head.writeUInt32LE(metaLen, 9);
  head.write(metaJson, HEADER, 'utf8');
  if (!payloadLen) return [head];
  return [head, Buffer.isBuffer(payload) ? payload : Buffer.from(payload!.buffer, payload!.byteOffset, payload!.byteLength)];
}

/** Write a frame to a stream-like sink in one corked batch. */
export function writeFrame<T extends FrameType>(
  sink: { write(chunk: Buffer): boolean; cork?(): void; uncork?(): void },
  type: T,
  id: number,
  meta: MetaByType[T],
  payload?: Uint8Array,
): boolean {
  const parts = encodeFrame(type, id, meta, payload);
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

  constructor(private readonly onFrame: (frame: Frame) => void) {}

  push(chunk: Buffer): void {
    let buf: Buffer;
    if (this.pendingBytes === 0) {
      buf = chunk;
    } else {
      this.pending.push(chunk);
      buf = Buffer.concat(this.pending, this.pendingBytes + chunk.length);
      this.pending = [];
      this.pendingBytes = 0;
    }
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32LE(off);
      if (len < HEADER - 4 || len > MAX_FRAME_BYTES) throw new Error(`channel protocol error: frame length ${len}`);
      if (buf.length - off - 4 < len) break;
      const type = buf.readUInt8(off + 4) as FrameType;
      const id = buf.readUInt32LE(off + 5);
      const metaLen = buf.readUInt32LE(off + 9);
      const metaStart = off + HEADER;
      const end = off + 4 + len;
      if (metaStart + metaLen > end) throw new Error(`channel protocol error: meta length ${metaLen}`);
      const meta = metaLen ? JSON.parse(buf.toString('utf8', metaStart, metaStart + metaLen)) : {};
      const payload = end > metaStart + metaLen ? buf.subarray(metaStart + metaLen, end) : EMPTY;
      off = end;
      this.onFrame({ type, id, meta, payload } as Frame);
    }
    if (off < buf.length) {
      const rest = buf.subarray(off);
      this.pending.push(rest);
      this.pendingBytes = rest.length;
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
