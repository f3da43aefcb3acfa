// Unit tests of the guest's pieces that need no process: the Lambda event and result mapping, the
// fetch adapter, the console line format and its parser, and the lifecycle table.
import { describe, expect, it } from 'vitest';
import { FnError } from '../../core/errors.js';
import type { InvokeMeta } from '../../core/protocol.js';
import {
  buildLambdaContext,
  buildLambdaEvent,
  buildRequest,
  lambdaTime,
  makeFetchAdapter,
  makeLambdaAdapter,
  mapLambdaResult,
  requestUrl,
  responseToGuest,
  type LambdaEvent,
  type LambdaHandler,
} from '../../microvm/guest/adapters.js';
import { formatConsoleLine, parseConsoleLine } from '../../microvm/guest/console.js';
import { Lifecycle, TRANSITIONS } from '../../microvm/state.js';
import type { MicroVmState } from '../../microvm/types.js';

function meta(over: Partial<InvokeMeta> = {}): InvokeMeta {
  return {
    requestId: 'req-1',
    method: 'GET',
    path: '/items/7',
    query: '',
    headers: ['host', 'fn.example.com:8080', 'user-agent', 'curl/8.5'],
    timeoutMs: 3000,
    sourceIp: '10.0.0.9',
    ...over,
  };
}

const identity = { functionName: 'hello', functionVersion: '3', memoryMb: 256, instanceId: 'vm-hello-1' };
const EPOCH = Date.UTC(2026, 10, 27, 3, 4, 5, 678);

describe('Lambda event (payload format 2.0)', () => {
  it('formats requestContext.time like Lambda', () => {
    expect(lambdaTime(EPOCH)).toBe('27/Nov/2026:03:04:05 +0000');
    expect(lambdaTime(Date.UTC(2026, 0, 2, 13, 0, 9))).toBe('02/Jan/2026:13:00:09 +0000');
  });

  it('carries path, query, headers, cookies and the request context', () => {
    const event = buildLambdaEvent(
      meta({
        method: 'post',
        query: 'a=1&b=x%20y&a=2&c=d+e',
        headers: [
          'host', 'fn.example.com:8080',
          'user-agent', 'curl/8.5',
          'x-multi', 'one',
          'X-Multi', 'two',
          'cookie', 'sid=abc; theme=dark',
          'content-type', 'application/json',
        ],
      }),
      Buffer.from('{"name":"fn"}'),
      EPOCH,
    );
    expect(event).toMatchObject({
      version: '2.0',
      routeKey: '$default',
      rawPath: '/items/7',
      rawQueryString: 'a=1&b=x%20y&a=2&c=d+e',
      cookies: ['sid=abc', 'theme=dark'],
      queryStringParameters: { a: '1,2', b: 'x y', c: 'd e' },
      body: '{"name":"fn"}',
      isBase64Encoded: false,
      requestContext: {
        accountId: 'anonymous',
        apiId: 'fnctl',
        domainName: 'fn.example.com:8080',
        domainPrefix: 'fn',
        http: { method: 'POST', path: '/items/7', protocol: 'HTTP/1.1', sourceIp: '10.0.0.9', userAgent: 'curl/8.5' },
        requestId: 'req-1',
        routeKey: '$default',
        stage: '$default',
        time: '27/Nov/2026:03:04:05 +0000',
        timeEpoch: EPOCH,
      },
    });
    expect(event.headers).toEqual({
      host: 'fn.example.com:8080',
      'user-agent': 'curl/8.5',
      'x-multi': 'one,two',
      'content-type': 'application/json',
    });
  });

  it('omits cookies, query parameters and body when there are none', () => {
    const event = buildLambdaEvent(meta(), Buffer.alloc(0), EPOCH);
    expect(event).not.toHaveProperty('cookies');
    expect(event).not.toHaveProperty('queryStringParameters');
    expect(event).not.toHaveProperty('body');
    expect(event.isBase64Encoded).toBe(false);
  });

  it('base64-encodes binary bodies and text bodies that are not valid UTF-8', () => {
    const bytes = Buffer.from([0, 1, 2, 250, 255]);
    const bin = buildLambdaEvent(meta({ headers: ['content-type', 'application/octet-stream'] }), bytes, EPOCH);
    expect(bin).toMatchObject({ body: bytes.toString('base64'), isBase64Encoded: true });
    const bad = buildLambdaEvent(meta({ headers: ['content-type', 'text/plain'] }), Buffer.from([0xc3, 0x28]), EPOCH);
    expect(bad.isBase64Encoded).toBe(true);
    const untyped = buildLambdaEvent(meta({ headers: [] }), Buffer.from('hi'), EPOCH);
    expect(untyped.isBase64Encoded).toBe(true);
    for (const type of ['text/html; charset=utf-8', 'application/xml', 'application/x-www-form-urlencoded', 'application/javascript', 'application/vnd.api+json']) {
      const ev = buildLambdaEvent(meta({ headers: ['content-type', type] }), Buffer.from('héllo'), EPOCH);
      expect(ev, type).toMatchObject({ body: 'héllo', isBase64Encoded: false });
    }
  });

  it('builds a Lambda-shaped context', () => {
    const ctx = buildLambdaContext(meta(), identity, Date.now() + 3000, () => {});
    expect(ctx).toMatchObject({
      awsRequestId: 'req-1',
      functionName: 'hello',
      functionVersion: '3',
      memoryLimitInMB: '256',
      invokedFunctionArn: 'arn:fnctl:lambda:local:000000000000:function:hello',
      logGroupName: '/fnctl/functions/hello',
      callbackWaitsForEmptyEventLoop: true,
    });
    expect(ctx.logStreamName).toMatch(/^\d{4}\/\d\d\/\d\d\/\[3\]vm-hello-1$/);
    expect(ctx.getRemainingTimeInMillis()).toBeGreaterThan(0);
    expect(ctx.getRemainingTimeInMillis()).toBeLessThanOrEqual(3000);
  });
});

