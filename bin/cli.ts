// The fnctl command line (commander). Each command is a thin client of the gateway's HTTP API,
// except `up`, which runs the platform. Errors are one line on stderr and a non-zero exit.
import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { packageFunction } from '../functions/package.js';
import { resolveSettings, validateName, type Settings } from '../functions/settings.js';
import { toFnError } from '../core/errors.js';
import { CliError, api, call, errorMessage, findTarget, parseJson, type TargetOptions } from './client.js';
import { up } from './up.js';
import { formatLogRecord, printTable } from './format.js';
import { registerLoad } from './load.js';

const program = new Command('fnctl')
  .description('Deploy functions to snapshot-restored microVMs and call them over HTTP')
  .option('--url <url>', 'platform URL (else FNCTL_URL, else DIR/gateway.json)')
  .option('--token <token>', 'control API token (else FNCTL_TOKEN, else DIR/gateway.json)')
  .option('--data <dir>', 'data folder of the platform (default .fnctl)')
  // `invoke --data` is the request body, so options belong to the command they follow:
  // `fnctl --data DIR invoke NAME --data JSON`.
  .enablePositionalOptions()
  .showHelpAfterError('(add --help for usage)')
  .configureOutput({ outputError: (str, write) => write(`fnctl: ${str.replace(/^error: /, 'error: ')}`) });

/** --url, --token and (but for invoke) --data DIR, accepted after the command name too. */
function targetOptions(cmd: Command, withDataDir = true): Command {
  cmd.option('--url <url>', 'platform URL (else FNCTL_URL, else DIR/gateway.json)');
  cmd.option('--token <token>', 'control API token (else FNCTL_TOKEN, else DIR/gateway.json)');
  if (withDataDir) cmd.option('--data <dir>', 'data folder of the platform (default .fnctl)');
  return cmd;
}

function globals(cmd: Command): TargetOptions {
  type T = { url?: string; token?: string; data?: string };
  const parent = (cmd.parent?.opts() ?? {}) as T;
  const own = cmd.opts() as T;
  const url = own.url ?? parent.url;
  const token = own.token ?? parent.token;
  const data = (cmd.name() === 'invoke' ? undefined : own.data) ?? parent.data;
  return { ...(url ? { url } : {}), ...(token ? { token } : {}), ...(data ? { data } : {}) };
}

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new InvalidArgumentError('must be a port number in [0, 65535]');
  return n;
}

/** Numbers stay strings when malformed, so the settings schema names the bad value. */
function numeric(value: string): number | string {
  return /^-?\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : value;
}

