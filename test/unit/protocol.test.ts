// The channel's framing: every meta form (JSON object, tuple, fields) decodes to the same object,
// the fields form falls back to JSON for what latin1 and NUL separators cannot carry, and the
// outbox writes what it holds in order.
import { describe, expect, it } from 'vitest';
import {
  FIELDS,
  FrameDecoder,
  FrameType,
  Outbox,
  encodeFrame,
  invokeFields,
  responseFields,
  type Frame,
  type InvokeMeta,
  type ResponseMeta,
} from '../../core/protocol.js';

const invokeMeta: InvokeMeta = {
  requestId: '8fa39000-7605-470a-957b-a8eb80049fec',
  method: 'POST',
  path: '/caf\u00c3\u00a9/x',
  query: 'a=1&b=',
  headers: ['host', 'fn.test:8080', 'x-empty', '', 'x-latin1', '\u00e9t\u00e9\u00ff'],
  timeoutMs: 30000,
  sourceIp: '127.0.0.1',
};
const responseMeta: ResponseMeta = { status: 201, headers: ['content-type', 'text/plain', 'x-n', '1'], handlerMs: 12.345, rssBytes: 45678912 };

/** An outbox that writes into a list, flushed by hand. */
function collecting() {
  const writes: Buffer[] = [];
  const calls: string[] = [];
  const sink = {
    write(chunk: string | Buffer, encoding?: BufferEncoding) {
      calls.push(typeof chunk === 'string' ? `string:${encoding}` : 'buffer');
      writes.push(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk);
      return true;
    },
    cork: () => calls.push('cork'),
    uncork: () => calls.push('uncork'),
  };
  let scheduled = 0;
  const outbox = new Outbox(() => sink, () => scheduled++);
  return { outbox, writes, calls, bytes: () => Buffer.concat(writes), scheduled: () => scheduled };
}

function decodeAll(bytes: Buffer, chunkSize = bytes.length): Frame[] {
  const frames: Frame[] = [];
  const d = new FrameDecoder((f) => frames.push(f));
  for (let i = 0; i < bytes.length; i += chunkSize) d.push(bytes.subarray(i, i + chunkSize));
  return frames;
}

describe('fields form', () => {
  it('carries an INVOKE, its latin1 strings and a binary body, byte for byte', () => {
    const body = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 10, 13]);
    const { outbox, bytes } = collecting();
    outbox.addFields(FrameType.INVOKE, 7, invokeFields(invokeMeta)!, body);
    outbox.flush();
    const [frame] = decodeAll(bytes());
    expect(frame).toMatchObject({ type: FrameType.INVOKE, id: 7, meta: invokeMeta, tuple: false });
    expect(Buffer.compare(frame!.payload, body)).toBe(0);
  });

  it('carries a RESPONSE with its numbers, and a body larger than the inline limit as its own buffer', () => {
    const body = Buffer.alloc(5000, 0xab);
    const { outbox, bytes, calls } = collecting();
    outbox.addFields(FrameType.RESPONSE, 3, responseFields(responseMeta)!, body);
    outbox.flush();
    expect(calls).toEqual(['cork', 'string:latin1', 'buffer', 'uncork']);
    // Split into small reads: the decoder reassembles the frame.
    const [frame] = decodeAll(bytes(), 7);
    expect(frame).toMatchObject({ type: FrameType.RESPONSE, id: 3, meta: responseMeta });
    expect(frame!.payload.equals(body)).toBe(true);
  });

  it('gives handlerMs to the microsecond', () => {
    const { outbox, bytes } = collecting();
    outbox.addFields(FrameType.RESPONSE, 1, responseFields({ ...responseMeta, handlerMs: 0.123456789 })!);
    outbox.addFields(FrameType.RESPONSE, 2, responseFields({ ...responseMeta, handlerMs: 1234.5678 })!);
    outbox.flush();
    expect(decodeAll(bytes()).map((f) => (f.meta as ResponseMeta).handlerMs)).toEqual([0.123, 1234.568]);
  });

  it('has empty header lists and empty strings', () => {
    const meta: InvokeMeta = { ...invokeMeta, method: 'GET', path: '/', query: '', headers: [] };
    const { outbox, bytes } = collecting();
    outbox.addFields(FrameType.INVOKE, 1, invokeFields(meta)!);
    outbox.addFields(FrameType.RESPONSE, 1, responseFields({ ...responseMeta, headers: [] })!);
    outbox.flush();
    const frames = decodeAll(bytes());
    expect(frames.map((f) => f.meta)).toEqual([meta, { ...responseMeta, headers: [] }]);
    expect(frames.every((f) => f.payload.length === 0)).toBe(true);
  });

  it('is refused for a NUL in any string or a character above U+00FF, which go as JSON instead', () => {
    expect(invokeFields({ ...invokeMeta, headers: ['x-a', 'b\0c'] })).toBeUndefined();
    expect(invokeFields({ ...invokeMeta, query: 'q=\0' })).toBeUndefined();
    expect(invokeFields({ ...invokeMeta, path: '/\u20ac' })).toBeUndefined();
    expect(responseFields({ ...responseMeta, headers: ['x-snow', '\u2603'] })).toBeUndefined();
    expect(responseFields({ ...responseMeta, headers: ['x\0y', 'v'] })).toBeUndefined();
    // What the fallback sends decodes to the same strings.
    const odd: ResponseMeta = { ...responseMeta, headers: ['x-snow', '\u2603', 'x-nul', 'a\0b'] };
    const { outbox, bytes } = collecting();
    outbox.add(FrameType.RESPONSE, 9, odd);
    outbox.flush();
    expect(decodeAll(bytes())[0]!.meta).toEqual(odd);
  });

  it('marks the type byte and is a protocol error when its fields do not add up', () => {
    const { outbox, bytes } = collecting();
    outbox.addFields(FrameType.RESPONSE, 1, responseFields(responseMeta)!);
    outbox.flush();
    const frame = bytes();
    expect(frame[4]).toBe(FrameType.RESPONSE | FIELDS);
    // A RESPONSE meta with a header name but no value.
    const bad = Buffer.from(frame);
    const meta = '200\x000.1\x001\x00x-lonely';
    const broken = Buffer.concat([bad.subarray(0, 13), Buffer.from(meta, 'latin1')]);
    broken.writeUInt32LE(broken.length - 4, 0);
    broken.writeUInt32LE(meta.length, 9);
    expect(() => decodeAll(broken)).toThrow(/channel protocol error: malformed fields meta/);
    const notANumber = Buffer.concat([bad.subarray(0, 13), Buffer.from('ok\x000\x000', 'latin1')]);
    notANumber.writeUInt32LE(notANumber.length - 4, 0);
    notANumber.writeUInt32LE(notANumber.length - 13, 9);
    expect(() => decodeAll(notANumber)).toThrow(/malformed fields meta/);
  });
});

