// Lightweight Request and Response for the guest's fetch-style handlers, in the manner of
// @hono/node-server. A real undici Request costs ~9 µs to build (its AbortSignal is made
// transferable, its body becomes a ReadableStream) and a real Response ~10 µs more plus as much
// again to read back: together most of a hello-world invocation. Here:
//
// - The fetch adapter hands the handler a LightRequest: method, url and the body bytes as plain
//   fields, with Headers, AbortSignal and the real Request created only when something asks for
//   them. text()/json()/arrayBuffer()/bytes() read the bytes directly.
// - globalThis.Response becomes FnResponse: `new Response(body, init)` with a simple body (none,
//   string, bytes) and a simple init returns a LightResponse that only records status, headers and
//   bytes, which the adapter reads back without a stream. Anything else (streams, Blob, FormData,
//   an init that real Response would reject or coerce) is a genuine undici Response, built at once
//   so that errors are thrown where they always were.
// - globalThis.Request and globalThis.fetch are wrapped so that a LightRequest given to them is
//   turned into the real one first.
//
// Both light classes sit on the real prototype chains, so `instanceof Request/Response` holds, and
// every member they do not implement themselves builds the real object and delegates to it.
//
// Node defines Request and Response as lazy getters that load undici on first use, and undici
// cannot load while `node --build-snapshot` runs init. So installWebGlobals() only puts lazy
// getters of its own in their place, and the getters survive into a snapshot and work after its
// restore. Loading undici costs ~20 ms, the most of a restored microVM's first request, so the
// classes themselves wait for it too: FnRequest and FnResponse start as classes of their own, with
// stand-ins for the standard members the light classes lack, and are linked onto undici's
// prototypes (linkRequest, linkResponse) only when something needs the real thing: a member only
// the real object has, a subclass, a body that is not text or bytes, fetch(). A handler that reads
// the URL and returns `new Response(text)` never loads undici.
import type { FlatHeaders } from '../../core/protocol.js';

type RequestCtor = typeof globalThis.Request;
type ResponseCtor = typeof globalThis.Response;

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
/** What real Headers accept as a name (an HTTP token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/**
 * A header value real Headers would keep exactly as given: no NUL/CR/LF, nothing above 0xFF (a
 * ByteString), no leading or trailing whitespace (which Headers would strip).
 */
const PLAIN_VALUE = /^(?:[^\0\n\r\t \u0100-\uffff](?:[^\0\n\r\u0100-\uffff]*[^\0\n\r\t \u0100-\uffff])?)?$/;
/** HTAB, SP, VCHAR, obs-text: a reason phrase real Response accepts. */
const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/;
const TEXT_PLAIN = 'text/plain;charset=UTF-8';
const APPLICATION_JSON = 'application/json';
const utf8 = new TextDecoder();

// ---------------------------------------------------------------------------------------------
// Headers that follow a peer: the light objects hand out one of these, and once the real object
// exists, changes made through it reach the real object's headers too, so both stay the same.

let LinkedHeadersClass: (new (init?: HeadersInit) => LinkedHeaders) | undefined;

interface LinkedHeaders extends Headers {
  link(peer: Headers): void;
}

function linkedHeaders(flat: FlatHeaders | undefined, copyOf?: Headers): LinkedHeaders {
  const Ctor = (LinkedHeadersClass ??= class extends globalThis.Headers {
    #peer: Headers | undefined;
    link(peer: Headers): void {
      this.#peer = peer;
    }
    override append(name: string, value: string): void {
      super.append(name, value);
      this.#peer?.append(name, value);
    }
    override set(name: string, value: string): void {
      super.set(name, value);
      this.#peer?.set(name, value);
    }
    override delete(name: string): void {
      super.delete(name);
      this.#peer?.delete(name);
    }
  });
  // From a Headers, the native constructor copies its list as it is (insertion order, case).
  const headers = copyOf ? new Ctor(copyOf) : new Ctor();
  if (flat) for (let i = 0; i < flat.length; i += 2) headers.append(flat[i]!, flat[i + 1]!);
  return headers;
}