describe('Lambda result mapping', () => {
  it('maps a response object: status, headers, cookies, default content type', () => {
    const r = mapLambdaResult({ statusCode: 201, headers: { 'X-Id': 7 }, cookies: ['a=1', 'b=2'], body: 'made', multiValueHeaders: { x: ['y'] } });
    expect(r.status).toBe(201);
    expect(r.headers).toEqual(['x-id', '7', 'set-cookie', 'a=1', 'set-cookie', 'b=2', 'content-type', 'application/json']);
    expect(Buffer.from(r.body).toString()).toBe('made');
  });

  it('keeps a given content type and decodes base64 bodies', () => {
    const r = mapLambdaResult({ statusCode: 200, headers: { 'Content-Type': 'image/png' }, body: Buffer.from([1, 2, 255]).toString('base64'), isBase64Encoded: true });
    expect(r.headers).toEqual(['content-type', 'image/png']);
    expect([...r.body]).toEqual([1, 2, 255]);
  });

  it('adds no content type to an empty response', () => {
    expect(mapLambdaResult({ statusCode: 204 })).toEqual({ status: 204, headers: [], body: new Uint8Array(0) });
  });

  it('sends any other value as JSON with 200, undefined as null', () => {
    for (const [value, json] of [
      [{ ok: true }, '{"ok":true}'],
      [[1, 2], '[1,2]'],
      [42, '42'],
      ['hi', '"hi"'],
      [null, 'null'],
      [undefined, 'null'],
      [{ statusCode: '200' }, '{"statusCode":"200"}'],
    ] as const) {
      const r = mapLambdaResult(value);
      expect(r.status).toBe(200);
      expect(r.headers).toEqual(['content-type', 'application/json']);
      expect(Buffer.from(r.body).toString()).toBe(json);
    }
  });

  it('refuses a status that is not HTTP', () => {
    expect(() => mapLambdaResult({ statusCode: 42 })).toThrow(FnError);
    expect(() => mapLambdaResult({ statusCode: 42 })).toThrow(/statusCode 42/);
  });
});

