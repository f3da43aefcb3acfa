// Two benchmarks of how microVMs start, kept apart from the load scenarios: the jail's cost on
// restore and cold boot (a jailed platform against one without a jail), and a request handed a
// standby microVM against one on a warm microVM.
import { request } from 'undici';
import { timedRequest } from './scenarios/cold.js';
import { startPlatform } from './processes.js';
import { deployExample, stopInstances, type PlatformTarget } from './platform-api.js';

export interface ColdSample {
  totalMs: number;
  /** restore or init duration from server-timing. */
  startMs: number;
  start: string;
}

export interface ColdSeries {
  label: string;
  samples: number;
  p50: number;
  p90: number;
  min: number;
  max: number;
  /** Median of the restore/init phase the platform reported. */
  startPhaseP50: number;
  starts: Record<string, number>;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

function summarize(label: string, samples: ColdSample[]): ColdSeries {
  const totals = samples.map((s) => s.totalMs).sort((a, b) => a - b);
  const phases = samples.map((s) => s.startMs).sort((a, b) => a - b);
  const starts: Record<string, number> = {};
  for (const s of samples) starts[s.start] = (starts[s.start] ?? 0) + 1;
  return { label, samples: samples.length, p50: percentile(totals, 0.5), p90: percentile(totals, 0.9), min: totals[0]!, max: totals.at(-1)!, startPhaseP50: percentile(phases, 0.5), starts };
}

async function firstResponse(target: PlatformTarget, name: string): Promise<ColdSample> {
  await stopInstances(target, name);
  return timed(target, name);
}

async function timed(target: PlatformTarget, name: string): Promise<ColdSample> {
  const r = await timedRequest(target, name, '/?key=42');
  if (r.status !== 200) throw new Error(`${name} answered ${r.status}`);
  return { totalMs: r.ms, startMs: r.phases.restore ?? r.phases.init ?? 0, start: r.start || '?' };
}

/**
 * The jail's cost: hello restored and booted on a jailed platform and on one without a jail,
 * sampled interleaved in the same run.
 */
export async function jailCost(opts: { samples: number }): Promise<{ series: ColdSeries[]; ratios: Record<string, number> }> {
  const [jailed, bare] = await Promise.all([startPlatform({ isolation: 'auto' }), startPlatform({ isolation: 'none' })]);
  try {
    const platforms = [
      { target: jailed, label: 'jailed' },
      { target: bare, label: 'no jail' },
    ];
    const kinds = [
      { name: 'hello-snap', snapshot: 'required', label: 'restore' },
      { name: 'hello-boot', snapshot: 'off', label: 'cold boot' },
    ];
    for (const p of platforms) for (const k of kinds) await deployExample(p.target, k.name, 'functions/examples/hello.js', { snapshot: k.snapshot });
    const samples = new Map<string, ColdSample[]>();
    for (let i = 0; i < opts.samples; i++) {
      for (const p of platforms) {
        for (const k of kinds) {
          const key = `hello ${k.label}, ${p.label}`;
          if (!samples.has(key)) samples.set(key, []);
          samples.get(key)!.push(await firstResponse(p.target, k.name));
        }
      }
      process.stderr.write(`\rjail: sample ${i + 1}/${opts.samples}`);
    }
    process.stderr.write('\n');
    const series = [...samples.entries()].map(([label, s]) => summarize(label, s));
    const p50 = (label: string) => series.find((s) => s.label === label)!.p50;
    const ratios = {
      'restore, jailed / no jail (goal ≤ 1.10)': p50('hello restore, jailed') / p50('hello restore, no jail'),
      'cold boot, jailed / no jail (goal ≤ 1.10)': p50('hello cold boot, jailed') / p50('hello cold boot, no jail'),
    };
    return { series, ratios };
  } finally {
    await Promise.all([jailed.stop(), bare.stop()]);
  }
}

async function pausedCount(target: PlatformTarget, name: string): Promise<number> {
  const res = await request(`${target.url}/api/functions/${name}/instances`, { headers: { authorization: `Bearer ${target.token}` } });
  const body = (await res.body.json()) as { instances: { state: string }[] };
  return body.instances.filter((i) => i.state === 'paused').length;
}

/**
 * A request handed a standby microVM (restored, paused, resumed for it) against a request on a
 * warm one, alternated in the same run: what keeping standbys buys over restoring on demand.
 */
export async function standbyVsWarm(opts: { samples: number }): Promise<{ series: ColdSeries[]; ratios: Record<string, number> }> {
  const platform = await startPlatform();
  try {
    await deployExample(platform, 'hello', 'functions/examples/hello.js', { standby: 1, max: 2 });
    const standby: ColdSample[] = [];
    const warm: ColdSample[] = [];
    for (let i = 0; i < opts.samples; i++) {
      await stopInstances(platform, 'hello');
      const deadline = Date.now() + 10_000;
      while ((await pausedCount(platform, 'hello')) < 1) {
        if (Date.now() > deadline) throw new Error('no standby microVM became ready within 10 s');
        await new Promise((r) => setTimeout(r, 20));
      }
      standby.push(await timed(platform, 'hello'));
      warm.push(await timed(platform, 'hello'));
      process.stderr.write(`\rstandby: sample ${i + 1}/${opts.samples}`);
    }
    process.stderr.write('\n');
    const series = [summarize('hello, handed a standby microVM', standby), summarize('hello, on a warm microVM', warm)];
    return { series, ratios: { 'standby p50 − warm p50, ms (goal ≤ 2)': series[0]!.p50 - series[1]!.p50 } };
  } finally {
    await platform.stop();
  }
}
