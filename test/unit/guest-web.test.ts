// Unit tests of the guest's lightweight Request and Response (microvm/guest/web.ts): each behaves
// like the real undici object it stands in for, compared side by side with the real one, through
// the fetch adapter, through fetch() and through a Hono app.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InvokeMeta } from '../../core/protocol.js';
import { buildRequest, makeFetchAdapter, requestUrl, responseToGuest } from '../../microvm/guest/adapters.js';
import { LightRequest, LightResponse, nativeWebClasses } from '../../microvm/guest/web.js';

function meta(over: Partial<InvokeMeta> = {}): InvokeMeta {
  return {
    requestId: 'req-1',
    method: 'GET',
    path: '/items/7',
    query: 'a=1&b=two',
    headers: ['host', 'fn.example.com:8080', 'user-agent', 'curl/8.5', 'x-multi', 'one', 'x-multi', 'two'],
    timeoutMs: 3000,
    sourceIp: '10.0.0.9',
    ...over,
  };
}

// The globals are ours once adapters.ts is loaded; the real classes are their parents once linked
// (before that, see guest-web-unlinked.test.ts).
const { Request: NativeRequest, Response: NativeResponse } = nativeWebClasses()!;

/** The same request as a real undici Request, built the way the adapter always built it. */
function nativeRequest(m: InvokeMeta, body: Buffer): Request {
  const headers = new Headers();
  for (let i = 0; i < m.headers.length; i += 2) headers.append(m.headers[i]!, m.headers[i + 1]!);
  const method = m.method.toUpperCase();
  const init: RequestInit = { method, headers };
  if (method !== 'GET' && method !== 'HEAD' && body.length > 0) init.body = body as Uint8Array<ArrayBuffer>;
  return new NativeRequest(requestUrl(m), init);
}

const BINARY = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

describe('globals', () => {
  it('replaces Request and Response with subclasses of the real ones that recognise every instance', () => {
    expect(NativeRequest).not.toBe(Request);
    expect(NativeResponse).not.toBe(Response);
    expect(new NativeRequest('http://a/')).toBeInstanceOf(Request);
    expect(new NativeResponse('x')).toBeInstanceOf(Response);
    expect(Request.name).toBe('Request');
    expect(Response.name).toBe('Response');
    const r = new Request('http://a/b', { method: 'POST', body: 'x' });
    expect(r).toBeInstanceOf(NativeRequest);
    expect(LightRequest.isLight(r)).toBe(false);
  });
});

