// The two handler styles a function can export, each turned into one shape the guest runtime
// serves: (invoke meta, body) → {status, headers, body}. Web-standard `fetch(request, env, ctx)`
// gets a real Request; AWS Lambda `handler(event, context)` gets a function URL / API Gateway HTTP
// API payload format 2.0 event, and its result is mapped the way Lambda function URLs map it.
import { isUtf8 } from 'node:buffer';
import type { FlatHeaders, InvokeMeta } from '../../core/protocol.js';
import { FnError } from '../../core/errors.js';

export interface GuestResponse {
  status: number;
  headers: FlatHeaders;
  body: Uint8Array;
}

export type Adapter = (meta: InvokeMeta, body: Buffer) => Promise<GuestResponse>;

/** Who the guest is, from the platform env vars the host sets (read after a restore, not before). */
export interface GuestIdentity {
  functionName: string;
  functionVersion: string;
  memoryMb: number;
  instanceId: string;
}

export function identityFromEnv(env: NodeJS.ProcessEnv): GuestIdentity {
  return {
    functionName: env.FNCTL_FUNCTION_NAME ?? 'function',
    functionVersion: env.FNCTL_FUNCTION_VERSION ?? '$LATEST',
    memoryMb: Number(env.FNCTL_FUNCTION_MEMORY_MB ?? 128),
    instanceId: env.FNCTL_INSTANCE_ID ?? `pid-${process.pid}`,
  };
}

const EMPTY = new Uint8Array(0);

export function headerValue(headers: FlatHeaders, name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}

/** What a value is, for "returned X, expected Y" messages. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  const ctor = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof ctor === 'string' && ctor ? `an object (${ctor})` : 'an object';
}

function checkStatus(status: unknown, what: string): number {
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) {
    throw new FnError('FUNCTION_ERROR', `${what} ${JSON.stringify(status) ?? String(status)} is not an HTTP status (an integer in [100, 599])`);
  }
  return status;
}

// ---------------------------------------------------------------------------------------------
// fetch style

export interface FetchContext {
  waitUntil(promise: unknown): void;
  passThroughOnException(): void;
  requestId: string;
}

export type FetchHandler = (request: Request, env: Record<string, string | undefined>, ctx: FetchContext) => unknown;

// A Host header is only trusted into the URL when it looks like a host, so a hostile one cannot
// make Request construction throw or smuggle a path.
const HOST_RE = /^[A-Za-z0-9.\-_~]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

export function requestUrl(meta: InvokeMeta): string {
  const host = headerValue(meta.headers, 'host');
  const authority = host && HOST_RE.test(host) ? host : 'localhost';
  const path = meta.path.startsWith('/') ? meta.path : `/${meta.path}`;
  return meta.query ? `http://${authority}${path}?${meta.query}` : `http://${authority}${path}`;
}

export function buildRequest(meta: InvokeMeta, body: Buffer): Request {
  const headers = new Headers();
  const h = meta.headers;
  for (let i = 0; i < h.length; i += 2) headers.append(h[i]!, h[i + 1]!);
  const method = meta.method.toUpperCase();
  const init: RequestInit = { method, headers };
  if (method !== 'GET' && method !== 'HEAD' && body.length > 0) init.body = body as Uint8Array<ArrayBuffer>;
  return new Request(requestUrl(meta), init);
}

function isResponse(value: unknown): value is Response {
  if (value instanceof Response) return true;
  // A Response from a bundled polyfill is still a Response to us if it quacks like one.
  const v = value as Partial<Response> | null;
  return (
    typeof v === 'object' && v !== null && typeof v.status === 'number' && typeof v.arrayBuffer === 'function' &&
    typeof (v.headers as Headers | undefined)?.forEach === 'function'
  );
}

export async function responseToGuest(value: unknown): Promise<GuestResponse> {
  if (!isResponse(value)) {
    throw new FnError('FUNCTION_ERROR', `fetch handler returned ${describeValue(value)}, expected a Response`);
  }
  const status = checkStatus(value.status, 'fetch handler returned a Response with status');
  const headers: string[] = [];
  value.headers.forEach((v, k) => {
    if (k !== 'set-cookie') headers.push(k, v);
  });
  // Headers joins repeated set-cookie with ", " when iterated the old way; getSetCookie keeps them apart.
  const cookies = typeof value.headers.getSetCookie === 'function' ? value.headers.getSetCookie() : [];
  for (const c of cookies) headers.push('set-cookie', c);
  const body = value.body === null ? EMPTY : (bodySource(value) ?? new Uint8Array(await value.arrayBuffer()));
  return { status, headers, body };
}

let stateSymbol: symbol | null | undefined;

/**
 * The bytes a Response was constructed from (`new Response('hello')`, `c.text(…)`, `Response.json`),
 * read from undici's internal state. Reading the body through its ReadableStream instead costs
 * more than the rest of the fetch adapter together. Undefined whenever the shape is not the one
 * expected (a stream body, a used body, another Response class, another undici): then the caller
 * reads the body the standard way.
 */
