// `npm run bench -- SCENARIO`: benchmarks that print their figures next to a baseline measured
// in the same run, because this machine is shared and noisy. Scenarios: warm.
//
// Targets alternate within a round, and the order is reversed every other round, so that a slow
// spell on the machine does not always land on the same target; every round is printed, then the
// mean, so a noisy round can be seen for what it is.
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { Command, InvalidArgumentError } from 'commander';
import { startBareServer, startPlatform } from './processes.js';
import { deployExample } from './platform-api.js';
import { cold, jailCost, standbyVsWarm, type ColdSeries } from './cold.js';
import { burst } from './burst.js';
import { runLoad, type LoadResult } from './run.js';

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
}

function atLeastTwo(value: string): number {
  const n = Number(value);
  // One round cannot tell a real difference from a noisy spell on a shared machine.
  if (!Number.isInteger(n) || n < 2) throw new InvalidArgumentError('must be a whole number of at least 2');
  return n;
}


function fmt(n: number, digits = 2): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function printResults(title: string, results: LoadResult[]): void {
  console.log(`\n${title}`);
  const header = ['target', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'errors', 'non-2xx', 'starts'];
  const rows = results.map((r) => [
    r.label,
    fmt(r.rps, 0),
    fmt(r.latencyMs.p50),
    fmt(r.latencyMs.p90),
    fmt(r.latencyMs.p99),
    fmt(r.latencyMs.p999),
    fmt(r.latencyMs.max),
    String(r.errors + r.timeouts),
    String(r.non2xx),
    Object.entries(r.starts).map(([k, v]) => `${k}:${v}`).join(' ') || '-',
  ]);
  printRows(header, rows);
}

/** A table: the first column left-aligned, the figures right-aligned. */
function printRows(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

function mean(results: LoadResult[], label: string): LoadResult {
  const avg = (f: (r: LoadResult) => number) => results.reduce((s, r) => s + f(r), 0) / results.length;
  const starts: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.starts)) starts[k] = (starts[k] ?? 0) + v;
  return {
    label,
    connections: results[0]!.connections,
    durationS: results[0]!.durationS,
    requests: avg((r) => r.requests),
    rps: avg((r) => r.rps),
    latencyMs: {
      p50: avg((r) => r.latencyMs.p50),
      p90: avg((r) => r.latencyMs.p90),
      p99: avg((r) => r.latencyMs.p99),
      p999: avg((r) => r.latencyMs.p999),
      max: Math.max(...results.map((r) => r.latencyMs.max)),
      mean: avg((r) => r.latencyMs.mean),
    },
    errors: results.reduce((s, r) => s + r.errors, 0),
    timeouts: results.reduce((s, r) => s + r.timeouts, 0),
    non2xx: results.reduce((s, r) => s + r.non2xx, 0),
    starts,
  };
}

interface Ratio {
  target: string;
  throughputRatio: number;
  p99Ratio: number;
}

function ratios(results: LoadResult[]): Ratio[] {
  const base = results[0]!;
  return results.slice(1).map((r) => ({ target: r.label, throughputRatio: r.rps / base.rps, p99Ratio: r.latencyMs.p99 / base.latencyMs.p99 }));
}

/** Warm throughput and latency through the gateway against a bare node:http hello, alternated. */
async function warm(opts: { connections: number; duration: number; rounds: number; json?: string }): Promise<void> {
  const [bare, platform] = await Promise.all([startBareServer(), startPlatform()]);
  try {
    // One microVM serving every connection (as an isolate platform would), and Lambda's model of
    // one request per microVM spread over up to ten of them.
    await deployExample(platform, 'hello', 'functions/examples/hello.js', { concurrency: opts.connections, max: 1 });
    await deployExample(platform, 'hello-c1', 'functions/examples/hello.js', { concurrency: 1, max: 10 });
    const targets = [
      { label: 'bare node:http', url: `${bare.url}/` },
      { label: `fnctl hello (concurrency ${opts.connections}, 1 microVM)`, url: `${platform.url}/fn/hello` },
      { label: 'fnctl hello (concurrency 1, up to 10 microVMs)', url: `${platform.url}/fn/hello-c1` },
    ];
    const load = loadavg().map((l) => l.toFixed(2)).join(' ');
    console.log(
      `warm: ${opts.connections} connections, ${opts.duration} s per run, ${opts.rounds} rounds alternating ` +
        `(order reversed every other round); load average ${load}; warming up…`,
    );
    for (const t of targets) await runLoad({ label: t.label, url: t.url, connections: opts.connections, durationS: 2 });
    const rounds: LoadResult[][] = [];
    for (let round = 0; round < opts.rounds; round++) {
      const byTarget = new Map<string, LoadResult>();
      const order = round % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) {
        byTarget.set(t.label, await runLoad({ label: t.label, url: t.url, connections: opts.connections, durationS: opts.duration }));
      }
      const results = targets.map((t) => byTarget.get(t.label)!);
      rounds.push(results);
      printResults(`round ${round + 1}`, results);
    }
    const results = targets.map((t, i) => mean(rounds.map((r) => r[i]!), t.label));
    printResults(`mean of ${opts.rounds} rounds`, results);
    const perRound = rounds.map(ratios);
    const meanRatios = ratios(results);
    console.log('');
    meanRatios.forEach((r, i) => {
      const each = perRound.map((rs) => `${fmt(rs[i]!.throughputRatio)}/${fmt(rs[i]!.p99Ratio)}×`).join(', ');
      console.log(
        `${r.target}: throughput ${fmt(r.throughputRatio)} of bare (goal ≥ 0.50), p99 ${fmt(r.p99Ratio)}× bare (goal ≤ 2.00); ` +
          `by round (throughput/p99): ${each}`,
      );
    });
    if (opts.json) writeFileSync(opts.json, JSON.stringify({ scenario: 'warm', results, ratios: meanRatios, rounds, roundRatios: perRound }, null, 2) + '\n');
  } finally {
    await Promise.all([bare.stop(), platform.stop()]);
  }
}

