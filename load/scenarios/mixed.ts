// mixed: many functions with skewed popularity, as in the Azure Functions traces (a few functions
// get most calls, most get few): each request picks its function by a Zipf law. On a platform
// with a memory budget the popular functions stay warm and the rest start cold and get evicted.
// Reports the cold-start rate, evictions and latency per start type. Classes are per start type
// over all the functions together (the target is the group); requests per function are in notes.
import type { LoadReport } from '../report/schema.js';
import { drive } from '../run.js';
import { bundleOf, deployBundle, listFunctions, stopInstances, type PlatformTarget } from '../platform-api.js';
import { zipfPicker } from '../stats.js';
import { Session, type ScenarioEnv } from './session.js';

export const HELLO = 'functions/examples/hello.js';

/** mixed-00, mixed-01, … (as many digits as COUNT needs, at least two). */
export function mixedNames(count: number): string[] {
  const width = Math.max(2, String(count - 1).length);
  return Array.from({ length: count }, (_, i) => `mixed-${String(i).padStart(width, '0')}`);
}

/** Deploys the copies of hello in NAMES that the platform does not have yet; returns how many it deployed. */
export async function deployCopies(platform: PlatformTarget, names: string[], settings: Record<string, unknown> = {}, onEach?: (name: string) => void): Promise<number> {
  const existing = new Set((await listFunctions(platform)).map((f) => f.name));
  const missing = names.filter((n) => !existing.has(n));
  if (missing.length === 0) return 0;
  const bundle = await bundleOf(HELLO);
  // A few at a time: each deploy runs init and takes a snapshot, mostly waiting on the guest.
  const queue = [...missing];
  const worker = async () => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      onEach?.(name);
      await deployBundle(platform, name, bundle, settings);
    }
  };
  await Promise.all(Array.from({ length: Math.min(3, missing.length) }, worker));
  return missing.length;
}

/**
 * The note on requests sent per function: the five functions that got the most (in the order of
 * their counts, which a Zipf draw need not follow), their share, and how many got none.
 */
export function sentNote(functions: string[], sent: number[], shown = 5): string {
  const total = sent.reduce((a, b) => a + b, 0) || 1;
  const top = sent
    .map((count, k) => ({ fn: functions[k]!, count, k }))
    .sort((a, b) => b.count - a.count || a.k - b.k)
    .slice(0, shown)
    .map((f) => `${f.fn} ${((100 * f.count) / total).toFixed(1)}%`);
  const untouched = sent.filter((c) => c === 0).length;
  return `requests sent by function (most requests first): ${top.join(', ')}${functions.length > shown ? ', …' : ''}; ${untouched} of ${functions.length} functions got none`;
}

export interface MixedOptions {
  functions: string[];
  connections: number;
  durationS: number;
  /** Zipf exponent (default 1): the k-th function gets a share ∝ 1/k^s. */
  zipf?: number;
  random?: () => number;
}

export async function mixed(env: ScenarioEnv, opts: MixedOptions): Promise<LoadReport> {
  const s = opts.zipf ?? 1;
  const n = opts.functions.length;
  const pick = zipfPicker(n, s, opts.random);
  const sent = new Array<number>(n).fill(0);
  const paths = opts.functions.map((fn) => `/fn/${fn}`);
  for (const fn of opts.functions) await stopInstances(env.platform, fn);
  const group = `${n} functions`;
  return Session.run(env, 'mixed', opts.functions, opts.durationS * 1000, async (session) => {
    session.setPhase(`${opts.connections} connections on ${group}, Zipf s=${s}`);
    session.connections = opts.connections;
    await drive({
      url: env.platform.url,
      target: group,
      connections: opts.connections,
      durationS: opts.durationS,
      recorder: session.recorder,
      pickPath: () => {
        const k = pick();
        sent[k]!++;
        return paths[k]!;
      },
    });
    session.connections = 0;
    session.notes.push(sentNote(opts.functions, sent));
    return { options: { functions: opts.functions, connections: opts.connections, durationS: opts.durationS, zipf: s } };
  });
}
