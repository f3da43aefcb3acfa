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

async function call(target: PlatformTarget, method: 'GET' | 'POST' | 'DELETE', pathname: string, body?: unknown): Promise<unknown> {
  const res = await request(`${target.url}${pathname}`, {
    method,
    headers: { authorization: `Bearer ${target.token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    headersTimeout: 120_000,
    bodyTimeout: 120_000,
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${pathname} failed (${res.statusCode}): ${text}`);
  return JSON.parse(text);
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

export async function listFunctions(target: PlatformTarget): Promise<ListedFunction[]> {
  return ((await call(target, 'GET', '/api/functions')) as { functions: ListedFunction[] }).functions;
}

export interface MicrovmState {
  microvms: { starting: number; idle: number; busy: number; paused: number };
  queued: number;
}

/** The microVMs of NAMES by state and their queued requests, summed; functions not listed count nothing. */
export async function microvmState(target: PlatformTarget, names: ReadonlySet<string>): Promise<MicrovmState> {
  const state: MicrovmState = { microvms: { starting: 0, idle: 0, busy: 0, paused: 0 }, queued: 0 };
  for (const f of await listFunctions(target)) {
    if (!names.has(f.name)) continue;
    state.microvms.starting += f.instances.starting;
    state.microvms.idle += f.instances.idle;
    state.microvms.busy += f.instances.busy;
    state.microvms.paused += f.instances.paused ?? 0;
    state.queued += f.instances.queued;
  }
  return state;
}

/** GET /metrics, the Prometheus text. */
export async function scrapeMetrics(target: PlatformTarget): Promise<string> {
  const res = await request(`${target.url}/metrics`);
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET /metrics failed (${res.statusCode})`);
  return text;
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
