// One autocannon run, driven from code, every response classified into a Recorder: by its target
// and its x-fn-start (a baseline's responses are `baseline`), its time as autocannon measured it
// (fractional ms), its error code read from the JSON body, and its init/restore phase read from
// server-timing. Transport failures (connection errors, client timeouts) count as TRANSPORT.
//
// The handlers run once per response inside the load generator, which shares the CPUs with what
// it measures: they scan the raw header list once, and read bodies and server-timing only when a
// response is an error or did not start warm.
import autocannon from 'autocannon';
import type { Recorder, ClassAccumulator } from './recorder.js';
import type { Percentiles, StartKind } from './report/schema.js';
import { Samples, errorCodeOf, parseServerTiming, startOf } from './stats.js';

export interface DriveOptions {
  /** Full URL of the target, path included; with `pickPath` only its origin counts. */
  url: string;
  /** The class target of every response: a function name, a baseline's label, or a group's. */
  target: string;
  /** A baseline (no x-fn-start): its responses are classed `baseline`. */
  baseline?: boolean;
  connections: number;
  durationS: number;
  recorder: Recorder;
  /** The path of each request (mixed scenarios); default the URL's. */
  pickPath?: () => string;
  method?: 'GET' | 'POST';
  body?: string;
  /** Client timeout, seconds (autocannon's default 10). */
  timeoutS?: number;
}

export interface DriveResult {
  /** From the call to the end of the run, ms. */
  elapsedMs: number;
  /** From the call until every connection had a 2xx response; null if one never did. */
  allServedMs: number | null;
  /** Responses by HTTP status. */
  statuses: Record<string, number>;
  /** 2xx responses of this run per second of it, and their latency. */
  okRps: number;
  latencyMs: Percentiles | null;
}

interface HeaderInfo {
  statusCode?: number;
  headers?: unknown[];
}

/** x-fn-start and server-timing of a response, in one pass over autocannon's raw header list. */
export function scanHeaders(info: unknown): { start: string | undefined; timing: string | undefined } {
  const list = Array.isArray(info) ? (info as unknown[]) : (info as HeaderInfo | null)?.headers;
  let start: string | undefined;
  let timing: string | undefined;
  if (Array.isArray(list)) {
    for (let i = 0; i + 1 < list.length; i += 2) {
      const name = list[i];
      if (typeof name !== 'string') continue;
      // Length first: cheaper than lower-casing every header name.
      if (name.length === 10 && name.toLowerCase() === 'x-fn-start') start = String(list[i + 1]);
      else if (name.length === 13 && name.toLowerCase() === 'server-timing') timing = String(list[i + 1]);
    }
  }
  return { start, timing };
}

/** The largest error body read for its code; the platform's are far smaller. */
const MAX_ERROR_BODY = 4096;

export async function drive(options: DriveOptions): Promise<DriveResult> {
  const { recorder, target } = options;
  const statuses: Record<string, number> = {};
  const byStart = new Map<StartKind, ClassAccumulator>();
  const classOf = (start: StartKind) => {
    let c = byStart.get(start);
    if (!c) byStart.set(start, (c = recorder.classOf(target, start)));
    return c;
  };
  const t0 = performance.now();
  let unserved = options.connections;
  let allServedMs: number | null = null;
  const pickPath = options.pickPath;
  const runLatency = new Samples();

  const result = await autocannon({
    // autocannon checks for the end of the run at each sample tick (1 s by default), which would
    // round every run up to whole seconds.
    sampleInt: 50,
    url: options.url,
    connections: options.connections,
    duration: options.durationS,
    method: options.method ?? 'GET',
    ...(options.body ? { body: options.body } : {}),
    ...(options.timeoutS ? { timeout: options.timeoutS } : {}),
    ...(pickPath ? { requests: [{ setupRequest: (req: autocannon.Request) => ({ ...req, path: pickPath() }) }] } : {}),
    setupClient: (client) => {
      let start: StartKind = options.baseline ? 'baseline' : 'none';
      let timing: string | undefined;
      let body: string | undefined;
      let served = false;
      client.on('headers', (info: unknown) => {
        const status = (info as HeaderInfo).statusCode ?? 0;
        if (!options.baseline) {
          const h = scanHeaders(info);
          start = startOf(h.start);
          timing = start === 'warm' ? undefined : h.timing;
        }
        body = status >= 200 && status < 300 ? undefined : '';
      });
      client.on('body', (chunk: Buffer) => {
        if (body !== undefined && body.length < MAX_ERROR_BODY) body += chunk.toString('utf8');
      });
      client.on('response', (status: number, _bytes: number, ms: number) => {
        statuses[status] = (statuses[status] ?? 0) + 1;
        const c = classOf(start);
        if (status >= 200 && status < 300) {
          c.success(ms);
          runLatency.add(ms);
          if (!served) {
            served = true;
            if (--unserved === 0) allServedMs = performance.now() - t0;
          }
        } else {
          c.failure(errorCodeOf(status, body ?? ''));
        }
        if (timing !== undefined) c.phases(parseServerTiming(timing));
        timing = undefined;
        body = undefined;
        start = options.baseline ? 'baseline' : 'none';
      });
      // Events the typings leave out: a connection error, and no response within the timeout.
      const events = client as unknown as NodeJS.EventEmitter;
      const transport = () => classOf(options.baseline ? 'baseline' : 'none').failure('TRANSPORT');
      events.on('connError', transport);
      events.on('timeout', transport);
    },
  });
  const elapsedMs = performance.now() - t0;
  // The time autocannon held the load, as it measured it (10 ms resolution).
  const loadedMs = result.duration > 0 ? result.duration * 1000 : options.durationS * 1000;
  recorder.addLoadedTime(target, loadedMs);
  return { elapsedMs, allServedMs, statuses, okRps: runLatency.size / (loadedMs / 1000), latencyMs: runLatency.summary() };
}
