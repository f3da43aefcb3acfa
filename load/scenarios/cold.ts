// cold: the first response from zero microVMs, again and again: stop the function's microVMs,
// send one request, time it. In the same run, interleaved, the start of a bare `node -e 0`
// process: the floor no guest process can beat.
import { spawn } from 'node:child_process';
import { request } from 'undici';
import type { LoadReport } from '../report/schema.js';
import { ratio } from '../report/build.js';
import type { Recorder } from '../recorder.js';
import { stopInstances, type PlatformTarget } from '../platform-api.js';
import { errorCodeOf, parseServerTiming, startOf } from '../stats.js';
import { Session, type ScenarioEnv } from './session.js';

export const NODE_START = 'node -e 0';

/**
 * Spawn to exit of `node -e 0`, with a guest's environment: variables such as NODE_EXTRA_CA_CERTS
 * (set on this machine) make every node start load more, which no guest ever does.
 */
export function nodeStart(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    child.once('error', reject);
    child.once('exit', () => resolve(performance.now() - t));
  });
}

export interface Timed {
  status: number;
  ms: number;
  start: string;
  /** server-timing phases, ms. */
  phases: Record<string, number>;
  body: string;
}

/** One request to NAME, timed from sending to the end of the body. */
export async function timedRequest(target: PlatformTarget, name: string, path = '/'): Promise<Timed> {
  const t = performance.now();
  const res = await request(`${target.url}/fn/${name}${path}`);
  const body = await res.body.text();
  const ms = performance.now() - t;
  return { status: res.statusCode, ms, start: String(res.headers['x-fn-start'] ?? ''), phases: parseServerTiming(res.headers['server-timing'] as string | undefined), body };
}

/** A response into its class of RECORDER; transport failures as TRANSPORT. */
export async function recordRequest(recorder: Recorder, target: PlatformTarget, name: string): Promise<void> {
  let r: Timed;
  try {
    r = await timedRequest(target, name);
  } catch {
    recorder.classOf(name, 'none').failure('TRANSPORT');
    return;
  }
  const c = recorder.classOf(name, startOf(r.start));
  if (r.status >= 200 && r.status < 300) c.success(r.ms);
  else c.failure(errorCodeOf(r.status, r.body));
  c.phases(r.phases);
}

export interface ColdOptions {
  functions: string[];
  samples: number;
  /** Goals of the ratios to `node -e 0`, by ratio name (e.g. {"hello restore p50 / node -e 0 p50": "≤ 1.15"}). */
  goals?: Record<string, string>;
}

export async function cold(env: ScenarioEnv, opts: ColdOptions): Promise<LoadReport> {
  return Session.run(env, 'cold', opts.functions, 1, async (session) => {
    session.connections = 1;
    const floor = session.recorder.classOf(NODE_START, 'baseline');
    // Interleaved, so a noisy moment on this shared machine hits every series alike.
    for (let i = 0; i < opts.samples; i++) {
      session.setPhase(`sample ${i + 1}/${opts.samples}`, i / opts.samples);
      floor.success(await nodeStart());
      for (const fn of opts.functions) {
        await stopInstances(env.platform, fn);
        await recordRequest(session.recorder, env.platform, fn);
      }
    }
    session.connections = 0;
    const elapsed = session.elapsedMs();
    for (const t of [NODE_START, ...opts.functions]) session.recorder.addLoadedTime(t, elapsed);

    const classes = session.recorder.stats();
    const base = classes.find((c) => c.target === NODE_START)?.latencyMs;
    const ratios = [];
    for (const c of classes) {
      if (c.target === NODE_START || c.start === 'warm' || c.start === 'none' || !c.latencyMs || !base) continue;
      const name = `${c.target} ${c.start} p50 / ${NODE_START} p50`;
      ratios.push(ratio(name, c.latencyMs.p50 / base.p50, opts.goals?.[name]));
    }
    for (const c of classes) {
      if (c.target !== NODE_START && c.start === 'warm') session.notes.push(`${c.target}: ${c.requests} of its first responses came from a warm microVM (min > 0, or one started in between)`);
    }
    return { options: { functions: opts.functions, connections: 1, durationS: elapsed / 1000, samples: opts.samples }, ratios };
  });
}