describe('LightRequest', () => {
  it('is what the fetch adapter hands out, and a Request in every visible way', () => {
    const req = buildRequest(meta(), Buffer.alloc(0));
    expect(LightRequest.isLight(req)).toBe(true);
    expect(req).toBeInstanceOf(Request);
    expect(req).toBeInstanceOf(NativeRequest);
    expect(req.constructor).toBe(Request);
    expect(Object.prototype.toString.call(req)).toBe('[object Request]');
    expect(JSON.stringify(req)).toBe('{}');
    expect(Object.keys(req)).toEqual([]);
  });

  it('has the url, method and headers of the real one', () => {
    for (const m of [
      meta(),
      meta({ method: 'post' }),
      meta({ headers: ['host', 'FN.Example.COM:80'] }),
      meta({ headers: ['host', '[::1]:8080'], path: '/a/./b/../c', query: '' }),
      meta({ path: '/with space/%2E%2e/x', query: "q='quoted' <b>" }),
      meta({ path: '/ünïcode', query: 'ü=1' }),
      meta({ headers: ['host', 'bad host/evil'] }),
      meta({ headers: [] }),
    ]) {
      const light = buildRequest(m, Buffer.from('x'));
      const real = nativeRequest(m, Buffer.from('x'));
      expect(light.url).toBe(real.url);
      expect(light.method).toBe(real.method);
      expect([...light.headers]).toEqual([...real.headers]);
    }
    expect(buildRequest(meta(), Buffer.alloc(0)).headers.get('X-Multi')).toBe('one, two');
  });

  it('has the url of the real one for every character in the path and the query', () => {
    const differ: string[] = [];
    for (let c = 0x20; c < 0x800; c++) {
      const ch = String.fromCharCode(c);
      for (const [path, query] of [[`/a${ch}b`, ''], ['/x', `a${ch}b`], [`/a/${ch}${ch}/b`, `${ch}`]] as const) {
        const m = meta({ path, query, headers: ['host', 'Example.COM:80'] });
        const light = buildRequest(m, Buffer.alloc(0)).url;
        if (light !== nativeRequest(m, Buffer.alloc(0)).url) differ.push(`${path}?${query}`);
      }
    }
    expect(differ).toEqual([]);
  });

  it('reads the body as text, JSON, bytes or ArrayBuffer, once', async () => {
    const m = meta({ method: 'POST', headers: ['host', 'a', 'content-type', 'application/json'] });
    const json = buildRequest(m, Buffer.from('{"a":[1,"é"]}'));
    expect(json.bodyUsed).toBe(false);
    expect(await json.json()).toEqual({ a: [1, 'é'] });
    expect(json.bodyUsed).toBe(true);
    const again = await json.text().catch((e: unknown) => e);
    const realUsed = nativeRequest(m, Buffer.from('{}'));
    await realUsed.text();
    const realAgain = await realUsed.text().catch((e: unknown) => e);
    expect(again).toBeInstanceOf(TypeError);
    expect((again as Error).message).toBe((realAgain as Error).message);
    expect(await buildRequest(m, Buffer.from('\uFEFFbom')).text()).toBe('bom');
    await expect(buildRequest(m, Buffer.from('{not json')).json()).rejects.toBeInstanceOf(SyntaxError);
  });

  it('keeps binary bodies intact and hands out copies', async () => {
    const m = meta({ method: 'PUT', headers: ['content-type', 'application/octet-stream'] });
    const body = Buffer.from(BINARY);
    const ab = await buildRequest(m, body).arrayBuffer();
    expect(Buffer.from(ab)).toEqual(BINARY);
    new Uint8Array(ab)[0] = 99;
    const bytes = await buildRequest(m, body).bytes();
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(bytes)).toEqual(BINARY);
    expect(body).toEqual(BINARY);
    const blob = await buildRequest(m, body).blob();
    expect(blob.type).toBe('application/octet-stream');
    expect(Buffer.from(await blob.arrayBuffer())).toEqual(BINARY);
    const stream = buildRequest(m, body).body!;
    const chunks: Uint8Array[] = [];
    for await (const c of stream) chunks.push(c);
    expect(Buffer.concat(chunks)).toEqual(BINARY);
  });

  it('has no body for GET and HEAD, and for empty bodies, like the real one', async () => {
    const get = buildRequest(meta(), Buffer.from('ignored'));
    expect(get.body).toBeNull();
    expect(await get.text()).toBe('');
    expect(await get.text()).toBe('');
    expect(get.bodyUsed).toBe(false);
    expect(buildRequest(meta({ method: 'HEAD' }), Buffer.from('x')).body).toBeNull();
    expect(buildRequest(meta({ method: 'POST' }), Buffer.alloc(0)).body).toBeNull();
    expect((await buildRequest(meta(), Buffer.alloc(0)).arrayBuffer()).byteLength).toBe(0);
  });

  it('parses form data, urlencoded and multipart', async () => {
    const urlencoded = buildRequest(meta({ method: 'POST', headers: ['content-type', 'application/x-www-form-urlencoded'] }), Buffer.from('a=1&b=x+y'));
    const f = await urlencoded.formData();
    expect(f.get('a')).toBe('1');
    expect(f.get('b')).toBe('x y');
    const form = new FormData();
    form.append('name', 'fn');
    form.append('file', new Blob([BINARY], { type: 'application/octet-stream' }), 'f.bin');
    const encoded = new NativeRequest('http://x/', { method: 'POST', body: form });
    const type = encoded.headers.get('content-type')!;
    const multipart = buildRequest(meta({ method: 'POST', headers: ['content-type', type] }), Buffer.from(await encoded.arrayBuffer()));
    const parsed = await multipart.formData();
    expect(parsed.get('name')).toBe('fn');
    expect(Buffer.from(await (parsed.get('file') as Blob).arrayBuffer())).toEqual(BINARY);
  });

  it('has a signal, the same one every time, never aborted', () => {
    const req = buildRequest(meta(), Buffer.alloc(0));
    expect(req.signal).toBeInstanceOf(AbortSignal);
    expect(req.signal).toBe(req.signal);
    expect(req.signal.aborted).toBe(false);
    expect(req.cache).toBe('default');
    expect(req.mode).toBe('cors');
    expect(req.redirect).toBe('follow');
  });

  it('makes a new Request, a clone, and refuses to copy a used one, as the real one does', async () => {
    const m = meta({ method: 'POST', headers: ['host', 'a.b', 'x-a', '1'] });
    const copy = new Request(buildRequest(m, Buffer.from('payload')));
    expect(copy.method).toBe('POST');
    expect(copy.url).toBe('http://a.b/items/7?a=1&b=two');
    expect(copy.headers.get('x-a')).toBe('1');
    expect(await copy.text()).toBe('payload');
    const changed = new Request(buildRequest(m, Buffer.from('payload')), { method: 'PUT', body: 'other', headers: { 'x-b': '2' } });
    expect(changed.method).toBe('PUT');
    expect(changed.headers.get('x-b')).toBe('2');
    expect(await changed.text()).toBe('other');

    const original = buildRequest(m, Buffer.from('twice'));
    const clone = original.clone();
    expect(clone).toBeInstanceOf(Request);
    expect(await clone.text()).toBe('twice');
    expect(await original.text()).toBe('twice');

    const used = buildRequest(m, Buffer.from('x'));
    await used.text();
    const realUsed = nativeRequest(m, Buffer.from('x'));
    await realUsed.text();
    const expected = (() => {
      try {
        new NativeRequest(realUsed);
      } catch (e) {
        return (e as Error).message;
      }
      return 'no error';
    })();
    expect(() => new Request(used)).toThrow(expected);
    expect(() => used.clone()).toThrow(TypeError);
  });

  it('keeps header changes made before and after the real Request exists', async () => {
    const req = buildRequest(meta({ method: 'POST', headers: ['content-type', 'text/plain'] }), Buffer.from('x'));
    req.headers.set('x-before', '1');
    const clone = req.clone();
    expect(clone.headers.get('x-before')).toBe('1');
    req.headers.set('x-after', '2');
    expect(req.headers.get('x-after')).toBe('2');
    expect(req.clone().headers.get('x-after')).toBe('2');
  });

  it('looks like a real Request when inspected', () => {
    const light = inspect(buildRequest(meta(), Buffer.alloc(0)));
    const real = inspect(nativeRequest(meta(), Buffer.alloc(0)));
    expect(light).toBe(real);
  });
});