const program = new Command('bench').description('fnctl benchmarks, each against a baseline of the same run');
program
  .command('warm')
  .description('warm throughput and latency of hello through the gateway vs a bare node:http server')
  .option('--connections <n>', 'concurrent connections', positive, 50)
  .option('--duration <seconds>', 'seconds per run', positive, 10)
  .option('--rounds <n>', 'alternating rounds per target (at least 2)', atLeastTwo, 2)
  .option('--json <file>', 'write the results as JSON')
  .action(warm);

program
  .command('cold')
  .description('first-response latency from zero microVMs, with and without snapshot, vs a bare node -e 0')
  .option('--samples <n>', 'starts per series', positive, 15)
  .option('--json <file>', 'write the results as JSON')
  .action(async (opts: { samples: number; json?: string }) => printCold('cold', await cold(opts), opts.json));

program
  .command('jail')
  .description("the jail's cost: hello restore and cold boot on a jailed platform vs one without, same run")
  .option('--samples <n>', 'starts per series', positive, 15)
  .option('--json <file>', 'write the results as JSON')
  .action(async (opts: { samples: number; json?: string }) => printCold('jail', await jailCost(opts), opts.json));

program
  .command('standby')
  .description('a request handed a standby (paused, pre-restored) microVM vs one on a warm microVM, same run')
  .option('--samples <n>', 'pairs', positive, 15)
  .option('--json <file>', 'write the results as JSON')
  .action(async (opts: { samples: number; json?: string }) => printCold('standby', await standbyVsWarm(opts), opts.json));

function printCold(scenario: string, { series, ratios }: { series: ColdSeries[]; ratios: Record<string, number> }, json?: string): void {
  const rows = series.map((s) => [s.label, fmt(s.p50, 1), fmt(s.p90, 1), fmt(s.min, 1), fmt(s.max, 1), fmt(s.startPhaseP50, 1), Object.entries(s.starts).map(([k, v]) => `${k}:${v}`).join(' ')]);
  printRows(['series', 'p50 ms', 'p90 ms', 'min ms', 'max ms', 'restore/init p50 ms', 'starts'], rows);
  for (const [what, ratio] of Object.entries(ratios)) console.log(`${what}: ${fmt(ratio)}`);
  if (json) writeFileSync(json, JSON.stringify({ scenario, series, ratios }, null, 2) + '\n');
}

program
  .command('burst')
  .description('from zero, N connections at once on hello with concurrency 1: statuses and microVMs over time')
  .option('--connections <n>', 'concurrent connections', positive, 100)
  .option('--duration <seconds>', 'seconds', positive, 10)
  .option('--max <n>', 'max microVMs of the function', positive, 10)
  .option('--json <file>', 'write the results as JSON')
  .action(async (opts: { connections: number; duration: number; max: number; json?: string }) => {
    const r = await burst(opts);
    console.log(`burst: ${r.connections} connections for ${r.durationS} s on hello (concurrency 1, max ${opts.max}), from zero microVMs`);
    console.log(`  ${r.requests} responses, ${fmt(r.rps, 0)} req/s, p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, max ${r.latencyMs.max} ms`);
    console.log(`  by status: ${Object.entries(r.statuses).map(([k, v]) => `${k}: ${v}`).join(', ')}; transport errors: ${r.errors}`);
    const bad = Object.keys(r.statuses).filter((s) => s !== '200' && s !== '429');
    console.log(`  errors other than 429 THROTTLED: ${bad.length === 0 && r.errors === 0 ? 'none' : bad.join(', ')}`);
    console.log(`  microVMs over time (s: count): ${r.microvms.filter((_, i) => i % 2 === 0).map(([t, n]) => `${(t / 1000).toFixed(1)}: ${n}`).join(', ')}`);
    if (opts.json) writeFileSync(opts.json, JSON.stringify({ scenario: 'burst', ...r }, null, 2) + '\n');
  });

await program.parseAsync(process.argv);
