// `npm run bench -- SCENARIO`: each scenario starts its own platform (`fnctl up` in a process of
// its own, on a throwaway data folder), deploys the examples it needs, and runs the same scenario
// code as `fnctl load`, with the baseline measured in the same run because this machine is shared
// and noisy. Scenarios: warm, cold, burst, ramp, mixed (load reports), and jail, standby.
import { writeFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import type { LoadReport } from './report/schema.js';
import { LoadReportSchema } from './report/schema.js';
import { ratio } from './report/build.js';
import { formatReport, table } from './report/text.js';
import { checkOutputs, writeOutputs, type OutputOptions } from './report/output.js';
import { startPlatform, upAccepts, type RunningPlatform } from './processes.js';
import { deployExample } from './platform-api.js';
import { jailCost, standbyVsWarm, type ColdSeries } from './jail-standby.js';
import { progressDisplay } from './progress.js';
import type { ScenarioEnv } from './scenarios/session.js';
import { warm } from './scenarios/warm.js';
import { cold } from './scenarios/cold.js';
import { burst } from './scenarios/burst.js';
import { ramp } from './scenarios/ramp.js';
import { deployCopies, mixed, mixedNames, HELLO } from './scenarios/mixed.js';

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
}

function whole(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number of at least 1');
  return n;
}

function atLeastTwo(value: string): number {
  const n = Number(value);
  // One round cannot tell a real difference from a noisy spell on a shared machine.
  if (!Number.isInteger(n) || n < 2) throw new InvalidArgumentError('must be a whole number of at least 2');
  return n;
}

/** Starts a platform, runs SCENARIO on it, prints the report and writes --json/--html. */
async function bench(out: OutputOptions, scenario: (env: ScenarioEnv, platform: RunningPlatform) => Promise<LoadReport>, platformArgs: string[] = []): Promise<LoadReport> {
  checkOutputs(out);
  const platform = await startPlatform({ args: platformArgs });
  let report: LoadReport;
  const progress = progressDisplay();
  try {
    report = await scenario({ platform, onProgress: progress.onProgress }, platform);
  } finally {
    progress.stop();
    await platform.stop();
  }
  console.log(formatReport(report));
  const { written, errors } = await writeOutputs(report, out);
  for (const file of written) console.log(`wrote ${file}`);
  if (errors.length > 0) throw new Error(errors.join('; '));
  return report;
}

const program = new Command('bench').description('fnctl benchmarks, each against a baseline of the same run');

/** A scenario's command, with --json and --html. */
function scenarioCommand(name: string, description: string): Command {
  return program
    .command(name)
    .description(description)
    .option('--json <file>', 'write the report as JSON')
    .option('--html <file>', 'write the HTML report');
}

/** burst and ramp: hello with concurrency 1 and at most --max microVMs, from zero. */
function helloScenario(name: 'burst' | 'ramp', description: string, connections: number, durationS: number, run: (env: ScenarioEnv, opts: { fn: string; connections: number; durationS: number }) => Promise<LoadReport>): Command {
  return scenarioCommand(name, description)
    .option('--connections <n>', name === 'ramp' ? 'peak connections' : 'concurrent connections', whole, connections)
    .option('--duration <seconds>', 'seconds in all', positive, durationS)
    .option('--max <n>', 'max microVMs of the function', whole, 10)
    .action(async (opts: { connections: number; duration: number; max: number } & OutputOptions) => {
      const report = await bench(opts, async (env, platform) => {
        await deployExample(platform, 'hello', HELLO, { concurrency: 1, max: opts.max });
        return run(env, { fn: 'hello', connections: opts.connections, durationS: opts.duration });
      });
      const bad = report.classes.flatMap((c) => Object.keys(c.errors)).filter((code) => code !== 'THROTTLED');
      console.log(`errors other than 429 THROTTLED: ${bad.length === 0 ? 'none' : [...new Set(bad)].join(', ')}`);
    });
}

scenarioCommand('warm', 'warm throughput and latency of hello through the gateway vs a bare node:http server, alternating rounds')
  .option('--connections <n>', 'concurrent connections', whole, 50)
  .option('--duration <seconds>', 'seconds per run', positive, 10)
  .option('--rounds <n>', 'alternating rounds per target (at least 2)', atLeastTwo, 2)
  .action(async (opts: { connections: number; duration: number; rounds: number } & OutputOptions) => {
    await bench(opts, async (env, platform) => {
      // One microVM serving every connection (as an isolate platform would), and Lambda's model of
      // one request per microVM spread over ten of them. Both keep their microVMs between
      // runs (min = max, as provisioned concurrency does): otherwise the autoscaler stops most of
      // hello-c1's ten while the other targets run and restores them at the start of each of its
      // own runs (eight restores a run), which is neither warm nor quiet for the other targets.
      await deployExample(platform, 'hello', HELLO, { concurrency: opts.connections, min: 1, max: 1 });
      await deployExample(platform, 'hello-c1', HELLO, { concurrency: 1, min: 10, max: 10 });
      return warm(env, { functions: ['hello', 'hello-c1'], connections: opts.connections, durationS: opts.duration, rounds: opts.rounds });
    });
  });

