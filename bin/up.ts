// `fnctl up`: run the platform in the foreground. Writes DIR/gateway.json (url and token, mode
// 0600) for the other commands, refuses to start twice on one data folder, and shuts down
// gracefully on SIGINT/SIGTERM.
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createLogger, type Logger } from '../core/log.js';
import { toFnError } from '../core/errors.js';
import { machineMemory } from '../core/config.js';
import { Gateway } from '../gateway/server.js';
import { packageFunction } from '../functions/package.js';
import { CliError, gatewayFile } from './client.js';

export interface UpOptions {
  port: number;
  host: string;
  data: string;
  examples?: boolean;
  logLevel?: string;
  isolation?: 'auto' | 'none';
  guestScheduling?: 'batch' | 'normal';
  /** Malformed numbers stay strings, so the config's validation names them. */
  overcommit?: number | string;
  memoryBudget?: number | string;
}

interface SavedGateway {
  url: string;
  token: string;
  pid?: number;
}

function readSaved(file: string): SavedGateway | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as SavedGateway;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number | undefined): boolean {
  if (!pid || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function writeSaved(file: string, saved: SavedGateway): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(saved, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, file);
}

export async function up(options: UpOptions): Promise<void> {
  const dataDir = path.resolve(options.data);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = gatewayFile(dataDir);
  const saved = readSaved(file);
  if (saved && isAlive(saved.pid)) {
    throw new CliError(`a platform is already running on ${dataDir} (pid ${saved.pid}, ${saved.url}): stop it first, or pass another --data`);
  }
  const token = saved?.token && /^[A-Za-z0-9_-]{20,}$/.test(saved.token) ? saved.token : randomBytes(24).toString('base64url');
  const log = createLogger(options.logLevel ? { level: options.logLevel } : {});
  const memory = {
    ...(options.overcommit !== undefined ? { overcommit: options.overcommit as number } : {}),
    ...(options.memoryBudget !== undefined ? { memoryBudgetMiB: options.memoryBudget as number } : {}),
  };
  let gateway: Gateway;
  try {
    gateway = new Gateway({ config: { port: options.port, host: options.host, dataDir, ...(options.isolation ? { isolation: options.isolation } : {}), ...(options.guestScheduling ? { guestScheduling: options.guestScheduling } : {}), ...memory }, token, log });
  } catch (err) {
    // Name the flags the user typed rather than the config keys behind them.
    const e = toFnError(err);
    throw new CliError(e.message.replace(/\bmemoryBudgetMiB = /g, '--memory-budget ').replace(/\bovercommit = /g, '--overcommit '));
  }
  let url: string;
  try {
    url = await gateway.listen();
  } catch (err) {
    await gateway.platform.shutdown();
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE') throw new CliError(`port ${options.port} on ${options.host} is in use: pass another --port`);
    throw err;
  }
  writeSaved(file, { url, token, pid: process.pid });
  console.log(`fnctl is up at ${url}`);
  console.log(`  data: ${dataDir}`);
  console.log(`  control API token in ${file}`);
  const { budgetBytes } = gateway.platform.budget;
  const { memoryBudgetMiB, overcommit } = gateway.config;
  const budgetBase = machineMemory().source === 'limit' ? "this process's memory limit (cgroup)" : 'machine memory';
  console.log(`  memory budget: ${Math.floor(budgetBytes / (1024 * 1024))} MiB for microVMs (${memoryBudgetMiB !== undefined ? '--memory-budget' : `${budgetBase} × ${overcommit}`})`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: finishing in-flight requests and stopping microVMs…`);
    gateway.close().then(
      () => {
        const current = readSaved(file);
        if (current?.pid === process.pid) writeSaved(file, { url: current.url, token: current.token });
        console.log('fnctl stopped');
        process.exit(0);
      },
      (err: unknown) => {
        console.error(`fnctl: error during shutdown: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));

  if (options.examples) await deployExamples(gateway, log);
  const functions = gateway.platform.list();
  if (functions.length > 0) {
    console.log('functions:');
    const width = Math.max(...functions.map((f) => f.name.length));
    for (const f of functions) console.log(`  ${f.name.padEnd(width)}  ${url}/fn/${f.name}`);
  }
  console.log('press Ctrl-C to stop');
}

export function examplesDir(): string {
  // dist/bin/up.js and bin/up.ts both sit two levels below the repo root's functions/examples.
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const candidate of [path.resolve(here, '../functions/examples'), path.resolve(here, '../../functions/examples')]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new CliError('cannot find functions/examples');
}

/** Deploy every example (a file or a folder in functions/examples) unless it is already current. */
async function deployExamples(gateway: Gateway, log: Logger): Promise<void> {
  const dir = examplesDir();
  for (const entry of readdirSync(dir).sort()) {
    const full = path.join(dir, entry);
    if (entry.startsWith('.') || entry.endsWith('.md')) continue;
    if (!statSync(full).isDirectory() && !/\.(m|c)?(j|t)s$/.test(entry)) continue;
    try {
      const pkg = await packageFunction(full);
      const result = await gateway.platform.deploy({ name: pkg.name, bundle: pkg.bundle, settings: pkg.settings ?? {} });
      console.log(`deployed example ${result.name} version ${result.version}${result.unchanged ? ' (unchanged)' : ''}`);
    } catch (err) {
      const e = toFnError(err);
      log.error({ example: entry, code: e.code }, e.message);
      console.error(`fnctl: example ${entry} failed to deploy: ${e.message}`);
    }
  }
}
