// The processes a benchmark drives from outside: the platform (`fnctl up` on a throwaway data
// folder) and the bare baseline server, each in its own process so they don't share a core with
// the load generator's event loop.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repo root, from dist/load/ (compiled) or load/ (source). */
export const repoRoot = path.basename(path.dirname(here)) === 'dist' ? path.resolve(here, '../..') : path.resolve(here, '..');

export interface Running {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

function stopper(child: ChildProcess, after?: () => void): () => Promise<void> {
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    after?.();
  };
}

function waitForLine(child: ChildProcess, match: (line: string) => boolean, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    let output = '';
    const onData = (d: Buffer) => {
      buffered += d.toString('utf8');
      output += d.toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (match(line)) {
          child.stdout!.off('data', onData);
          child.stdout!.resume();
          resolve(line);
          return;
        }
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code} before it was ready:\n${output}`)));
  });
}

/** The bare node:http hello server (load/bare-server.ts), or with HOP the same with one process hop in it (load/hop-server.ts). */
export async function startBareServer(options: { hop?: boolean } = {}): Promise<Running> {
  const script = options.hop ? 'hop-server.js' : 'bare-server.js';
  const child = spawn(process.execPath, [path.join(repoRoot, 'dist/load', script)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const line = await waitForLine(child, (l) => l.startsWith('{'), options.hop ? 'the hop server' : 'the bare server');
  return { url: (JSON.parse(line) as { url: string }).url, child, stop: stopper(child) };
}

export interface RunningPlatform extends Running {
  token: string;
  dataDir: string;
}

/** `fnctl up` on a free port with a throwaway data folder, and ARGS besides. */
export async function startPlatform(options: { isolation?: 'auto' | 'none'; args?: string[] } = {}): Promise<RunningPlatform> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'fnctl-bench-'));
  const args = ['up', '--port', '0', '--data', dataDir, '--log-level', 'warn', ...(options.isolation ? ['--isolation', options.isolation] : []), ...(options.args ?? [])];
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin/fnctl.js'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await waitForLine(child, (l) => l.includes('press Ctrl-C to stop'), 'the platform');
  const saved = JSON.parse(readFileSync(path.join(dataDir, 'gateway.json'), 'utf8')) as { url: string; token: string };
  return { ...saved, dataDir, child, stop: stopper(child, () => rmSync(dataDir, { recursive: true, force: true })) };
}

/** Whether this repo's `fnctl up` accepts FLAG (e.g. --memory-budget), from its --help. */
export function upAccepts(flag: string): boolean {
  const help = spawnSync(process.execPath, [path.join(repoRoot, 'bin/fnctl.js'), 'up', '--help'], { encoding: 'utf8' });
  return help.stdout.includes(`${flag} `);
}