describe('fetch() with a LightRequest', () => {
  let server: http.Server;
  let base: string;
  const seen: { method: string; url: string; headers: http.IncomingHttpHeaders; body: Buffer }[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('forwards method, path, headers and a binary body', async () => {
    const req = buildRequest(meta({ method: 'POST', path: '/up', query: 'x=1', headers: ['host', base, 'x-fwd', 'yes'] }), Buffer.from(BINARY));
    const res = await fetch(req);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok');
    const last = seen.at(-1)!;
    expect(last).toMatchObject({ method: 'POST', url: '/up?x=1' });
    expect(last.headers['x-fwd']).toBe('yes');
    expect(last.body).toEqual(BINARY);
    // And a Request made from one, with fetch's init on top.
    await fetch(new Request(buildRequest(meta({ headers: ['host', base] }), Buffer.alloc(0))), { headers: { 'x-init': '1' } });
    expect(seen.at(-1)!.headers['x-init']).toBe('1');
  });
});

describe('LightResponse', () => {
  /** What the adapter sends for a response built by the real class from the same arguments. */
  const native = (body: ConstructorParameters<typeof Response>[0], init?: ResponseInit) => responseToGuest(new NativeResponse(body, init));

  it('is what `new Response` gives for simple bodies, and a Response in every visible way', () => {
    const res = new Response('hello', { status: 201, statusText: 'Made', headers: { 'X-A': '1' } });
    expect(LightResponse.isLight(res)).toBe(true);
    expect(res).toBeInstanceOf(Response);
    expect(res).toBeInstanceOf(NativeResponse);
    expect(res.constructor).toBe(Response);
    expect(Object.prototype.toString.call(res)).toBe('[object Response]');
    expect(res.status).toBe(201);
    expect(res.ok).toBe(true);
    expect(res.statusText).toBe('Made');
    expect(res.type).toBe('default');
    expect(res.url).toBe('');
    expect(res.redirected).toBe(false);
    expect(res.bodyUsed).toBe(false);
    expect(res.headers.get('x-a')).toBe('1');
    expect(res.headers.get('content-type')).toBe('text/plain;charset=UTF-8');
    expect(JSON.stringify(res)).toBe('{}');
  });

  it('sends exactly what the real Response would send', async () => {
    const headers = new Headers([['x-one', '1'], ['set-cookie', 'a=1; Path=/'], ['set-cookie', 'b=2']]);
    const cases: [ConstructorParameters<typeof Response>[0], ResponseInit | undefined][] = [
      ['hello', undefined],
      ['', undefined],
      [null, undefined],
      [undefined, { status: 204 }],
      ['body', { status: 202, headers }],
      ['x', { headers: { 'Content-Type': 'text/html', 'X-B': 'b', 'x-a': 'a' } }],
      ['x', { headers: { 'set-cookie': 'c=3', 'x-z': 'z' } }],
      [new Uint8Array(BINARY), undefined],
      [BINARY.buffer.slice(0), { status: 500, statusText: 'Oops' }],
      [new DataView(BINARY.buffer.slice(0), 10, 20), undefined],
      ['é ✓ 😀', { status: 404 }],
    ];
    for (const [body, init] of cases) {
      const light = new Response(body, init);
      expect(LightResponse.isLight(light)).toBe(true);
      const got = await responseToGuest(light);
      const want = await native(body, init);
      expect({ ...got, body: Buffer.from(got.body) }).toEqual({ ...want, body: Buffer.from(want.body) });
    }
  });

  it('copies a byte body when it is made, as the real one does', async () => {
    const bytes = new Uint8Array([1, 2, 3]);
    const res = new Response(bytes);
    bytes[0] = 9;
    expect([...(await responseToGuest(res)).body]).toEqual([1, 2, 3]);
  });

  it('is read back the standard way too: text, JSON, bytes, blob, clone', async () => {
    expect(await new Response('{"a":1}').json()).toEqual({ a: 1 });
    expect(await new Response('hi').text()).toBe('hi');
    expect(Buffer.from(await new Response(BINARY).arrayBuffer())).toEqual(BINARY);
    const blob = await new Response('x', { headers: { 'content-type': 'text/x' } }).blob();
    expect(blob.type).toBe('text/x');
    const res = new Response('twice');
    const clone = res.clone();
    expect(clone).toBeInstanceOf(Response);
    expect(await clone.text()).toBe('twice');
    expect(await res.text()).toBe('twice');
    expect(res.bodyUsed).toBe(true);
    await expect(responseToGuest(res)).rejects.toThrow();
  });

  it('keeps header changes, also after the real Response exists (a clone, a body read)', async () => {
    const res = new Response('body');
    res.headers.set('x-early', '1');
    const clone = res.clone();
    res.headers.set('etag', '"e1"');
    expect(clone.headers.get('x-early')).toBe('1');
    const got = await responseToGuest(res);
    expect(got.headers).toEqual(['content-type', 'text/plain;charset=UTF-8', 'etag', '"e1"', 'x-early', '1']);
    expect(Buffer.from(got.body).toString()).toBe('body');
  });

  it('is a real Response for anything else: streams, blobs, forms, odd or invalid inits', async () => {
    const stream = () =>
      new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode('str'));
          c.enqueue(new TextEncoder().encode('eam'));
          c.close();
        },
      });
    for (const r of [
      new Response(stream()),
      new Response(new Blob(['b'])),
      new Response(new URLSearchParams('a=1')),
      new Response('x', { status: 200.0 + 0, headers: [['x', 'y']] }),
      new Response('x', { headers: { 'x-n': ' padded ' } }),
    ]) {
      expect(r).toBeInstanceOf(Response);
      expect(r).toBeInstanceOf(NativeResponse);
    }
    expect(LightResponse.isLight(new Response(new Blob(['b'])))).toBe(false);
    expect(Buffer.from((await responseToGuest(new Response(stream()))).body).toString()).toBe('stream');
    expect((await responseToGuest(new Response('x', { headers: { 'x-n': ' padded ' } }))).headers).toContain('padded');
  });

  it('throws what the real Response throws, when it throws it', () => {
    const message = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        return `${(e as Error).constructor.name}: ${(e as Error).message}`;
      }
      return 'no error';
    };
    const bad: [unknown, unknown][] = [
      ['x', { status: 204 }],
      ['x', { status: 99 }],
      ['x', { status: 600 }],
      ['x', { statusText: 'bad\nline' }],
      ['x', { headers: { 'bad name': 'x' } }],
      ['x', { headers: { 'x-a': 'bad\r\nvalue' } }],
      ['x', { headers: { 'x-a': 'ĀĀ' } }],
      ['x', 'not an init'],
    ];
    for (const [body, init] of bad) {
      const want = message(() => new NativeResponse(body as BodyInit, init as ResponseInit));
      expect(want).not.toBe('no error');
      expect(message(() => new Response(body as BodyInit, init as ResponseInit))).toBe(want);
    }
  });

  it('has the statics: json (light), redirect and error (real)', async () => {
    const json = Response.json({ a: 1 }, { status: 201, headers: { 'x-a': '1' } });
    expect(LightResponse.isLight(json)).toBe(true);
    const got = await responseToGuest(json);
    const want = await responseToGuest(NativeResponse.json({ a: 1 }, { status: 201, headers: { 'x-a': '1' } }));
    expect({ ...got, body: Buffer.from(got.body) }).toEqual({ ...want, body: Buffer.from(want.body) });
    const typed = await responseToGuest(Response.json([1], { headers: { 'content-type': 'application/vnd.x+json' } }));
    expect(typed.headers).toEqual(['content-type', 'application/vnd.x+json']);
    expect(() => Response.json(undefined)).toThrow(TypeError);
    expect(() => Response.json(1n)).toThrow(TypeError);
    const redirect = Response.redirect('http://example.com/next', 301);
    expect(redirect).toBeInstanceOf(Response);
    expect(redirect.status).toBe(301);
    expect(redirect.headers.get('location')).toBe('http://example.com/next');
    expect(Response.error().type).toBe('error');
  });

  it('leaves subclasses of Response real ones, with their own prototype', async () => {
    class Mine extends Response {
      shout(): string {
        return 'hey';
      }
    }
    const mine = new Mine('sub', { status: 202 });
    expect(mine).toBeInstanceOf(Mine);
    expect(mine).toBeInstanceOf(Response);
    expect(mine.shout()).toBe('hey');
    expect(LightResponse.isLight(mine)).toBe(false);
    expect(await responseToGuest(mine)).toMatchObject({ status: 202 });
  });

  it('looks like a real Response when inspected', () => {
    for (const init of [undefined, { headers: { 'x-a': '1', 'Content-Type': 'text/x', b: '2' } }, { headers: new Headers([['z', '1'], ['set-cookie', 'c=1'], ['a', '2']]) }]) {
      expect(inspect(new Response('x', init))).toBe(inspect(new NativeResponse('x', init)));
    }
  });
});

