// The two handler styles a function can export, each turned into one shape the guest runtime
// serves: (invoke meta, body) → {status, headers, body}. Web-standard `fetch(request, env, ctx)`
// gets a Request (a lightweight one, see web.ts); AWS Lambda `handler(event, context)` gets a
// function URL / API Gateway HTTP API payload format 2.0 event, and its result is mapped the way
// Lambda function URLs map it.
import { isUtf8 } from 'node:buffer';
import type { FlatHeaders, InvokeMeta } from '../../core/protocol.js';
import { FnError } from '../../core/errors.js';
import { flattenHeaders, installWebGlobals, lightResponseParts, makeRequest, realBodySource } from './web.js';

// The runtime imports this module before the function's, so the function's code sees the same
// Request and Response as the fetch adapter. Installs lazy getters only: nothing loads until used.
installWebGlobals();

export interface GuestResponse {
  status: number;
  headers: FlatHeaders;
  body: Uint8Array;
}

/**
 * Runs the handler for one request. The fetch adapter answers a handler that returned a simple
 * Response synchronously with the response itself, not a promise of it: the runtime then answers
 * without a promise (each one also pays the AsyncLocalStorage hooks when requests overlap).
 */
export type Adapter = (meta: InvokeMeta, body: Buffer) => Promise<GuestResponse> | GuestResponse;

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

function authority(host: string | undefined): string {
  return host && HOST_RE.test(host) ? host : 'localhost';
}

export function requestUrl(meta: InvokeMeta): string {
  const path = meta.path.startsWith('/') ? meta.path : `/${meta.path}`;
  const origin = `http://${authority(headerValue(meta.headers, 'host'))}`;
  return meta.query ? `${origin}${path}?${meta.query}` : `${origin}${path}`;
}

/** Methods the real Request keeps as they are (and never rejects) once upper-cased. */
const PLAIN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);
// Paths and queries that the URL parser leaves exactly as they are (RFC 3986 pchar, no dot
// segments, no encoded dots; no ' in a query, which http URLs percent-encode there), so a
// request's url needs no parse at all.
const PLAIN_PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/;
const DOT_SEGMENT = /\/\.\.?(?:\/|$)|%2e/i;
const PLAIN_QUERY = /^[A-Za-z0-9\-._~!$&()*+,;=:@/?%]*$/;
/** Serialised origins by Host header: hosts repeat, and a URL parse costs a microsecond. Bounded. */
const origins = new Map<string, string>();

/**
 * The request's URL exactly as `new Request(url).url` would give it, without a URL parse for the
 * usual shapes; undefined when it does not parse (the real Request throws then, as it always did).
 */
function canonicalUrl(meta: InvokeMeta): string | undefined {
  const path = meta.path;
  if (PLAIN_PATH.test(path) && !DOT_SEGMENT.test(path) && PLAIN_QUERY.test(meta.query)) {
    const host = headerValue(meta.headers, 'host') ?? '';
    let origin = origins.get(host);
    if (origin === undefined) {
      try {
        origin = new URL(`http://${authority(host)}/`).origin;
      } catch {
        return undefined;
      }
      if (origins.size >= 64) origins.clear();
      origins.set(host, origin);
    }
    return meta.query ? `${origin}${path}?${meta.query}` : `${origin}${path}`;
  }
  try {
    return new URL(requestUrl(meta)).href;
  } catch {
    return undefined;
  }
}

export function buildRequest(meta: InvokeMeta, body: Buffer): Request {
  const method = meta.method.toUpperCase();
  const withBody = method !== 'GET' && method !== 'HEAD' && body.length > 0;
  const url = PLAIN_METHODS.has(method) ? canonicalUrl(meta) : undefined;
  if (url !== undefined) return makeRequest({ method, url, headers: meta.headers, body: withBody ? body : null });
  // Unusual method or URL: the real Request, which normalises or rejects them its own way.
  const headers = new Headers();
  const h = meta.headers;
  for (let i = 0; i < h.length; i += 2) headers.append(h[i]!, h[i + 1]!);
  const init: RequestInit = { method, headers };
  if (withBody) init.body = body as Uint8Array<ArrayBuffer>;
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
  // The common case: a LightResponse read straight from its fields (no Headers, no stream).
  const light = lightResponseParts(value);
  if (light) return light;
  if (!isResponse(value)) {
    throw new FnError('FUNCTION_ERROR', `fetch handler returned ${describeValue(value)}, expected a Response`);
  }
  const status = checkStatus(value.status, 'fetch handler returned a Response with status');
  const headers = flattenHeaders(value.headers);
  const body = value.body === null ? EMPTY : (realBodySource(value) ?? new Uint8Array(await value.arrayBuffer()));
  return { status, headers, body };
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

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as PromiseLike<unknown>).then === 'function';
}

export function makeFetchAdapter(fetch: FetchHandler, track: (p: Promise<unknown>) => void): Adapter {
  // Not an async function: a handler that returns a LightResponse synchronously is answered with
  // no promise at all (see Adapter).
  return (meta, body) => {
    const ctx: FetchContext = {
      waitUntil(promise: unknown) {
        track(Promise.resolve(promise));
      },
      passThroughOnException() {},
      requestId: meta.requestId,
    };
    let out: unknown;
    try {
      // A copy of the env as of this invocation: the function sees its configured env, and
      // changing the copy does not change process.env (as with Workers' env).
      out = fetch(buildRequest(meta, body), envCopy(), ctx);
    } catch (err) {
      return Promise.reject(err);
    }
    if (isThenable(out)) return Promise.resolve(out).then(responseToGuest);
    return lightResponseParts(out) ?? responseToGuest(out);
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
    // Methods, not arrow functions: the bundle keeps names (esbuild keepNames), which costs a
    // defineProperty for every arrow function made per request, and methods are named already.
    getRemainingTimeInMillis() {
      return Math.max(0, deadline - Date.now());
    },
    done(err, result) {
      complete(err, result);
    },
    succeed(result) {
      complete(null, result);
    },
    fail(err) {
      complete(err ?? new Error('context.fail called'), undefined);
    },
  };
}

/** The callback a Lambda handler completes with (unnamed, see buildLambdaContext). */
function completer(resolve: (result: unknown) => void, reject: (err: unknown) => void): (err: unknown, result: unknown) => void {
  return (err, result) => {
    if (err !== null && err !== undefined) reject(err);
    else resolve(result);
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
      const complete = completer(resolve, reject);
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
