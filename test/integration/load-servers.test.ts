// The warm scenario's two references, as the benchmark starts them: the bare node:http hello server,
// and the same with one process hop (load/hop-server.ts), which must really wait for its child.
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { startBareServer, type Running } from '../../load/processes.js';
import { isRunning } from '../helpers/process.js';

const running: Running[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.stop()));
});

async function start(hop: boolean): Promise<Running> {
  const r = await startBareServer({ hop });
  running.push(r);
  return r;
}

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

describe('warm references', () => {
  it('both answer hello the same way', async () => {
    for (const hop of [false, true]) {
      const r = await start(hop);
      const res = await fetch(`${r.url}/`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
      expect(await res.text()).toBe('Hello from fnctl!\n');
    }
  });

  it('the hop server answers only once its child has passed the request back', async () => {
    const r = await start(true);
    const [child] = childrenOf(r.child.pid!);
    expect(child).toBeDefined();
    // Many requests in flight at once are each answered (they travel in batches).
    const many = await Promise.all(Array.from({ length: 50 }, () => fetch(`${r.url}/`).then((res) => res.text())));
    expect(new Set(many)).toEqual(new Set(['Hello from fnctl!\n']));
    process.kill(child!, 'SIGSTOP');
    try {
      const pending = fetch(`${r.url}/`);
      const early = await Promise.race([pending.then(() => 'answered'), new Promise((resolve) => setTimeout(() => resolve('waiting'), 300))]);
      expect(early).toBe('waiting');
      process.kill(child!, 'SIGCONT');
      expect((await pending).status).toBe(200);
    } finally {
      process.kill(child!, 'SIGCONT');
    }
    await r.stop();
    await expect.poll(() => isRunning(child!), { timeout: 5000 }).toBe(false);
  });
});
