// warm: steady load on warm microVMs against a bare node:http hello server in a process of its
// own, in the same run. Targets alternate within a round and the order is reversed every other
// round, so a slow spell on this shared machine does not always land on the same target. A short
// warm-up (not recorded) starts the microVMs first.
//
// A second reference runs beside them: the bare server with one process hop in it (HOP, see
// load/hop-server.ts). Its ratios have no goal; they show what a hop alone costs on this machine,
// the part of the functions' ratios no platform that runs functions outside its HTTP server avoids.
import type { ClassStats, LoadReport } from '../report/schema.js';
import { ratio } from '../report/build.js';
import { startBareServer } from '../processes.js';
import { drive, type DriveResult } from '../run.js';
import { Recorder } from '../recorder.js';
import { Session, type ScenarioEnv } from './session.js';

export interface WarmOptions {
  functions: string[];
  connections: number;
  /** Seconds per run: one target in one round. */
  durationS: number;
  rounds: number;
  /** Seconds of unrecorded load on each target before the rounds (default 1). */
  warmupS?: number;
}

export const BARE = 'bare node:http';
export const HOP = 'node:http + hop';

/** 2xx responses per second over the time the class was loaded (its rps counts every response). */
export function okRps(c: ClassStats): number {
  return c.requests > 0 ? (c.rps * c.ok) / c.requests : 0;
}

/**
 * Each function's warm throughput and p99 against the baseline's, and notes with the same per
 * round. Throughput is 2xx responses per second: a failed response that carries x-fn-start: warm
 * (a function error, a timeout) is no throughput.
 */
export function warmRatios(classes: ClassStats[], functions: string[], byRound: Map<string, DriveResult>[]): { ratios: LoadReport['ratios']; notes: string[] } {
  const base = classes.find((c) => c.target === BARE);
  const ratios = [];
  const notes: string[] = [];
  for (const fn of functions) {
    const c = classes.find((k) => k.target === fn && k.start === 'warm');
    if (!c) {
      notes.push(`${fn}: no warm responses, so no ratio to the baseline`);
      continue;
    }
    if (!base || base.ok === 0) {
      notes.push(`${fn}: no successful baseline responses, so no ratio to the baseline`);
      continue;
    }
    ratios.push(ratio(`${fn} warm throughput / ${BARE}`, okRps(c) / okRps(base), '≥ 0.5'));
    if (c.latencyMs && base.latencyMs) ratios.push(ratio(`${fn} warm p99 / ${BARE} p99`, c.latencyMs.p99 / base.latencyMs.p99, '≤ 2'));
    notes.push(`${fn} by round, throughput/p99 to ${BARE} (2xx of any start): ${byRoundToBare(byRound, fn)}`);
  }
  return { ratios, notes };
}

/** TARGET's throughput and p99 to the bare server's in each round: "round 1 0.45/2.10×, round 2 …". */
function byRoundToBare(byRound: Map<string, DriveResult>[], target: string): string {
  return byRound
    .map((r, i) => {
      const t = r.get(target);
      const b = r.get(BARE);
      if (!t || !b) return `round ${i + 1} -`;
      const p99 = t.latencyMs && b.latencyMs ? `${(t.latencyMs.p99 / b.latencyMs.p99).toFixed(2)}×` : '-';
      return `round ${i + 1} ${(t.okRps / b.okRps).toFixed(2)}/${p99}`;
    })
    .join(', ');
}

/** The hop server's throughput and p99 to the bare server's, without goals (see the header). */
export function hopRatios(classes: ClassStats[]): LoadReport['ratios'] {
  const base = classes.find((c) => c.target === BARE);
  const hop = classes.find((c) => c.target === HOP);
  if (!base || !hop || base.ok === 0 || hop.ok === 0) return [];
  const out = [ratio(`${HOP} throughput / ${BARE} (reference)`, okRps(hop) / okRps(base))];
  if (hop.latencyMs && base.latencyMs) out.push(ratio(`${HOP} p99 / ${BARE} p99 (reference)`, hop.latencyMs.p99 / base.latencyMs.p99));
  return out;
}

export async function warm(env: ScenarioEnv, opts: WarmOptions): Promise<LoadReport> {
  const bare = await startBareServer();
  const hop = await startBareServer({ hop: true }).catch(async (err: unknown) => {
    await bare.stop();
    throw err;
  });
  try {
    const targets = [
      { label: BARE, url: `${bare.url}/`, baseline: true },
      { label: HOP, url: `${hop.url}/`, baseline: true },
      ...opts.functions.map((fn) => ({ label: fn, url: `${env.platform.url}/fn/${fn}`, baseline: false })),
    ];
    const warmupS = opts.warmupS ?? 1;
    const scratch = new Recorder();
    for (const t of targets) await drive({ url: t.url, target: t.label, baseline: t.baseline, connections: opts.connections, durationS: warmupS, recorder: scratch });

    const plannedMs = opts.rounds * targets.length * opts.durationS * 1000;
    return await Session.run(env, 'warm', opts.functions, plannedMs, async (session) => {
      const byRound: Map<string, DriveResult>[] = [];
      for (let round = 0; round < opts.rounds; round++) {
        const results = new Map<string, DriveResult>();
        for (const t of round % 2 === 0 ? targets : [...targets].reverse()) {
          session.setPhase(`round ${round + 1}/${opts.rounds}: ${t.label}`);
          session.connections = opts.connections;
          results.set(t.label, await drive({ url: t.url, target: t.label, baseline: t.baseline, connections: opts.connections, durationS: opts.durationS, recorder: session.recorder }));
          session.connections = 0;
        }
        byRound.push(results);
      }
      const classes = session.recorder.stats();
      const { ratios, notes } = warmRatios(classes, opts.functions, byRound);
      session.notes.push(...notes);
      session.notes.push(`${HOP} (a reference without goals: the bare server with one process hop) by round, throughput/p99 to ${BARE}: ${byRoundToBare(byRound, HOP)}`);
      return {
        options: { functions: opts.functions, connections: opts.connections, durationS: opts.durationS, rounds: opts.rounds, warmupS },
        ratios: [...ratios, ...hopRatios(classes)],
      };
    });
  } finally {
    await Promise.all([bare.stop(), hop.stop()]);
  }
}