describe('Lambda adapter', () => {
  it('serves async handlers', async () => {
    let seen: LambdaEvent | undefined;
    const adapter = makeLambdaAdapter(async (event) => {
      seen = event;
      return { statusCode: 200, body: 'ok' };
    }, identity);
    const r = await adapter(meta({ query: 'q=1' }), Buffer.alloc(0));
    expect(r.status).toBe(200);
    expect(seen?.queryStringParameters).toEqual({ q: '1' });
  });

  it('serves callback handlers and their errors', async () => {
    const ok = makeLambdaAdapter((_e, _c, cb) => setTimeout(() => cb!(null, { done: 1 }), 1), identity);
    expect(Buffer.from((await ok(meta(), Buffer.alloc(0))).body).toString()).toBe('{"done":1}');
    const bad = makeLambdaAdapter((_e, _c, cb) => cb!(new Error('nope')), identity);
    await expect(bad(meta(), Buffer.alloc(0))).rejects.toThrow('nope');
  });

  it('completes through the context methods, called on the context or taken off it', async () => {
    const body = async (handler: LambdaHandler) => Buffer.from((await makeLambdaAdapter(handler, identity)(meta(), Buffer.alloc(0))).body).toString();
    // A callback handler that never calls back: only the context completes it.
    expect(await body((_e, context, _cb) => context.succeed({ via: 'succeed' }))).toBe('{"via":"succeed"}');
    expect(await body((_e, context, _cb) => setTimeout(() => context.done(null, { via: 'done' }), 1))).toBe('{"via":"done"}');
    expect(await body((_e, context, _cb) => {
      const { succeed } = context;
      succeed('detached');
    })).toBe('"detached"');
    await expect(body((_e, context, _cb) => context.fail(new Error('failed')))).rejects.toThrow('failed');
    await expect(body((_e, context, _cb) => context.fail())).rejects.toThrow('context.fail called');
  });

  it('passes on what a handler throws, sync or async', async () => {
    await expect(makeLambdaAdapter(() => { throw new Error('sync'); }, identity)(meta(), Buffer.alloc(0))).rejects.toThrow('sync');
    await expect(makeLambdaAdapter(async () => { throw new Error('async'); }, identity)(meta(), Buffer.alloc(0))).rejects.toThrow('async');
  });
});

describe('fetch adapter', () => {
  it('builds the URL from the Host header, falling back to localhost', () => {
    expect(requestUrl(meta({ query: 'a=1' }))).toBe('http://fn.example.com:8080/items/7?a=1');
    expect(requestUrl(meta({ headers: [] }))).toBe('http://localhost/items/7');
    expect(requestUrl(meta({ headers: ['host', 'evil.com/path?x'] }))).toBe('http://localhost/items/7');
  });

  it('builds a real Request with method, headers and body', async () => {
    const req = buildRequest(meta({ method: 'PUT', headers: ['host', 'a.b', 'x-a', '1', 'x-a', '2', 'content-type', 'text/plain'] }), Buffer.from('payload'));
    expect(req).toBeInstanceOf(Request);
    expect(req.method).toBe('PUT');
    expect(req.headers.get('x-a')).toBe('1, 2');
    expect(await req.text()).toBe('payload');
    expect(buildRequest(meta({ method: 'HEAD' }), Buffer.from('ignored')).body).toBeNull();
  });

  it('reads status, headers (several set-cookie) and body of the Response', async () => {
    const headers = new Headers([['x-one', '1'], ['set-cookie', 'a=1; Path=/'], ['set-cookie', 'b=2']]);
    const r = await responseToGuest(new Response('body', { status: 202, headers }));
    expect(r.status).toBe(202);
    expect(r.headers).toEqual(['content-type', 'text/plain;charset=UTF-8', 'x-one', '1', 'set-cookie', 'a=1; Path=/', 'set-cookie', 'b=2']);
    expect(Buffer.from(r.body).toString()).toBe('body');
  });

  it('reads every kind of body: string, bytes, stream, JSON, none', async () => {
    const text = async (res: Response): Promise<string> => Buffer.from((await responseToGuest(res)).body).toString();
    expect(await text(new Response(new Uint8Array([104, 105])))).toBe('hi');
    expect(await text(Response.json({ a: 1 }))).toBe('{"a":1}');
    const stream = new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('str')); c.enqueue(new TextEncoder().encode('eam')); c.close(); } });
    expect(await text(new Response(stream))).toBe('stream');
    expect(await text(new Response(null, { status: 204 }))).toBe('');
    const partly = new Response('used');
    await partly.text();
    await expect(responseToGuest(partly)).rejects.toThrow();
  });

  it('rejects anything that is not a Response with FUNCTION_ERROR', async () => {
    for (const [value, what] of [[undefined, 'undefined'], [null, 'null'], ['hi', 'string'], [{ status: 200 }, 'an object (Object)']] as const) {
      const err = await responseToGuest(value).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FnError);
      expect((err as FnError).code).toBe('FUNCTION_ERROR');
      expect((err as FnError).message).toBe(`fetch handler returned ${what}, expected a Response`);
    }
  });

  it('calls fetch(request, env, ctx) with a copy of the env and a working waitUntil', async () => {
    const tracked: Promise<unknown>[] = [];
    process.env.FNCTL_TEST_VAR = 'v1';
    const adapter = makeFetchAdapter(async (request, env, ctx) => {
      ctx.waitUntil(Promise.resolve('later'));
      ctx.passThroughOnException();
      env.FNCTL_TEST_VAR = 'changed';
      return new Response(`${request.method} ${new URL(request.url).pathname} ${ctx.requestId} ${process.env.FNCTL_TEST_VAR}`);
    }, (p) => tracked.push(p));
    const r = await adapter(meta(), Buffer.alloc(0));
    expect(Buffer.from(r.body).toString()).toBe('GET /items/7 req-1 v1');
    expect(tracked).toHaveLength(1);
    expect(process.env.FNCTL_TEST_VAR).toBe('v1');
    delete process.env.FNCTL_TEST_VAR;
  });
});