/** Headers as the adapter sends them: lower-case names in Headers' order, set-cookie apart at the end. */
/** The headers of a stand-in: from its flat list, and kept in step with its real object once it has one. */
function headersOf(flat: FlatHeaders | undefined, real: { headers: Headers } | undefined): LinkedHeaders {
  const headers = linkedHeaders(flat);
  if (real) headers.link(real.headers);
  return headers;
}

export function flattenHeaders(headers: Headers): FlatHeaders {
  const out: string[] = [];
  headers.forEach((v, k) => {
    if (k !== 'set-cookie') out.push(k, v);
  });
  // Iterating joins nothing but getSetCookie is the one way that works with polyfills too.
  const cookies = typeof headers.getSetCookie === 'function' ? headers.getSetCookie() : [];
  for (const c of cookies) out.push('set-cookie', c);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Delegation: every member of the real prototype that a light class does not define itself.

function delegateRest(lightProto: object, realProto: object, real: (self: never) => object): void {
  for (const key of Reflect.ownKeys(realProto)) {
    if (key === 'constructor' || key === Symbol.toStringTag || Object.prototype.hasOwnProperty.call(lightProto, key)) continue;
    const desc = Object.getOwnPropertyDescriptor(realProto, key)!;
    if (desc.get) {
      Object.defineProperty(lightProto, key, {
        configurable: true,
        enumerable: desc.enumerable ?? false,
        get(this: never) {
          return (real(this) as Record<PropertyKey, unknown>)[key];
        },
      });
    } else if (typeof desc.value === 'function') {
      Object.defineProperty(lightProto, key, {
        configurable: true,
        writable: true,
        enumerable: desc.enumerable ?? false,
        value: function (this: never, ...args: unknown[]) {
          const target = real(this) as Record<PropertyKey, (...a: unknown[]) => unknown>;
          return target[key]!(...args);
        },
      });
    }
  }
}

const INSPECT = Symbol.for('nodejs.util.inspect.custom');

/** The Fetch standard's body methods; every other standard member of Request and Response is a getter. */
const BODY_METHODS = new Set(['arrayBuffer', 'blob', 'bytes', 'clone', 'formData', 'json', 'text']);
const REQUEST_MEMBERS = [
  ...BODY_METHODS, 'method', 'url', 'headers', 'destination', 'referrer', 'referrerPolicy', 'mode', 'credentials', 'cache',
  'redirect', 'integrity', 'keepalive', 'isReloadNavigation', 'isHistoryNavigation', 'signal', 'body', 'bodyUsed', 'duplex',
];
const RESPONSE_MEMBERS = [...BODY_METHODS, 'type', 'url', 'redirected', 'status', 'ok', 'statusText', 'headers', 'body', 'bodyUsed'];

/**
 * Until undici is loaded: on the Fn class's prototype, a stand-in for every standard member, which
 * links the classes (loading undici) and asks again. Returns the keys it defined, which the link
 * deletes.
 */
function standIns(fnProto: object, members: readonly string[], name: string, link: () => void): PropertyKey[] {
  const defined: PropertyKey[] = [Symbol.toStringTag];
  Object.defineProperty(fnProto, Symbol.toStringTag, { value: name, configurable: true });
  // Every standard member, those the light class has too (its own shadow them on light objects),
  // so that `'status' in Response.prototype` holds as it does for the real one; and inspect, so
  // that console.log of a light object shows what the real one would.
  for (const key of [...members, INSPECT]) {
    defined.push(key);
    if (BODY_METHODS.has(key as string) || key === INSPECT) {
      Object.defineProperty(fnProto, key, {
        configurable: true,
        writable: true,
        value: function (this: Record<PropertyKey, (...a: unknown[]) => unknown>, ...args: unknown[]) {
          link();
          return this[key]!(...args);
        },
      });
    } else {
      Object.defineProperty(fnProto, key, {
        configurable: true,
        get(this: Record<PropertyKey, unknown>) {
          link();
          return this[key];
        },
      });
    }
  }
  return defined;
}

interface Link<C> {
  /** The native class, Fn linked onto it first (loads undici). */
  native(): C;
  /** Whether `value` is a real instance; false, without loading undici, while nothing can have made one. */
  isReal(value: unknown): boolean;
  /** Set Fn (a class of its own until the link) up with its stand-ins. */
  init(Fn: object & { prototype: object }, lightProto: object, members: readonly string[], name: string): void;
}

/**
 * How a Fn class gets linked: once, on first need, Fn goes onto Native's chains in place of the
 * stand-ins, and what the light class lacks is delegated to its real object.
 */
function linker<C extends object & { prototype: object }>(load: () => C, real: (self: never) => object): Link<C> {
  let Native: C | undefined;
  let fn: (object & { prototype: object }) | undefined;
  let light: object | undefined;
  let defined: PropertyKey[] = [];
  const link: Link<C> = {
    native() {
      if (Native) return Native;
      Native = load();
      undiciUsed = true;
      for (const key of defined) delete (fn!.prototype as Record<PropertyKey, unknown>)[key];
      Object.setPrototypeOf(fn!.prototype, Native.prototype);
      Object.setPrototypeOf(fn!, Native);
      delegateRest(light!, Native.prototype, real);
      return Native;
    },
    isReal(value) {
      // native() sets undiciUsed: it alone says whether a real instance can exist.
      return undiciUsed && value instanceof (link.native() as unknown as new () => object);
    },
    init(Fn, lightProto, members, name) {
      fn = Fn;
      light = lightProto;
      Object.setPrototypeOf(lightProto, Fn.prototype);
      Object.defineProperty(lightProto, 'constructor', { value: Fn, writable: true, configurable: true, enumerable: false });
      Object.defineProperty(Fn, 'name', { value: name });
      defined = standIns(Fn.prototype, members, name, () => link.native());
    },
  };
  return link;
}

/**
 * Set once anything may have made a real Request or Response: our classes were linked, or fetch()
 * ran (it makes real Responses itself). Until then, no object but a light one is an instance.
 */
let undiciUsed = false;

// ---------------------------------------------------------------------------------------------
// Request

/** What the fetch adapter builds a request from. */
export interface LightRequestInit {
  method: string;
  url: string;
  headers: FlatHeaders;
  /** null for GET/HEAD and empty bodies, as buildRequest always did. */
  body: Buffer | null;
}

interface RequestClasses {
  Fn: RequestCtor;
  /** The real Request class, linked on first call (loads undici). */
  native(): RequestCtor;
}

let requestClasses: RequestClasses | undefined;

export class LightRequest {
  readonly #method: string;
  readonly #url: string;
  readonly #flat: FlatHeaders;
  readonly #body: Buffer | null;
  #headers: LinkedHeaders | undefined;
  #signal: AbortSignal | undefined;
  #used = false;
  #real: Request | undefined;

  constructor(init: LightRequestInit) {
    this.#method = init.method;
    this.#url = init.url;
    this.#flat = init.headers;
    this.#body = init.body;
  }

  static isLight(value: unknown): value is LightRequest {
    return typeof value === 'object' && value !== null && #method in value;
  }

  /** The real Request (built on first need), so native code can be given one. */
  static real(self: LightRequest): Request {
    if (self.#real) return self.#real;
    const init: RequestInit = { method: self.#method, headers: self.headers };
    if (self.#signal) init.signal = self.#signal;
    if (self.#body !== null) init.body = self.#body as Uint8Array<ArrayBuffer>;
    const real = new (loadRequestClasses().native())(self.#url, init);
    // A body already read through the light object is used in the real one too.
    if (self.#used) void real.arrayBuffer().catch(() => undefined);
    self.#headers!.link(real.headers);
    self.#real = real;
    return real;
  }

  get method(): string {
    return this.#method;
  }

  get url(): string {
    return this.#url;
  }

  get headers(): Headers {
    return (this.#headers ??= headersOf(this.#flat, this.#real));
  }

  get signal(): AbortSignal {
    if (this.#signal) return this.#signal;
    if (this.#real) return this.#real.signal;
    // Nothing aborts a request in the guest (a timeout kills the microVM), as with the real one.
    this.#signal = new AbortController().signal;
    return this.#signal;
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this.#body === null && !this.#real) return null;
    return LightRequest.real(this).body;
  }

  get bodyUsed(): boolean {
    return this.#real ? this.#real.bodyUsed : this.#used;
  }

  /** The bytes for a direct read, or why there are none (the real Request's own errors). */
  #take(): Buffer | null | Error {
    if (this.#body === null) return null;
    if (this.#used) return new TypeError('Body is unusable: Body has already been read');
    this.#used = true;
    return this.#body;
  }

  text(): Promise<string> {
    if (this.#real) return this.#real.text();
    const b = this.#take();
    if (b instanceof Error) return Promise.reject(b);
    return Promise.resolve(b === null ? '' : utf8.decode(b));
  }

  json(): Promise<unknown> {
    if (this.#real) return this.#real.json();
    const b = this.#take();
    if (b instanceof Error) return Promise.reject(b);
    try {
      return Promise.resolve(JSON.parse(b === null ? '' : utf8.decode(b)) as unknown);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  arrayBuffer(): Promise<ArrayBuffer> {
    if (this.#real) return this.#real.arrayBuffer();
    const b = this.#take();
    if (b instanceof Error) return Promise.reject(b);
    // A copy, as the real one gives: the function may keep or change it.
    return Promise.resolve(b === null ? new ArrayBuffer(0) : (b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer));
  }

  bytes(): Promise<Uint8Array> {
    return this.arrayBuffer().then((ab) => new Uint8Array(ab));
  }
}

function loadRequestClasses(): RequestClasses {
  if (requestClasses) return requestClasses;
  const link = linker(() => nativeRequest!(), (self: LightRequest) => LightRequest.real(self));
  class FnRequest {
    // `x instanceof Request` for every real Request too (from clone(), other code), not only ours.
    static [Symbol.hasInstance](value: unknown): boolean {
      if (this !== FnRequest) return Function.prototype[Symbol.hasInstance].call(this, value);
      return LightRequest.isLight(value) || link.isReal(value);
    }
    constructor(...args: ConstructorParameters<RequestCtor>) {
      if (args.length > 0 && LightRequest.isLight(args[0])) args[0] = LightRequest.real(args[0]);
      return Reflect.construct(link.native(), args, new.target) as FnRequest;
    }
  }
  Object.defineProperty(FnRequest, 'length', { value: 1 });
  link.init(FnRequest, LightRequest.prototype, REQUEST_MEMBERS, 'Request');
  requestClasses = { Fn: FnRequest as unknown as RequestCtor, native: link.native };
  return requestClasses;
}

/**
 * The Request the fetch adapter gives a handler: a LightRequest while globalThis.Request is still
 * ours, else a real one (the function replaced Request with something of its own).
 */
export function makeRequest(init: LightRequestInit): Request {
  const classes = requestClasses ?? (installed ? loadRequestClasses() : undefined);
  if (classes && globalThis.Request === classes.Fn) return new LightRequest(init) as unknown as Request;
  const headers = new Headers();
  for (let i = 0; i < init.headers.length; i += 2) headers.append(init.headers[i]!, init.headers[i + 1]!);
  const ri: RequestInit = { method: init.method, headers };
  if (init.body !== null) ri.body = init.body as Uint8Array<ArrayBuffer>;
  return new Request(init.url, ri);
}

// ---------------------------------------------------------------------------------------------
// Response

/** A Response body the light path keeps as is: text, or bytes (a copy, as real Response takes). */
type LightBody = string | Uint8Array | null;

interface ResponseClasses {
  Fn: ResponseCtor;
  /** The real Response class, linked on first call (loads undici). */
  native(): ResponseCtor;
  /** The symbol under which undici keeps a Response's state, for reading its body source (loads undici). */
  state(): symbol | null;
}

let responseClasses: ResponseClasses | undefined;

export class LightResponse {
  readonly #status: number;
  readonly #statusText: string;
  readonly #body: LightBody;
  /**
   * Headers as a flat list in real Response's order, until something asks for a Headers object;
   * undefined when they came as one (#headers is then a copy from the start).
   */
  readonly #flat: FlatHeaders | undefined;
  #headers: LinkedHeaders | undefined;
  #real: Response | undefined;

  constructor(status: number, statusText: string, body: LightBody, flat: FlatHeaders | undefined, headers?: LinkedHeaders) {
    this.#status = status;
    this.#statusText = statusText;
    this.#body = body;
    this.#flat = flat;
    this.#headers = headers;
  }

  static isLight(value: unknown): value is LightResponse {
    return typeof value === 'object' && value !== null && #status in value;
  }

  static real(self: LightResponse): Response {
    if (self.#real) return self.#real;
    const real = new (loadResponseClasses().native())(self.#body as BodyInit | null, {
      status: self.#status,
      statusText: self.#statusText,
      headers: self.#headers ?? pairs(self.#flat!),
    });
    self.#headers?.link(real.headers);
    self.#real = real;
    return real;
  }

  /**
   * Status, headers and bytes without building the real Response; undefined once the real one
   * exists (its body may have been read), and the caller reads it the standard way.
   */
  static parts(self: LightResponse): { status: number; headers: FlatHeaders; body: Uint8Array } | undefined {
    if (self.#real) return undefined;
    const b = self.#body;
    return {
      status: self.#status,
      headers: self.#headers ? flattenHeaders(self.#headers) : adapterOrder(self.#flat!),
      body: b === null ? EMPTY : typeof b === 'string' ? Buffer.from(b) : b,
    };
  }

  get status(): number {
    return this.#status;
  }

  get ok(): boolean {
    return this.#status >= 200 && this.#status <= 299;
  }

  get statusText(): string {
    return this.#statusText;
  }

  get headers(): Headers {
    return (this.#headers ??= headersOf(this.#flat, this.#real));
  }

  // What a constructed (not fetched) Response always has.
  get type(): ResponseType {
    return 'default';
  }

  get url(): string {
    return '';
  }

  get redirected(): boolean {
    return false;
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this.#body === null && !this.#real) return null;
    return LightResponse.real(this).body;
  }

  get bodyUsed(): boolean {
    return this.#real ? this.#real.bodyUsed : false;
  }
}

const EMPTY = new Uint8Array(0);

function pairs(flat: FlatHeaders): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

/** Bytes of a body real Response would copy from a buffer source; undefined for anything else. */
function bufferBody(body: unknown): Uint8Array | undefined {
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
  if (body instanceof ArrayBuffer) return new Uint8Array(body.slice(0));
  return undefined;
}

/**
 * Headers of an init as real Response would hold them (in its order: the init's, then the body's
 * content type when there is none), when real Headers would take them as they are; undefined to
 * let real Response decide (arrays, odd names or values, case-variant duplicates, symbol keys).
 */
function simpleHeaders(init: unknown, contentType: string | undefined): FlatHeaders | undefined {
  let flat: string[];
  if (init === undefined || init === null) {
    flat = [];
  } else if (typeof init === 'object') {
    const proto = Object.getPrototypeOf(init) as unknown;
    if ((proto !== Object.prototype && proto !== null) || Object.getOwnPropertySymbols(init).length > 0) return undefined;
    flat = [];
    for (const key of Object.keys(init)) {
      const value = (init as Record<string, unknown>)[key];
      if (typeof value !== 'string' || !TOKEN.test(key) || !PLAIN_VALUE.test(value)) return undefined;
      // Headers would join case variants of one name: rare enough to leave to it.
      if (hasName(flat, key)) return undefined;
      // As given: real Headers keep the case (inspect shows it), and lower it when iterated.
      flat.push(key, value);
    }
  } else {
    return undefined;
  }
  if (contentType !== undefined && !hasName(flat, 'content-type')) flat.push('content-type', contentType);
  return flat;
}

function isPlainOrNone(value: unknown): boolean {
  if (value === undefined || value === null) return true;
  if (typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Whether `flat` has header `name`, in any case. */
function hasName(flat: FlatHeaders, name: string): boolean {
  for (let i = 0; i < flat.length; i += 2) {
    const n = flat[i]!;
    if (n === name || (n.length === name.length && n.toLowerCase() === name.toLowerCase())) return true;
  }
  return false;
}

/**
 * Headers in the form and order the adapter sends them, as flattenHeaders gives them for a real
 * Headers: lower-case names (distinct but for set-cookie) in order, set-cookie apart at the end.
 * Most responses have one or two such headers already, and come back as they are.
 */
function adapterOrder(flat: FlatHeaders): FlatHeaders {
  let plain = true;
  for (let i = 0; i < flat.length && plain; i += 2) {
    const n = flat[i]!;
    if (n === 'set-cookie' || (i > 0 && flat[i - 2]! > n) || n !== n.toLowerCase()) plain = false;
  }
  if (plain) return flat;
  const pairs: [string, string][] = [];
  const cookies: string[] = [];
  for (let i = 0; i < flat.length; i += 2) {
    const n = flat[i]!.toLowerCase();
    if (n === 'set-cookie') cookies.push(n, flat[i + 1]!);
    else pairs.push([n, flat[i + 1]!]);
  }
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: string[] = [];
  for (const [k, v] of pairs) out.push(k, v);
  for (const c of cookies) out.push(c);
  return out;
}

/** Status, status text and headers of an init that real Response would take exactly as given. */
interface SimpleInit {
  status: number;
  statusText: string;
  flat: FlatHeaders | undefined;
  headers: LinkedHeaders | undefined;
}

/**
 * `init` read the way real Response reads it, when it would accept it as is; undefined otherwise
 * (real Response then decides, and throws where it throws). `contentType` is the body's default.
 */
function simpleInit(init: unknown, hasBody: boolean, contentType: string | undefined): SimpleInit | undefined {
  let status = 200;
  let statusText = '';
  let headersInit: unknown;
  if (init !== undefined && init !== null) {
    if (typeof init !== 'object') return undefined;
    const i = init as { status?: unknown; statusText?: unknown; headers?: unknown };
    headersInit = i.headers;
    const s = i.status;
    if (s !== undefined) {
      if (typeof s !== 'number' || !Number.isInteger(s) || s < 200 || s > 599) return undefined;
      status = s;
    }
    const t = i.statusText;
    if (t !== undefined) {
      if (typeof t !== 'string' || !REASON_PHRASE.test(t)) return undefined;
      statusText = t;
    }
  }
  if (hasBody && NULL_BODY_STATUS.has(status)) return undefined;
  // Plain objects first: asking `instanceof Headers` loads undici.
  if (!isPlainOrNone(headersInit) && headersInit instanceof globalThis.Headers) {
    // Copied the way real Response copies it; then the body's content type, as it does.
    const headers = linkedHeaders(undefined, headersInit);
    if (contentType !== undefined && !headers.has('content-type')) headers.append('content-type', contentType);
    return { status, statusText, flat: undefined, headers };
  }
  const flat = simpleHeaders(headersInit, contentType);
  return flat ? { status, statusText, flat, headers: undefined } : undefined;
}

/** A LightResponse when real Response would accept (body, init) exactly as given, else undefined. */
function lightResponse(body: unknown, init: unknown): LightResponse | undefined {
  let data: LightBody;
  if (body === undefined || body === null) {
    data = null;
  } else if (typeof body === 'string') {
    data = body;
  } else {
    const bytes = bufferBody(body);
    if (!bytes) return undefined;
    data = bytes;
  }
  const i = simpleInit(init, data !== null, typeof data === 'string' ? TEXT_PLAIN : undefined);
  return i ? new LightResponse(i.status, i.statusText, data, i.flat, i.headers) : undefined;
}

function loadResponseClasses(): ResponseClasses {
  if (responseClasses) return responseClasses;
  const link = linker(() => nativeResponse!(), (self: LightResponse) => LightResponse.real(self));
  let state: symbol | null | undefined;
  class FnResponse {
    static [Symbol.hasInstance](value: unknown): boolean {
      if (this !== FnResponse) return Function.prototype[Symbol.hasInstance].call(this, value);
      return LightResponse.isLight(value) || link.isReal(value);
    }
    static json(data: unknown, init?: ResponseInit): Response {
      // As real Response.json: init first, then the data; real Response.json throws what is wrong.
      const i = this === FnResponse ? simpleInit(init, true, APPLICATION_JSON) : undefined;
      if (i) {
        const text = JSON.stringify(data) as string | undefined;
        if (text !== undefined) return new LightResponse(i.status, i.statusText, text, i.flat, i.headers) as unknown as Response;
      }
      return link.native().json(data, init);
    }
    static error(): Response {
      return link.native().error();
    }
    static redirect(url: string | URL, status?: number): Response {
      return link.native().redirect(url, status);
    }
    constructor(...args: [body?: BodyInit | null, init?: ResponseInit]) {
      // Subclasses of Response get a real one (with their prototype), as they always did.
      if (new.target === FnResponse) {
        const light = lightResponse(args[0], args[1]);
        if (light) return light as unknown as FnResponse;
      }
      return Reflect.construct(link.native(), args, new.target) as FnResponse;
    }
  }
  Object.defineProperty(FnResponse, 'length', { value: 0 });
  link.init(FnResponse, LightResponse.prototype, RESPONSE_MEMBERS, 'Response');
  responseClasses = {
    Fn: FnResponse as unknown as ResponseCtor,
    native: link.native,
    // Probed on a real Response: the light ones have no such symbol.
    state: () => (state ??= Object.getOwnPropertySymbols(new (link.native())('')).find((sym) => sym.description === 'state') ?? null),
  };
  return responseClasses;
}

/**
 * The bytes a real Response was constructed from (`new Response(stream)` aside), read from undici's
 * internal state: reading the body through its ReadableStream costs more than the rest of the
 * fetch adapter together. Undefined whenever the shape is not the one expected (a stream body, a
 * used body, another Response class, another undici): then the caller reads it the standard way.
 */
export function realBodySource(res: Response): Uint8Array | undefined {
  const state = installed ? loadResponseClasses().state() : probeState();
  if (state === null || res.bodyUsed) return undefined;
  const body = (res as unknown as Record<symbol, { body?: { source?: unknown; stream?: ReadableStream } | null } | undefined>)[state]?.body;
  if (!body || body.stream?.locked) return undefined;
  const src = body.source;
  if (typeof src === 'string') return Buffer.from(src);
  if (src instanceof Uint8Array) return src;
  if (src instanceof ArrayBuffer) return new Uint8Array(src);
  return undefined;
}

let probedState: symbol | null | undefined;
function probeState(): symbol | null {
  probedState ??= Object.getOwnPropertySymbols(new Response('')).find((s) => s.description === 'state') ?? null;
  return probedState;
}

/** Status, headers and bytes of a LightResponse that has not turned real; else undefined. */
export function lightResponseParts(value: unknown): { status: number; headers: FlatHeaders; body: Uint8Array } | undefined {
  return LightResponse.isLight(value) ? LightResponse.parts(value) : undefined;
}

// ---------------------------------------------------------------------------------------------
// Globals

let installed = false;
let nativeRequest: (() => RequestCtor) | undefined;
let nativeResponse: (() => ResponseCtor) | undefined;

/**
 * The value behind node's descriptor of global `name`, read once. Node's lazy getter loads undici
 * and then redefines the global with what it loaded, so whatever stood there (our getter, or what
 * it settled to) is put back.
 */
function reader<T>(name: string, desc: PropertyDescriptor): () => T {
  let value: T | undefined;
  return () => {
    if (value === undefined) {
      const current = Object.getOwnPropertyDescriptor(globalThis, name);
      value = (desc.get ? desc.get.call(globalThis) : desc.value) as T;
      if (current) Object.defineProperty(globalThis, name, current);
    }
    return value;
  };
}

/**
 * Put FnRequest, FnResponse and a fetch that understands LightRequest in place of the globals, as
 * lazy getters (see the header). Idempotent. Run before the function's module, so that its code
 * sees the same Request and Response as the adapter.
 */
export function installWebGlobals(): void {
  if (installed) return;
  const reqDesc = Object.getOwnPropertyDescriptor(globalThis, 'Request');
  const resDesc = Object.getOwnPropertyDescriptor(globalThis, 'Response');
  // Not the globals this was written for: leave everything alone (the adapter then builds real ones).
  if (!reqDesc?.configurable || !resDesc?.configurable || typeof globalThis.fetch !== 'function') return;
  installed = true;
  nativeRequest = reader<RequestCtor>('Request', reqDesc);
  nativeResponse = reader<ResponseCtor>('Response', resDesc);
  defineLazy('Request', reqDesc, () => loadRequestClasses().Fn);
  defineLazy('Response', resDesc, () => loadResponseClasses().Fn);
  const nativeFetch = globalThis.fetch;
  const fetch = function fetch(input: RequestInfo | URL, init: RequestInit | undefined = undefined): Promise<Response> {
    undiciUsed = true;
    return nativeFetch(LightRequest.isLight(input) ? LightRequest.real(input) : input, init);
  };
  Object.defineProperty(globalThis, 'fetch', { value: fetch, writable: true, configurable: true, enumerable: Object.getOwnPropertyDescriptor(globalThis, 'fetch')?.enumerable ?? true });
}

/** The real (undici) Request and Response, the light classes linked to them (loads undici); undefined when the globals are not ours. */
export function nativeWebClasses(): { Request: RequestCtor; Response: ResponseCtor } | undefined {
  if (!installed) return undefined;
  return { Request: loadRequestClasses().native(), Response: loadResponseClasses().native() };
}

/** Our lazy getters of Request and Response (see defineLazy), to tell them from the function's. */
const lazyGetters = new Set<unknown>();

function defineLazy(name: 'Request' | 'Response', desc: PropertyDescriptor, make: () => unknown): void {
  const enumerable = desc.enumerable ?? false;
  const settle = (value: unknown): void => {
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable });
  };
  const get = (): unknown => {
    const value = make();
    settle(value);
    return value;
  };
  lazyGetters.add(get);
  Object.defineProperty(globalThis, name, {
    configurable: true,
    enumerable,
    get,
    set(value: unknown) {
      settle(value);
    },
  });
}

/** Whether globalThis.Request and Response are still this module's: the function has not replaced them. */
export function ownsWebGlobals(): boolean {
  if (!installed) return false;
  const ours = (name: 'Request' | 'Response', fn: unknown): boolean => {
    const d = Object.getOwnPropertyDescriptor(globalThis, name);
    return d !== undefined && (lazyGetters.has(d.get) || (fn !== undefined && d.value === fn));
  };
  return ours('Request', requestClasses?.Fn) && ours('Response', responseClasses?.Fn);
}