scenarioCommand('cold', 'first-response latency from zero microVMs, with and without snapshot, vs a bare node -e 0')
  .option('--samples <n>', 'starts per series', whole, 15)
  .action(async (opts: { samples: number } & OutputOptions) => {
    await bench(opts, async (env, platform) => {
      const functions = [
        { name: 'hello-snap', file: HELLO, snapshot: 'required' },
        { name: 'hello-boot', file: HELLO, snapshot: 'off' },
        { name: 'heavy-snap', file: 'functions/examples/heavy-init.js', snapshot: 'required' },
        { name: 'heavy-boot', file: 'functions/examples/heavy-init.js', snapshot: 'off' },
      ];
      for (const f of functions) await deployExample(platform, f.name, f.file, { snapshot: f.snapshot });
      const report = await cold(env, { functions: functions.map((f) => f.name), samples: opts.samples, goals: { 'hello-snap restore p50 / node -e 0 p50': '≤ 1.15' } });
      const p50 = (target: string, start: string) => report.classes.find((c) => c.target === target && c.start === start)?.latencyMs?.p50;
      const restore = p50('heavy-snap', 'restore');
      const boot = p50('heavy-boot', 'cold');
      if (restore !== undefined && boot !== undefined) report.ratios.unshift(ratio('heavy-init restore p50 / its boot p50', restore / boot, '≤ 0.33'));
      return LoadReportSchema.parse(report);
    });
  });

helloScenario('burst', 'from zero, N connections at once on hello with concurrency 1: time until all are served, microVMs started, statuses', 100, 10, burst);
helloScenario('ramp', 'connections rising in steps to N and falling on hello with concurrency 1: microVMs, queue and latency over time', 50, 21, ramp);

scenarioCommand('mixed', 'many copies of hello with Zipf-skewed popularity on a platform with a small memory budget: cold starts, evictions')
  .option('--functions <n>', 'copies of hello (mixed-00, …)', whole, 50)
  .option('--connections <n>', 'concurrent connections', whole, 10)
  .option('--duration <seconds>', 'seconds', positive, 20)
  .option('--zipf <s>', 'Zipf exponent of the popularity', positive, 1)
  .option('--memory-budget <MiB>', "the platform's memory budget for microVMs (2048: sixteen 128 MiB microVMs)", whole, 2048)
  .action(async (opts: { functions: number; connections: number; duration: number; zipf: number; memoryBudget: number } & OutputOptions) => {
    const budget = upAccepts('--memory-budget');
    await bench(
      opts,
      async (env, platform) => {
        const names = mixedNames(opts.functions);
        await deployCopies(platform, names);
        const report = await mixed(env, { functions: names, connections: opts.connections, durationS: opts.duration, zipf: opts.zipf });
        report.notes.push(
          budget
            ? `platform started with --memory-budget ${opts.memoryBudget} (MiB)`
            : 'this fnctl up has no --memory-budget yet: the platform ran without a memory budget, so nothing was evicted for memory',
        );
        report.options.memoryBudgetMiB = budget ? opts.memoryBudget : 0;
        return LoadReportSchema.parse(report);
      },
      budget ? ['--memory-budget', String(opts.memoryBudget)] : [],
    );
  });

program
  .command('jail')
  .description("the jail's cost: hello restore and cold boot on a jailed platform vs one without, same run")
  .option('--samples <n>', 'starts per series', positive, 15)
  .option('--json <file>', 'write the results as JSON')
  .action(async (opts: { samples: number; json?: string }) => {
    checkOutputs(opts);
    printSeries('jail', await jailCost(opts), opts.json);
  });

program
  .command('standby')
  .description('a request handed a standby (paused, pre-restored) microVM vs one on a warm microVM, same run')
  .option('--samples <n>', 'pairs', positive, 15)
  .option('--json <file>', 'write the results as JSON')
  .action(async (opts: { samples: number; json?: string }) => {
    checkOutputs(opts);
    printSeries('standby', await standbyVsWarm(opts), opts.json);
  });

function printSeries(scenario: string, { series, ratios }: { series: ColdSeries[]; ratios: Record<string, number> }, json?: string): void {
  const f = (n: number) => n.toFixed(1);
  const rows = series.map((s) => [s.label, f(s.p50), f(s.p90), f(s.min), f(s.max), f(s.startPhaseP50), Object.entries(s.starts).map(([k, v]) => `${k}:${v}`).join(' ')]);
  console.log(table(['series', 'p50 ms', 'p90 ms', 'min ms', 'max ms', 'restore/init p50 ms', 'starts'], rows));
  for (const [what, value] of Object.entries(ratios)) console.log(`${what}: ${value.toFixed(2)}`);
  if (json) writeFileSync(json, JSON.stringify({ scenario, series, ratios }, null, 2) + '\n');
}

await program.parseAsync(process.argv);
