// What load scenarios ask of a running platform, over its HTTP control API like any client:
// deploy an example, stop a function's microVMs so the next request starts from zero, count
// microVMs by state, and read counters from /metrics.
import path from 'node:path';
import { request } from 'undici';
import { packageFunction } from '../functions/package.js';
import { repoRoot } from './processes.js';

export interface PlatformTarget {
  url: string;
  token: string;
}

/**
 * How long a read during a run may take (the microVM state for the timeline, /metrics for the
 * counters, the function list): a stalled platform must not hang a run's end, whose timeline
 * waits for the read under way.
 */
export const READ_TIMEOUT_MS = 5_000;
/** Deploys (init, snapshot) and stopping microVMs take longer. */
const CHANGE_TIMEOUT_MS = 120_000;

/** GET, POST or DELETE on the platform: the response's body text and status, within TIMEOUT_MS in all. */
async function fetchText(url: string, method: 'GET' | 'POST' | 'DELETE', timeoutMs: number, init: { headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; text: string }> {
  const what = `${method} ${new URL(url).pathname}`;
  try {
    // The signal bounds the whole exchange, body included (undici's own timeouts are per phase).
    const res = await request(url, { method, ...init, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.statusCode, text: await res.body.text() };
  } catch (err) {
    if ((err as Error).name === 'TimeoutError') {
      throw new Error(`${what}: no answer within ${timeoutMs / 1000} s`, { cause: err });
    }
    throw err;
  }
}

async function call(target: PlatformTarget, method: 'GET' | 'POST' | 'DELETE', pathname: string, body?: unknown, timeoutMs = CHANGE_TIMEOUT_MS): Promise<unknown> {
  const res = await fetchText(`${target.url}${pathname}`, method, timeoutMs, {
    headers: { authorization: `Bearer ${target.token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (res.status >= 300) throw new Error(`${method} ${pathname} failed (${res.status}): ${res.text}`);
  return JSON.parse(res.text);
}

/** The bundle of FILE (relative to the repo root), base64, ready to deploy under any name. */
export async function bundleOf(file: string): Promise<string> {
  return (await packageFunction(path.join(repoRoot, file))).bundle.toString('base64');
}

/** Deploy a bundle (from bundleOf) as NAME with these settings. */
export async function deployBundle(target: PlatformTarget, name: string, bundle: string, settings: Record<string, unknown>): Promise<{ snapshot: { status: string } }> {
  return (await call(target, 'POST', `/api/functions/${name}/versions`, { bundle, settings })) as { snapshot: { status: string } };
}

/** Deploy FILE (relative to the repo root) as NAME with these settings. */
export async function deployExample(target: PlatformTarget, name: string, file: string, settings: Record<string, unknown>): Promise<{ snapshot: { status: string } }> {
  return deployBundle(target, name, await bundleOf(file), settings);
}

/** Stop every microVM of NAME; resolves once they are gone. */
export async function stopInstances(target: PlatformTarget, name: string): Promise<void> {
  await call(target, 'DELETE', `/api/functions/${name}/instances`);
}

/** A function as GET /api/functions lists it (the fields load scenarios read). */
export interface ListedFunction {
  name: string;
  instances: { starting: number; idle: number; busy: number; queued: number; paused?: number };
}

export async function listFunctions(target: PlatformTarget, timeoutMs = READ_TIMEOUT_MS): Promise<ListedFunction[]> {
  return ((await call(target, 'GET', '/api/functions', undefined, timeoutMs)) as { functions: ListedFunction[] }).functions;
}

export interface MicrovmState {
  microvms: { starting: number; idle: number; busy: number; paused: number };
  queued: number;
}

/** The microVMs of NAMES by state and their queued requests, summed; functions not listed count nothing. */
export async function microvmState(target: PlatformTarget, names: ReadonlySet<string>, timeoutMs = READ_TIMEOUT_MS): Promise<MicrovmState> {
  const state: MicrovmState = { microvms: { starting: 0, idle: 0, busy: 0, paused: 0 }, queued: 0 };
  for (const f of await listFunctions(target, timeoutMs)) {
    if (!names.has(f.name)) continue;
    state.microvms.starting += f.instances.starting;
    state.microvms.idle += f.instances.idle;
    state.microvms.busy += f.instances.busy;
    state.microvms.paused += f.instances.paused ?? 0;
    state.queued += f.instances.queued;
  }
  return state;
}

/** GET /metrics, the Prometheus text, within TIMEOUT_MS. */
export async function scrapeMetrics(target: PlatformTarget, timeoutMs = READ_TIMEOUT_MS): Promise<string> {
  const res = await fetchText(`${target.url}/metrics`, 'GET', timeoutMs);
  if (res.status !== 200) throw new Error(`GET /metrics failed (${res.status})`);
  return res.text;
}

/**
 * The sum of metric NAME's samples whose `function` label is in FUNCTIONS, and how many samples
 * that was; null when the platform does not export NAME at all (a labelled counter with no
 * samples yet, but a TYPE line, gives {sum: 0, samples: 0}).
 */
export function metricSum(text: string, name: string, functions: ReadonlySet<string>): { sum: number; samples: number } | null {
  let known = false;
  let sum = 0;
  let samples = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) {
      if (line.startsWith(`# TYPE ${name} `)) known = true;
      continue;
    }
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    known = true;
    const m = /^[^{ ]+(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const fn = /(?:^|,)function="((?:[^"\\]|\\.)*)"/.exec(m[1] ?? '');
    if (fn && functions.has(fn[1]!)) {
      sum += Number(m[2]);
      samples++;
    }
  }
  return known ? { sum, samples } : null;
}