function bodySource(res: Response): Uint8Array | undefined {
  if (!(res instanceof Response) || res.bodyUsed) return undefined;
  if (stateSymbol === undefined) {
    stateSymbol = Object.getOwnPropertySymbols(res).find((s) => s.description === 'state') ?? null;
  }
  if (stateSymbol === null) return undefined;
  const body = (res as unknown as Record<symbol, { body?: { source?: unknown; stream?: ReadableStream } | null } | undefined>)[stateSymbol]?.body;
  if (!body || body.stream?.locked) return undefined;
  const src = body.source;
  if (typeof src === 'string') return Buffer.from(src);
  if (src instanceof Uint8Array) return src;
  if (src instanceof ArrayBuffer) return new Uint8Array(src);
  return undefined;
}

let envCache: Record<string, string | undefined> | undefined;
let envTracked = false;

/**
 * Make envCopy() cheap and still exact: copying process.env reads every variable through a native
 * getter (~0.8 µs each, measured as 14% of a hello-world fetch invoke), so the copy is cached and
 * the cache dropped whenever something writes process.env, which is watched by wrapping it.
 */
export function trackEnvWrites(): void {
  if (envTracked) return;
  envTracked = true;
  const real = process.env;
  const drop = (): void => {
    envCache = undefined;
  };
  process.env = new Proxy(real, {
    set(target, key, value) {
      drop();
      return Reflect.set(target, key, value);
    },
    deleteProperty(target, key) {
      drop();
      return Reflect.deleteProperty(target, key);
    },
    defineProperty(target, key, desc) {
      drop();
      return Reflect.defineProperty(target, key, desc);
    },
  });
}

/** A plain-object copy of process.env as of now (a fresh object each call, so a function may change it). */
export function envCopy(): Record<string, string | undefined> {
  if (!envTracked) return { ...process.env };
  envCache ??= { ...process.env };
  return { ...envCache };
}

export function makeFetchAdapter(fetch: FetchHandler, track: (p: Promise<unknown>) => void): Adapter {
  return async (meta, body) => {
    const ctx: FetchContext = {
      waitUntil(promise: unknown) {
        track(Promise.resolve(promise));
      },
      passThroughOnException() {},
      requestId: meta.requestId,
    };
    // A copy as of this invocation: the function sees its configured env, and changing the copy
    // does not change process.env (as with Workers' env).
    return responseToGuest(await fetch(buildRequest(meta, body), envCopy(), ctx));
  };
}

// ---------------------------------------------------------------------------------------------
// Lambda style

export interface LambdaEvent {
  version: '2.0';
  routeKey: '$default';
  rawPath: string;
  rawQueryString: string;
  cookies?: string[];
  headers: Record<string, string>;
  queryStringParameters?: Record<string, string>;
  requestContext: {
    accountId: string;
    apiId: string;
    domainName: string;
    domainPrefix: string;
    http: { method: string; path: string; protocol: string; sourceIp: string; userAgent: string };
    requestId: string;
    routeKey: '$default';
    stage: '$default';
    time: string;
    timeEpoch: number;
  };
  body?: string;
  isBase64Encoded: boolean;
}

export interface LambdaContext {
  awsRequestId: string;
  functionName: string;
  functionVersion: string;
  memoryLimitInMB: string;
  invokedFunctionArn: string;
  logGroupName: string;
  logStreamName: string;
  callbackWaitsForEmptyEventLoop: boolean;
  getRemainingTimeInMillis(): number;
  // Lambda's legacy completion methods, still used by old handlers.
  done(err?: unknown, result?: unknown): void;
  succeed(result?: unknown): void;
  fail(err?: unknown): void;
}

export type LambdaHandler = (event: LambdaEvent, context: LambdaContext, callback?: (err?: unknown, result?: unknown) => void) => unknown;

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number): string => (n < 10 ? `0${n}` : String(n));