describe('the older forms still decode', () => {
  it('reads object and tuple metas as the same objects', () => {
    const bytes = Buffer.concat([
      ...encodeFrame(FrameType.INVOKE, 1, invokeMeta, undefined, false),
      ...encodeFrame(FrameType.INVOKE, 2, invokeMeta, undefined, true),
      ...encodeFrame(FrameType.RESPONSE, 3, responseMeta),
    ]);
    const frames = decodeAll(bytes);
    expect(frames.map((f) => [f.id, f.tuple, f.meta])).toEqual([
      [1, false, invokeMeta],
      [2, true, invokeMeta],
      [3, true, responseMeta],
    ]);
  });
});

describe('Outbox', () => {
  it('schedules one flush per batch and writes a batch of string frames as one string', () => {
    const { outbox, calls, bytes, scheduled } = collecting();
    expect(outbox.empty).toBe(true);
    for (let id = 1; id <= 3; id++) outbox.addFields(FrameType.INVOKE, id, invokeFields(invokeMeta)!, Buffer.from(`body ${id}`));
    expect(scheduled()).toBe(1);
    outbox.flush();
    expect(calls).toEqual(['string:latin1']);
    expect(decodeAll(bytes()).map((f) => [f.id, f.payload.toString()])).toEqual([
      [1, 'body 1'],
      [2, 'body 2'],
      [3, 'body 3'],
    ]);
    // Empty again: the next frame schedules the next flush.
    outbox.flush();
    expect(calls).toHaveLength(1);
    outbox.add(FrameType.SHUTDOWN, 0, {});
    expect(scheduled()).toBe(2);
  });

  it('keeps the order of string and buffer frames when they are mixed', () => {
    const { outbox, bytes } = collecting();
    outbox.addFields(FrameType.RESPONSE, 1, responseFields(responseMeta)!, Buffer.from('one'));
    outbox.add(FrameType.ERROR, 2, { code: 'FUNCTION_ERROR', message: 'boom', handlerMs: 1, rssBytes: 2 });
    outbox.addFields(FrameType.RESPONSE, 3, responseFields(responseMeta)!, Buffer.alloc(2000, 1));
    outbox.add(FrameType.RESPONSE, 4, responseMeta, Buffer.from('four'));
    outbox.flush();
    expect(decodeAll(bytes()).map((f) => [f.id, f.type, f.payload.length])).toEqual([
      [1, FrameType.RESPONSE, 3],
      [2, FrameType.ERROR, 0],
      [3, FrameType.RESPONSE, 2000],
      [4, FrameType.RESPONSE, 4],
    ]);
  });

  it('copies a batch of small buffers into one write', () => {
    const { outbox, calls, bytes } = collecting();
    outbox.add(FrameType.INVOKE, 1, invokeMeta, Buffer.from('a'));
    outbox.add(FrameType.INVOKE, 2, invokeMeta, Buffer.from('b'), true);
    outbox.flush();
    expect(calls).toEqual(['buffer']);
    expect(decodeAll(bytes()).map((f) => f.payload.toString())).toEqual(['a', 'b']);
  });

  it('writes nothing while there is no channel, and keeps nothing for it', () => {
    let scheduled = 0;
    const outbox = new Outbox(() => undefined, () => scheduled++);
    outbox.addFields(FrameType.INVOKE, 1, invokeFields(invokeMeta)!);
    expect(() => outbox.flush()).not.toThrow();
    expect(outbox.empty).toBe(true);
    outbox.addFields(FrameType.INVOKE, 2, invokeFields(invokeMeta)!);
    expect(scheduled).toBe(2);
  });
});
