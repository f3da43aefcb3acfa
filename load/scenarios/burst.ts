// burst: from zero microVMs, N connections at once on one function: how long until every
// connection had its first successful response, how many microVMs the platform started, and
// every response by status (errors by code in the classes).
import type { LoadReport } from '../report/schema.js';
import { drive } from '../run.js';
import { stopInstances } from '../platform-api.js';
import { Session, type ScenarioEnv } from './session.js';

export interface BurstOptions {
  fn: string;
  connections: number;
  durationS: number;
}

export async function burst(env: ScenarioEnv, opts: BurstOptions): Promise<LoadReport> {
  await stopInstances(env.platform, opts.fn);
  return Session.run(env, 'burst', [opts.fn], opts.durationS * 1000, async (session) => {
    session.setPhase(`${opts.connections} connections on ${opts.fn}`);
    session.connections = opts.connections;
    const r = await drive({ url: `${env.platform.url}/fn/${opts.fn}`, target: opts.fn, connections: opts.connections, durationS: opts.durationS, recorder: session.recorder });
    session.connections = 0;
    session.notes.push(`responses by status: ${Object.entries(r.statuses).map(([s, n]) => `${s}: ${n}`).join(', ') || 'none'}`);
    if (r.allServedMs === null) session.notes.push('not every connection had a successful response before the end');
    return {
      options: { functions: [opts.fn], connections: opts.connections, durationS: opts.durationS },
      counters: { timeToAllServedMs: r.allServedMs },
    };
  });
}
