// `fnctl load SCENARIO`: runs a load scenario against a running platform (any --url) and shows
// its report: a progress bar while it runs (on a terminal), then the table; --json writes the
// report (`-` for stdout), --html the HTML report. The scenarios themselves live in load/, loaded
// only when the command runs.
import type { Command } from 'commander';
import { CliError, api, findTarget, type Target, type TargetOptions } from './client.js';

export const SCENARIO_NAMES = ['warm', 'cold', 'burst', 'ramp', 'mixed'] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

export interface LoadFlags {
  fn?: string[];
  connections?: string;
  duration?: string;
  samples?: string;
  rounds?: string;
  functions?: string;
  zipf?: string;
  json?: string;
  html?: string;
}

/**
 * Per scenario: default connections and seconds, and the options only it takes. cold has neither
 * connections nor a duration: it sends one request at a time, `--samples` times.
 */
const DEFAULTS: Record<ScenarioName, { connections?: number; durationS?: number; own: (keyof LoadFlags)[] }> = {
  warm: { connections: 50, durationS: 10, own: ['rounds'] },
  cold: { own: ['samples'] },
  burst: { connections: 100, durationS: 10, own: [] },
  ramp: { connections: 50, durationS: 21, own: [] },
  mixed: { connections: 10, durationS: 20, own: ['functions', 'zipf'] },
};
const SCENARIO_ONLY: (keyof LoadFlags)[] = ['rounds', 'samples', 'functions', 'zipf'];

/** A whole number ≥ MIN from flag NAME, or the default when the flag is absent. */
function wholeFlag(name: string, value: string | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < min) throw new CliError(`--${name} = "${value}": must be a whole number of at least ${min}`);
  return n;
}

function positiveFlag(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new CliError(`--${name} = "${value}": must be a positive number`);
  return n;
}

interface Listed {
  name: string;
}

/** The functions the scenario loads: --fn, else the example it needs when deployed. */
function chooseFunctions(scenario: ScenarioName, flags: LoadFlags, deployed: Set<string>, url: string): string[] {
  const given = (flags.fn ?? []).flatMap((f) => f.split(',')).map((f) => f.trim()).filter(Boolean);
  for (const fn of given) {
    if (!deployed.has(fn)) throw new CliError(`function "${fn}" is not deployed on ${url}: pass one that \`fnctl ls\` lists`);
  }
  if ((scenario === 'burst' || scenario === 'ramp') && given.length > 1) throw new CliError(`${scenario} loads one function: pass a single --fn (got ${given.join(', ')})`);
  if (scenario === 'mixed' && given.length === 1) throw new CliError('mixed loads many functions: pass several --fn (or none, to deploy copies of hello)');
  if (given.length > 0) return [...new Set(given)];
  if (scenario === 'mixed') return [];
  if (!deployed.has('hello')) {
    throw new CliError(`no --fn given and the hello example is not deployed on ${url}: pass --fn NAME, or deploy it with \`fnctl deploy functions/examples/hello.js\``);
  }
  return ['hello'];
}

export interface LoadSettings {
  connections: number;
  durationS: number;
  samples: number;
  rounds: number;
  /** mixed: copies of hello. */
  count: number;
  zipf: number;
}

/** The scenario's settings from its flags; a CliError (one line) for a bad value or an option it does not take. */
export function loadSettings(scenario: ScenarioName, flags: LoadFlags): LoadSettings {
  const defaults = DEFAULTS[scenario];
  for (const key of SCENARIO_ONLY) {
    if (flags[key] !== undefined && !defaults.own.includes(key)) throw new CliError(`--${key} is not an option of ${scenario}`);
  }
  if (flags.connections !== undefined && defaults.connections === undefined) throw new CliError(`--connections is not an option of ${scenario}`);
  if (flags.duration !== undefined && defaults.durationS === undefined) throw new CliError(`--duration is not an option of ${scenario}`);
  if (flags.json === '' || flags.html === '') throw new CliError('--json and --html need a file name (--json - for stdout)');
  return {
    connections: wholeFlag('connections', flags.connections, defaults.connections ?? 1),
    durationS: positiveFlag('duration', flags.duration, defaults.durationS ?? 1),
    samples: wholeFlag('samples', flags.samples, 10),
    rounds: wholeFlag('rounds', flags.rounds, 2),
    count: wholeFlag('functions', flags.functions, 50, 2),
    zipf: positiveFlag('zipf', flags.zipf, 1),
  };
}

