// `fnctl scale` end to end, as a user: min, max and standby changed live on a running platform
// (started with `--memory-budget`), bad values refused with one clear line, and the change kept
// across a restart.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { request } from 'undici';
import { PlatformProcess, repoRoot } from '../helpers/platform.js';

const platform = new PlatformProcess();
const hello = path.join(repoRoot, 'functions/examples/hello.js');

async function http(pathname: string, auth = false, patch?: unknown) {
  const headers: Record<string, string> = auth ? { authorization: `Bearer ${platform.token}` } : {};
  if (patch !== undefined) headers['content-type'] = 'application/json';
  const res = await request(platform.url + pathname, { headers, ...(patch !== undefined ? { method: 'PATCH' as const, body: JSON.stringify(patch) } : {}) });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

async function instances(name: string): Promise<{ id: string; state: string }[]> {
  return JSON.parse((await http(`/api/functions/${name}/instances`, true)).text).instances;
}

async function listed(name: string) {
  const all = JSON.parse((await platform.fnctl(['ls', '--json'])).stdout) as {
    name: string;
    settings: { min: number; max: number; standby: number };
    instances: { idle: number; paused: number };
    scaleOverride?: { min: number; max: number; standby: number };
  }[];
  return all.find((f) => f.name === name)!;
}

beforeAll(async () => {
  await platform.start(['--memory-budget', '1024']);
  for (const name of ['web', 'ready']) {
    const r = await platform.fnctl(['deploy', hello, '--name', name]);
    expect(r.code, r.stderr).toBe(0);
  }
}, 60_000);

afterAll(() => platform.cleanup());

describe('fnctl scale', () => {
  it('up starts with the memory budget it was given, and /metrics shows it', async () => {
    expect(platform.output).toContain('memory budget: 1024 MiB for microVMs (--memory-budget)');
    const metrics = (await http('/metrics')).text;
    expect(metrics).toMatch(/^fnctl_memory_budget_bytes 1073741824$/m);
    expect(metrics).toMatch(/^fnctl_memory_reserved_bytes \d+$/m);
  });

  it('min up starts microVMs at once, without a deploy', async () => {
    const r = await platform.fnctl(['scale', 'web', '--min', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^web version 1: min 2, max 10, standby 0 \(microVMs now: /);
    await expect.poll(async () => (await instances('web')).filter((i) => i.state === 'idle').length, { timeout: 10_000, interval: 100 }).toBe(2);
    const web = await listed('web');
    expect(web.settings).toMatchObject({ min: 2, max: 10, standby: 0 });
    expect(web.scaleOverride).toMatchObject({ min: 2, max: 10, standby: 0 });
    // The version is the same one: nothing was deployed.
    expect((await http('/fn/web')).headers['x-fn-start']).toBe('warm');
  });

  it('standby 1 keeps a paused microVM, and the next request is handed it', async () => {
    const r = await platform.fnctl(['scale', 'ready', '--standby', '1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ name: 'ready', scaling: { min: 0, max: 10, standby: 1 } });
    await expect.poll(async () => (await instances('ready')).map((i) => i.state), { timeout: 10_000, interval: 100 }).toEqual(['paused']);
    expect((await listed('ready')).instances.paused).toBe(1);
    const human = await platform.fnctl(['ls']);
    expect(human.stdout).toMatch(/^ready .* 0 idle, 0 busy, 1 paused/m);
    const first = await http('/fn/ready');
    expect(first.status).toBe(200);
    expect(first.headers['x-fn-start']).toBe('standby');
  });

  it('refuses bad values with one line naming them, and changes nothing', async () => {
    const cases: [string[], RegExp][] = [
      [['--min', '20'], /min = 20, min must not exceed max \(now min 2, max 10, standby 0\)/],
      [['--max', '0'], /max = 0, must be an integer in \[1, 1000\]/],
      [['--standby', 'abc'], /standby = "abc", must be an integer in \[0, 100\]/],
      [['--max', '1'], /min = 2, min must not exceed max/],
      [[], /nothing to change: pass --min, --max or --standby/],
    ];
    const results = await Promise.all(cases.map(([args]) => platform.fnctl(['scale', 'web', ...args])));
    cases.forEach(([args, message], i) => {
      const r = results[i]!;
      expect(r.code, args.join(' ')).not.toBe(0);
      const lines = r.stderr.trim().split('\n');
      expect(lines, args.join(' ')).toHaveLength(1);
      expect(lines[0]).toMatch(/^fnctl: error: /);
      expect(lines[0]).toMatch(message);
    });
    const missing = await http('/api/functions/nope/scaling', true, { min: 1 });
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.text).error).toMatchObject({ code: 'FUNCTION_NOT_FOUND', message: 'function nope does not exist' });
    const other = await http('/api/functions/web/scaling', true, { memory: 256 });
    expect(JSON.parse(other.text).error.message).toMatch(/memory cannot be changed by scale, only min, max and standby/);
    expect((await listed('web')).settings).toMatchObject({ min: 2, max: 10, standby: 0 });
  });

  it('the change survives a restart of the platform', async () => {
    expect(await platform.stop()).toBe(0);
    await platform.start(['--memory-budget', '1024']);
    const web = await listed('web');
    expect(web.settings).toMatchObject({ min: 2, max: 10, standby: 0 });
    await expect.poll(async () => (await instances('web')).length, { timeout: 10_000, interval: 100 }).toBe(2);
    await expect.poll(async () => (await instances('ready')).map((i) => i.state), { timeout: 10_000, interval: 100 }).toEqual(['paused']);
  }, 60_000);
});
