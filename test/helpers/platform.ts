// Runs the platform as a user does: `node bin/fnctl.js up` in a child process on a free port with
// a temporary data folder, and `fnctl` commands against it.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const fnctlBin = path.join(repoRoot, 'bin/fnctl.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class PlatformProcess {
  url = '';
  token = '';
  output = '';
  private child: ChildProcess | undefined;

  constructor(readonly dataDir = mkdtempSync(path.join(tmpdir(), 'fnctl-test-'))) {}

  async start(extraArgs: string[] = []): Promise<void> {
    const child = spawn(process.execPath, [fnctlBin, 'up', '--port', '0', '--data', this.dataDir, '--log-level', 'warn', ...extraArgs], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (this.output += d));
    await new Promise<void>((resolve, reject) => {
      const onData = (d: string) => {
        this.output += d;
        if (this.output.includes('press Ctrl-C to stop')) {
          child.stdout!.off('data', onData);
          child.stdout!.on('data', (more: string) => (this.output += more));
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`fnctl up exited with ${code}: ${this.output}`)));
    });
    const saved = JSON.parse(readFileSync(path.join(this.dataDir, 'gateway.json'), 'utf8')) as { url: string; token: string };
    this.url = saved.url;
    this.token = saved.token;
  }

  /** SIGTERM and wait for the graceful exit. */
  async stop(): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    const code = await exited;
    this.child = undefined;
    return code;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  fnctl(args: string[], options: { env?: Record<string, string> } = {}): Promise<CliResult> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [fnctlBin, '--data', this.dataDir, ...args],
        { cwd: repoRoot, env: { ...process.env, FNCTL_URL: '', FNCTL_TOKEN: '', ...options.env }, maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  }

  async cleanup(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