function collectEnv(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`"${value}" must be KEY=VALUE`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

function print(json: boolean, value: unknown, human: () => void): void {
  if (json) console.log(JSON.stringify(value, null, 2));
  else human();
}

program
  .command('up')
  .description('run the platform in the foreground')
  .option('--data <dir>', 'data folder: registry, bundles, logs and gateway.json (default .fnctl)')
  .addOption(new Option('--port <port>', 'port to listen on').default(8080).argParser(port))
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .addOption(new Option('--examples', 'deploy the example functions at start').hideHelp())
  .addOption(new Option('--log-level <level>', 'platform log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
  .addOption(new Option('--isolation <mode>', 'jail microVMs (auto: the strongest this machine offers, see fnctl doctor)').choices(['auto', 'none']).default('auto'))
  .addOption(new Option('--guest-scheduling <policy>', "guests' CPU scheduling policy (batch: SCHED_BATCH, a waking guest does not preempt the gateway)").choices(['batch', 'normal']).default('batch'))
  .option('--overcommit <ratio>', "memory budget = the machine's memory × this ratio (default 1.0)", numeric)
  .option('--memory-budget <MiB>', 'memory budget in MiB, instead of the machine\'s memory × overcommit', numeric)
  .action(async (opts: { port: number; host: string; examples?: boolean; logLevel?: string; isolation: 'auto' | 'none'; guestScheduling: 'batch' | 'normal'; overcommit?: number | string; memoryBudget?: number | string }, cmd: Command) => {
    await up({ ...opts, data: globals(cmd).data ?? '.fnctl' });
  });

targetOptions(program.command('deploy'))
  .description('bundle a function (a file or a folder) and deploy it as a new version')
  .argument('<path>', 'a .js .mjs .cjs .ts file, or a folder with package.json or index.*')
  .option('--name <name>', 'function name (default: from the file or folder)')
  .option('--memory <MiB>', 'memory of each microVM, MiB (default 128)', numeric)
  .option('--timeout <seconds>', 'time limit of one invocation (default 30)', numeric)
  .option('--concurrency <n>', 'requests one microVM serves at once (default 1)', numeric)
  .option('--min <n>', 'microVMs kept running (default 0)', numeric)
  .option('--max <n>', 'microVMs at most (default 10)', numeric)
  .option('--standby <n>', 'pre-restored paused microVMs kept ready (default 0)', numeric)
  .option('--idle <seconds>', 'seconds before an unused microVM is reaped (default 60)', numeric)
  .option('--env <KEY=VALUE>', 'environment variable (repeatable)', collectEnv)
  .addOption(new Option('--snapshot <mode>', 'snapshot the initialised function (default auto)').choices(['auto', 'required', 'off']))
  .addOption(new Option('--network <mode>', 'outbound network (default host)').choices(['none', 'host']))
  .option('--json', 'print the result as JSON')
  .action(async (file: string, opts: Record<string, unknown>, cmd: Command) => {
    const target = findTarget(globals(cmd));
    const progress = (msg: string) => {
      if (!opts.json) process.stderr.write(`${msg}\n`);
    };
    const flags: Partial<Settings> = {};
    for (const key of ['memory', 'timeout', 'concurrency', 'min', 'max', 'standby', 'idle', 'env', 'snapshot', 'network'] as const) {
      if (opts[key] !== undefined) (flags as Record<string, unknown>)[key] = opts[key];
    }
    const name = opts.name === undefined ? undefined : validateName(opts.name);
    const pkg = await packageFunction(file, { onProgress: progress });
    const settings = { ...(pkg.settings ?? {}), ...flags, ...(pkg.settings?.env || flags.env ? { env: { ...pkg.settings?.env, ...flags.env } } : {}) };
    resolveSettings(settings);
    const fnName = name ?? validateName(pkg.name);
    progress(`deploying ${fnName}: running its initialisation${settings.snapshot === 'off' ? '' : ' and taking its snapshot'}…`);
    const result = await api<DeployResponse>(target, 'POST', `/api/functions/${fnName}/versions`, {
      bundle: pkg.bundle.toString('base64'),
      settings,
    });
    print(Boolean(opts.json), result, () => {
      console.log(`${result.unchanged ? 'unchanged' : 'deployed'} ${result.name} version ${result.version} (${result.hash.slice(0, 12)})`);
      console.log(`  snapshot: ${describeSnapshot(result.snapshot)}`);
      console.log(`  init:     ${result.initMs.toFixed(1)} ms, ${result.style} handler`);
      console.log(`  url:      ${result.url}`);
    });
  });

interface SnapshotView {
  status: string;
  reason?: string;
  blobBytes?: number;
  buildMs?: number;
}

function describeSnapshot(s: SnapshotView): string {
  if (s.status === 'ready') return `ready (${((s.blobBytes ?? 0) / (1024 * 1024)).toFixed(1)} MB, taken in ${Math.round(s.buildMs ?? 0)} ms)`;
  return `${s.status}${s.reason ? ` (${s.reason})` : ''}`;
}

interface DeployResponse {
  name: string;
  version: number;
  hash: string;
  unchanged: boolean;
  style: string;
  initMs: number;
  snapshot: SnapshotView;
  url: string;
}

targetOptions(program.command('invoke'), false)
  .description('call a function over HTTP and print its response body')
  .argument('<name>', 'function name, or NAME@VERSION')
  .option('--data <json|@file>', 'request body: JSON text, or @file for a file\'s bytes')
  .option('--method <method>', 'HTTP method (default GET, or POST with --data)')
  .option('--path <path>', 'path the function sees', '/')
  .option('--header <name:value>', 'request header (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
  .option('-v, --verbose', 'print status and timing headers to stderr')
  .option('--json', 'print status, headers and body as JSON')
  .action(async (name: string, opts: { data?: string; method?: string; path: string; header?: string[]; verbose?: boolean; json?: boolean }, cmd: Command) => {
    const target = findTarget(globals(cmd));
    const headers: Record<string, string> = {};
    let body: Buffer | undefined;
    if (opts.data !== undefined) {
      if (opts.data.startsWith('@')) {
        const file = opts.data.slice(1);
        try {
          body = readFileSync(file);
        } catch (err) {
          throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
        }
        headers['content-type'] = file.endsWith('.json') ? 'application/json' : 'application/octet-stream';
      } else {
        body = Buffer.from(opts.data);
        headers['content-type'] = parseJson(body) === undefined ? 'text/plain; charset=utf-8' : 'application/json';
      }
    }
    for (const h of opts.header ?? []) {
      const colon = h.indexOf(':');
      if (colon <= 0) throw new CliError(`--header "${h}" must be NAME:VALUE`);
      headers[h.slice(0, colon).trim().toLowerCase()] = h.slice(colon + 1).trim();
    }
    const path = opts.path.startsWith('/') ? opts.path : `/${opts.path}`;
    const method = (opts.method ?? (body ? 'POST' : 'GET')).toUpperCase();
    const res = await call(target, method as 'GET', `/fn/${encodeURIComponent(name).replace('%40', '@')}${path === '/' ? '' : path}`, {
      auth: false,
      headers,
      ...(body ? { body } : {}),
    });
    if (opts.json) {
      const text = res.body.toString('utf8');
      const isText = Buffer.from(text, 'utf8').equals(res.body);
      console.log(JSON.stringify({ status: res.status, headers: res.headers, body: isText ? text : res.body.toString('base64'), isBase64Encoded: !isText }, null, 2));
    } else {
      if (opts.verbose) {
        process.stderr.write(`${res.status} start=${String(res.headers['x-fn-start'] ?? '-')} instance=${String(res.headers['x-fn-instance'] ?? '-')} ` +
          `request=${String(res.headers['x-fn-request-id'] ?? '-')}\nserver-timing: ${String(res.headers['server-timing'] ?? '-')}\n`);
      }
      if (res.status < 400) process.stdout.write(res.body);
    }
    if (res.status >= 400) {
      if (!opts.json) throw new CliError(errorMessage(parseJson(res.body), res));
      process.exitCode = 1;
    }
  });

targetOptions(program.command('ls'))
  .description('list functions with their version, settings and microVMs')
  .option('--json', 'print as JSON')
  .action(async (opts: { json?: boolean }, cmd: Command) => {
    const { functions } = await api<{ functions: ListedFunction[] }>(findTarget(globals(cmd)), 'GET', '/api/functions');
    print(Boolean(opts.json), functions, () => {
      if (functions.length === 0) return console.log('no functions: deploy one with `fnctl deploy PATH`');
      printTable(
        ['NAME', 'VERSION', 'STYLE', 'MEMORY', 'CONC', 'MIN-MAX', 'SNAPSHOT', 'MICROVMS', 'URL'],
        functions.map((f) => [
          f.name,
          String(f.version),
          f.style,
          `${f.settings.memory} MiB`,
          String(f.settings.concurrency),
          `${f.settings.min}-${f.settings.max}`,
          f.snapshot.status,
          describeInstances(f.instances),
          f.url,
        ]),
      );
    });
  });

interface ListedFunction {
  name: string;
  version: number;
  style: string;
  settings: Settings;
  snapshot: { status: string };
  instances: { idle: number; busy: number; starting: number; paused?: number };
  url: string;
}

/** "2 idle, 1 busy, 1 paused, 1 starting": the states with microVMs (idle and busy always). */
function describeInstances(i: ListedFunction['instances']): string {
  return `${i.idle} idle, ${i.busy} busy${i.paused ? `, ${i.paused} paused` : ''}${i.starting ? `, ${i.starting} starting` : ''}`;
}

targetOptions(program.command('scale'))
  .description('change how many microVMs a function keeps (min, max, standby) live, without a deploy')
  .argument('<name>')
  .option('--min <n>', 'microVMs kept running', numeric)
  .option('--max <n>', 'microVMs at most', numeric)
  .option('--standby <n>', 'pre-restored paused microVMs kept ready', numeric)
  .option('--json', 'print the result as JSON')
  .action(async (name: string, opts: { min?: number | string; max?: number | string; standby?: number | string; json?: boolean }, cmd: Command) => {
    validateName(name);
    const change: Record<string, number | string> = {};
    for (const key of ['min', 'max', 'standby'] as const) if (opts[key] !== undefined) change[key] = opts[key];
    if (Object.keys(change).length === 0) throw new CliError('nothing to change: pass --min, --max or --standby');
    const result = await api<{ version: number; scaling: { min: number; max: number; standby: number }; instances: ListedFunction['instances']; warning?: string }>(
      findTarget(globals(cmd)), 'PATCH', `/api/functions/${encodeURIComponent(name)}/scaling`, change);
    const { min, max, standby } = result.scaling;
    if (result.warning) process.stderr.write(`fnctl: warning: ${result.warning}\n`);
    print(Boolean(opts.json), result, () => console.log(`${name} version ${result.version}: min ${min}, max ${max}, standby ${standby} (microVMs now: ${describeInstances(result.instances)})`));
  });

targetOptions(program.command('rm'))
  .description('remove a function and all its versions')
  .argument('<name>')
  .option('--json', 'print as JSON')
  .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
    const result = await api(findTarget(globals(cmd)), 'DELETE', `/api/functions/${encodeURIComponent(name)}`);
    print(Boolean(opts.json), result, () => console.log(`removed ${name}`));
  });

targetOptions(program.command('rollback'))
  .description('point a function back at an earlier version (default: the one before)')
  .argument('<name>')
  .argument('[version]', 'version number')
  .option('--json', 'print as JSON')
  .action(async (name: string, version: string | undefined, opts: { json?: boolean }, cmd: Command) => {
    if (version !== undefined && !/^[1-9]\d*$/.test(version)) throw new CliError(`version = "${version}", must be a version number like 3`);
    const result = await api<{ version: number; url: string }>(findTarget(globals(cmd)), 'POST', `/api/functions/${encodeURIComponent(name)}/rollback`, version ? { version: Number(version) } : {});
    print(Boolean(opts.json), result, () => console.log(`${name} now serves version ${result.version} at ${result.url}`));
  });

targetOptions(program.command('logs'))
  .description("print a function's logs (console output and REPORT lines)")
  .argument('<name>')
  .option('-f, --follow', 'keep printing new records')
  .option('--limit <n>', 'how many recent records', '100')
  .option('--request <id>', 'only the records of one request')
  .option('--json', 'print records as JSON lines')
  .action(async (name: string, opts: { follow?: boolean; limit: string; request?: string; json?: boolean }, cmd: Command) => {
    const target = findTarget(globals(cmd));
    const qs = new URLSearchParams({ limit: opts.limit, ...(opts.follow ? { follow: '1' } : {}), ...(opts.request ? { requestId: opts.request } : {}) });
    const url = `/api/functions/${encodeURIComponent(name)}/logs?${qs.toString()}`;
    const show = (line: string) => {
      if (!line.trim()) return;
      console.log(opts.json ? line : formatLogRecord(JSON.parse(line)));
    };
    if (!opts.follow) {
      const res = await call(target, 'GET', url);
      if (res.status >= 400) throw new CliError(errorMessage(parseJson(res.body), res));
      res.body.toString('utf8').split('\n').forEach(show);
      return;
    }
    const { streamLines } = await import('./stream.js');
    await streamLines(target, url, show);
  });

program
  .command('doctor')
  .description('say what isolation microVMs get on this machine, what is missing, and how to get it')
  .option('--json', 'print the report as JSON')
  .action(async (opts: { json?: boolean }) => {
    const { doctor } = await import('./doctor.js');
    process.exitCode = await doctor({ json: Boolean(opts.json) });
  });

registerLoad(program, targetOptions, globals);

export async function main(argv: string[]): Promise<void> {
  try {
    await program.parseAsync(argv);
  } catch (err) {
    const message = err instanceof CliError ? err.message : toFnError(err).message;
    process.stderr.write(`fnctl: error: ${message}\n`);
    process.exit(err instanceof CliError ? err.exitCode : 1);
  }
}