/** Lambda's requestContext.time: "27/Nov/2026:03:04:05 +0000" (UTC). */
export function lambdaTime(epochMs: number): string {
  const d = new Date(epochMs);
  return `${pad(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
}

const TEXTUAL = /^text\/|json|xml|x-www-form-urlencoded|javascript/i;

export function buildLambdaEvent(meta: InvokeMeta, body: Buffer, nowMs: number): LambdaEvent {
  const headers: Record<string, string> = {};
  let cookies: string[] | undefined;
  const h = meta.headers;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!.toLowerCase();
    const value = h[i + 1]!;
    if (name === 'cookie') {
      for (const c of value.split('; ')) if (c) (cookies ??= []).push(c);
      continue;
    }
    const prev = headers[name];
    headers[name] = prev === undefined ? value : `${prev},${value}`;
  }
  let query: Record<string, string> | undefined;
  if (meta.query) {
    for (const [k, v] of new URLSearchParams(meta.query)) {
      const q = (query ??= {});
      const prev = q[k];
      q[k] = prev === undefined ? v : `${prev},${v}`;
    }
  }
  const domainName = headers.host ?? 'localhost';
  const event: LambdaEvent = {
    version: '2.0',
    routeKey: '$default',
    rawPath: meta.path,
    rawQueryString: meta.query,
    headers,
    requestContext: {
      accountId: 'anonymous',
      apiId: 'fnctl',
      domainName,
      domainPrefix: domainName.split(':')[0]!.split('.')[0]!,
      http: {
        method: meta.method.toUpperCase(),
        path: meta.path,
        protocol: 'HTTP/1.1',
        sourceIp: meta.sourceIp,
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: meta.requestId,
      routeKey: '$default',
      stage: '$default',
      time: lambdaTime(nowMs),
      timeEpoch: nowMs,
    },
    isBase64Encoded: false,
  };
  if (cookies) event.cookies = cookies;
  if (query) event.queryStringParameters = query;
  if (body.length > 0) {
    const type = headers['content-type'];
    if (type !== undefined && TEXTUAL.test(type) && isUtf8(body)) {
      event.body = body.toString('utf8');
    } else {
      event.body = body.toString('base64');
      event.isBase64Encoded = true;
    }
  }
  return event;
}

export function buildLambdaContext(
  meta: InvokeMeta,
  id: GuestIdentity,
  deadline: number,
  complete: (err: unknown, result: unknown) => void,
): LambdaContext {
  return {
    awsRequestId: meta.requestId,
    functionName: id.functionName,
    functionVersion: id.functionVersion,
    memoryLimitInMB: String(id.memoryMb),
    invokedFunctionArn: `arn:fnctl:lambda:local:000000000000:function:${id.functionName}`,
    logGroupName: `/fnctl/functions/${id.functionName}`,
    logStreamName: `${new Date(deadline - meta.timeoutMs).toISOString().slice(0, 10).replaceAll('-', '/')}/[${id.functionVersion}]${id.instanceId}`,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: (err, result) => complete(err, result),
    succeed: (result) => complete(null, result),
    fail: (err) => complete(err ?? new Error('context.fail called'), undefined),
  };
}

const JSON_TYPE = 'application/json';

/**
 * Map a handler's result the way Lambda function URLs do: an object with a numeric statusCode is
 * an HTTP response; anything else is sent as JSON with 200 (undefined as `null`, as Lambda's
 * runtime serialises it).
 */
export function mapLambdaResult(result: unknown): GuestResponse {
  if (result === null || typeof result !== 'object' || typeof (result as { statusCode?: unknown }).statusCode !== 'number') {
    const json = JSON.stringify(result === undefined ? null : result);
    if (json === undefined) {
      throw new FnError('FUNCTION_ERROR', `handler returned ${describeValue(result)}, which cannot be sent as JSON`);
    }
    return { status: 200, headers: ['content-type', JSON_TYPE], body: Buffer.from(json) };
  }
  const r = result as { statusCode: number; headers?: unknown; cookies?: unknown; body?: unknown; isBase64Encoded?: unknown };
  const status = checkStatus(r.statusCode, 'handler returned statusCode');
  const headers: string[] = [];
  let hasType = false;
  if (r.headers && typeof r.headers === 'object') {
    for (const [k, v] of Object.entries(r.headers)) {
      if (v === undefined || v === null) continue;
      const name = k.toLowerCase();
      if (name === 'content-type') hasType = true;
      headers.push(name, String(v));
    }
  }
  if (Array.isArray(r.cookies)) for (const c of r.cookies) headers.push('set-cookie', String(c));
  let body: Uint8Array = EMPTY;
  if (typeof r.body === 'string') {
    body = r.isBase64Encoded === true ? Buffer.from(r.body, 'base64') : Buffer.from(r.body);
  } else if (r.body !== undefined && r.body !== null) {
    body = Buffer.from(JSON.stringify(r.body) ?? '');
  }
  if (!hasType && body.length > 0) headers.push('content-type', JSON_TYPE);
  return { status, headers, body };
}

export function makeLambdaAdapter(handler: LambdaHandler, id: GuestIdentity): Adapter {
  const withCallback = handler.length >= 3;
  return (meta, body) => {
    const now = Date.now();
    const event = buildLambdaEvent(meta, body, now);
    return new Promise<unknown>((resolve, reject) => {
      const complete = (err: unknown, result: unknown): void => {
        if (err !== null && err !== undefined) reject(err);
        else resolve(result);
      };
      const context = buildLambdaContext(meta, id, now + meta.timeoutMs, complete);
      const returned = withCallback ? handler(event, context, complete) : handler(event, context);
      // An async handler settles through its promise; a callback handler through the callback
      // (and an async one that also takes a callback through whichever comes first).
      if (!withCallback || (returned !== undefined && typeof (returned as Promise<unknown>)?.then === 'function')) {
        Promise.resolve(returned).then(resolve, reject);
      }
    }).then(mapLambdaResult);
  };
}