describe('console lines', () => {
  it('writes one tab-separated line with newlines as carriage returns, and parses it back', () => {
    const time = new Date(EPOCH);
    const line = formatConsoleLine(time, 'req-9', 'ERROR', 'Error: boom\n    at f (x.js:1:1)');
    expect(line).toBe('2026-11-27T03:04:05.678Z\treq-9\tERROR\tError: boom\r    at f (x.js:1:1)\n');
    expect(parseConsoleLine(line.slice(0, -1))).toEqual({ requestId: 'req-9', level: 'ERROR', message: 'Error: boom\n    at f (x.js:1:1)' });
  });

  it('leaves out the request id outside an invocation', () => {
    const line = formatConsoleLine(new Date(EPOCH), undefined, 'INFO', 'init done');
    expect(line.split('\t')[1]).toBe('undefined');
    expect(parseConsoleLine(line.trimEnd())).toEqual({ level: 'INFO', message: 'init done' });
  });

  it('passes untagged lines through', () => {
    for (const raw of ['plain output', 'FATAL ERROR: Reached heap limit', 'a\tb\tc\td', '2026-11-27T03:04:05.678Z\tr\tNOTALEVEL\tx']) {
      expect(parseConsoleLine(raw)).toEqual({ message: raw });
    }
  });
});

describe('lifecycle', () => {
  const all = Object.keys(TRANSITIONS) as MicroVmState[];

  function at(path: MicroVmState[]): Lifecycle {
    const l = new Lifecycle('vm-x');
    for (const s of path) l.to(s);
    return l;
  }

  it('follows the allowed paths and reports every change', () => {
    const l = new Lifecycle('vm-x');
    const seen: string[] = [];
    const off = l.onChange((next, prev) => seen.push(`${prev}>${next}`));
    for (const s of ['booting', 'idle', 'busy', 'idle', 'paused', 'idle', 'stopping', 'stopped'] as const) l.to(s);
    off();
    expect(seen).toEqual(['created>booting', 'booting>idle', 'idle>busy', 'busy>idle', 'idle>paused', 'paused>idle', 'idle>stopping', 'stopping>stopped']);
    expect(at(['restoring', 'idle', 'busy', 'failed']).state).toBe('failed');
  });

  it('lets every non-final state stop, and every running one fail', () => {
    for (const s of all) {
      const final = s === 'stopped' || s === 'failed';
      expect(TRANSITIONS[s].includes('stopping'), s).toBe(!final && s !== 'stopping');
      if (['booting', 'restoring', 'idle', 'busy', 'paused'].includes(s)) expect(TRANSITIONS[s]).toContain('failed');
    }
    expect(TRANSITIONS.stopped).toEqual([]);
    expect(TRANSITIONS.failed).toEqual([]);
  });

  it('throws NOT_ALLOWED_IN_STATE on an illegal move', () => {
    const l = at(['booting', 'idle', 'stopping', 'stopped']);
    expect(l.can('busy')).toBe(false);
    let err: unknown;
    try {
      l.to('busy');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FnError);
    expect((err as FnError).code).toBe('NOT_ALLOWED_IN_STATE');
    expect((err as FnError).message).toBe('microVM vm-x: cannot go from stopped to busy');
    expect(() => at([]).to('idle')).toThrow('cannot go from created to idle');
    expect(() => at(['booting', 'idle']).to('paused')).not.toThrow();
    expect(() => at(['booting', 'idle', 'busy']).to('paused')).toThrow();
  });
});
