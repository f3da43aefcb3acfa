// ramp: from zero microVMs, connections rising in steps and falling again (1 → N/4 → N/2 → N →
// N/2 → N/4 → 1), the duration split evenly across the steps: the timeline shows how the
// autoscaler follows, with microVMs, queue and latency over time.
import type { LoadReport } from '../report/schema.js';
import { drive } from '../run.js';
import { stopInstances } from '../platform-api.js';
import { Session, type ScenarioEnv } from './session.js';

/** The connections of each step for a peak of N, repeated neighbours merged (N = 2 gives 1, 2, 1). */
export function rampSteps(n: number): number[] {
  const steps = [1, n / 4, n / 2, n, n / 2, n / 4, 1].map((c) => Math.max(1, Math.round(c)));
  return steps.filter((c, i) => i === 0 || c !== steps[i - 1]);
}

export interface RampOptions {
  fn: string;
  /** The peak. */
  connections: number;
  /** All steps together. */
  durationS: number;
}

export async function ramp(env: ScenarioEnv, opts: RampOptions): Promise<LoadReport> {
  const steps = rampSteps(opts.connections);
  const stepS = opts.durationS / steps.length;
  await stopInstances(env.platform, opts.fn);
  return Session.run(env, 'ramp', [opts.fn], opts.durationS * 1000, async (session) => {
    for (const [i, connections] of steps.entries()) {
      session.setPhase(`step ${i + 1}/${steps.length}: ${connections} connection${connections === 1 ? '' : 's'}`);
      session.connections = connections;
      await drive({ url: `${env.platform.url}/fn/${opts.fn}`, target: opts.fn, connections, durationS: stepS, recorder: session.recorder });
    }
    session.connections = 0;
    return { options: { functions: [opts.fn], connections: opts.connections, durationS: opts.durationS, steps } };
  });
}