describe('fetch adapter with light objects', () => {
  it('serves a handler that returns synchronously, asynchronously, or throws', async () => {
    const sync = makeFetchAdapter((req) => new Response(`${req.method} ${new URL(req.url).pathname}`), () => {});
    expect(Buffer.from((await sync(meta(), Buffer.alloc(0))).body).toString()).toBe('GET /items/7');
    const async = makeFetchAdapter(async (req) => Response.json({ got: await req.text() }), () => {});
    expect(JSON.parse(Buffer.from((await async(meta({ method: 'POST' }), Buffer.from('b'))).body).toString())).toEqual({ got: 'b' });
    const throws = makeFetchAdapter(() => {
      throw new Error('boom');
    }, () => {});
    await expect(throws(meta(), Buffer.alloc(0))).rejects.toThrow('boom');
    const wrong = makeFetchAdapter(() => 'not a response', () => {});
    await expect(wrong(meta(), Buffer.alloc(0))).rejects.toThrow('fetch handler returned string, expected a Response');
  });

  it('serves a Hono app: routes, params, JSON bodies, headers, cookies, 404', async () => {
    const app = new Hono();
    app.use('*', async (c, next) => {
      await next();
      c.header('x-mw', 'after');
    });
    app.get('/users/:id', (c) => c.json({ id: c.req.param('id'), q: c.req.query('q'), ua: c.req.header('user-agent') }));
    app.post('/echo', async (c) => c.json({ echo: await c.req.json<unknown>() }, 201));
    app.post('/bin', async (c) => c.body(new Uint8Array(await c.req.arrayBuffer()), 200, { 'content-type': 'application/octet-stream' }));
    app.get('/cookies', (c) => {
      c.header('set-cookie', 'a=1', { append: true });
      c.header('set-cookie', 'b=2', { append: true });
      return c.text('ok');
    });
    const adapter = makeFetchAdapter((req, env, ctx) => app.fetch(req, env, ctx as never), () => {});
    const call = async (m: Partial<InvokeMeta>, body = Buffer.alloc(0)) => {
      const r = await adapter(meta({ headers: ['host', 'fn.example.com', 'user-agent', 'ua/1', 'content-type', 'application/json'], ...m }), body);
      return { ...r, text: Buffer.from(r.body).toString(), header: (n: string) => r.headers[r.headers.indexOf(n) + 1] };
    };
    const user = await call({ path: '/users/2', query: 'q=x' });
    expect(user.status).toBe(200);
    expect(JSON.parse(user.text)).toEqual({ id: '2', q: 'x', ua: 'ua/1' });
    expect(user.header('x-mw')).toBe('after');
    const echo = await call({ method: 'POST', path: '/echo', query: '' }, Buffer.from('{"a":1}'));
    expect(echo.status).toBe(201);
    expect(JSON.parse(echo.text)).toEqual({ echo: { a: 1 } });
    const bin = await call({ method: 'POST', path: '/bin', query: '' }, BINARY);
    expect(Buffer.from(bin.body)).toEqual(BINARY);
    const cookies = await call({ path: '/cookies', query: '' });
    expect(cookies.headers.filter((_, i) => cookies.headers[i - 1] === 'set-cookie')).toEqual(['a=1', 'b=2']);
    expect((await call({ path: '/nope', query: '' })).status).toBe(404);
  });
});