async function runScenario(scenario: ScenarioName, flags: LoadFlags, target: Target): Promise<void> {
  const { connections, durationS, samples, rounds, count, zipf } = loadSettings(scenario, flags);
  const outputs = { ...(flags.json !== undefined ? { json: flags.json } : {}), ...(flags.html !== undefined ? { html: flags.html } : {}) };
  const { checkOutputs, writeOutputs } = await import('../load/report/output.js');
  try {
    checkOutputs(outputs);
  } catch (err) {
    throw new CliError((err as Error).message);
  }

  const { functions: listed } = await api<{ functions: Listed[] }>(target, 'GET', '/api/functions');
  let functions = chooseFunctions(scenario, flags, new Set(listed.map((f) => f.name)), target.url);

  const [{ formatReport }, { progressDisplay }] = await Promise.all([import('../load/report/text.js'), import('../load/progress.js')]);
  const toStdout = flags.json !== '-';
  const say = (line: string) => (toStdout ? process.stdout : process.stderr).write(`${line}\n`);

  if (scenario === 'mixed' && functions.length === 0) {
    const { deployCopies, mixedNames } = await import('../load/scenarios/mixed.js');
    functions = mixedNames(count);
    const deployed = await deployCopies(target, functions, {}, (name) => process.stderr.write(`\rdeploying ${name}…`));
    if (deployed > 0) process.stderr.write(`\rdeployed ${deployed} copies of hello (${functions[0]} … ${functions.at(-1)})\n`);
  }

  const progress = toStdout ? progressDisplay(process.stdout) : { onProgress: () => {}, stop: () => {} };
  const env = { platform: target, onProgress: progress.onProgress };
  let report;
  try {
    switch (scenario) {
      case 'warm':
        report = await (await import('../load/scenarios/warm.js')).warm(env, { functions, connections, durationS, rounds });
        break;
      case 'cold':
        report = await (await import('../load/scenarios/cold.js')).cold(env, { functions, samples });
        break;
      case 'burst':
        report = await (await import('../load/scenarios/burst.js')).burst(env, { fn: functions[0]!, connections, durationS });
        break;
      case 'ramp':
        report = await (await import('../load/scenarios/ramp.js')).ramp(env, { fn: functions[0]!, connections, durationS });
        break;
      case 'mixed':
        report = await (await import('../load/scenarios/mixed.js')).mixed(env, { functions, connections, durationS, zipf });
        break;
    }
  } finally {
    progress.stop();
  }
  say(formatReport(report));
  const { written, errors } = await writeOutputs(report, outputs);
  for (const file of written) say(`wrote ${file}`);
  if (errors.length > 0) throw new CliError(errors.join('; '));
}

export function registerLoad(program: Command, targetOptions: (cmd: Command) => Command, globals: (cmd: Command) => TargetOptions): void {
  targetOptions(program.command('load'))
    .description('run a load scenario against the platform and report latency by start type')
    .argument('<scenario>', SCENARIO_NAMES.join(' | '))
    .option('--fn <name>', 'function to load (repeatable, or NAME,NAME; default: hello, or copies of it for mixed)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--connections <n>', 'concurrent connections; the peak for ramp (default: warm 50, burst 100, ramp 50, mixed 10; not for cold)')
    .option('--duration <seconds>', 'seconds of load: per run for warm, in all for the others (default: warm 10, burst 10, ramp 21, mixed 20; not for cold)')
    .option('--rounds <n>', 'warm: alternating rounds of each target and the baseline (default 2)')
    .option('--samples <n>', 'cold: starts from zero per function (default 10)')
    .option('--functions <n>', 'mixed: copies of hello to deploy and load, mixed-00… (default 50)')
    .option('--zipf <s>', 'mixed: Zipf exponent of the popularity (default 1)')
    .option('--json <file>', 'write the report as JSON (- for stdout)')
    .option('--html <file>', 'write the HTML report')
    .action(async (scenario: string, flags: LoadFlags, cmd: Command) => {
      if (!(SCENARIO_NAMES as readonly string[]).includes(scenario)) {
        throw new CliError(`unknown scenario "${scenario}": must be one of ${SCENARIO_NAMES.join(', ')}`);
      }
      await runScenario(scenario as ScenarioName, flags, findTarget(globals(cmd)));
    });
}
