// `fnctl scale` on the Platform with microVM doubles: the override's life across deploys,
// rollbacks, restarts and removal, and the memory check at deploy. No guest process is started.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../core/clock.js';
import { platformConfig } from '../../core/config.js';
import { silentLogger } from '../../core/log.js';
import { Platform } from '../../gateway/platform.js';
import { Registry } from '../../functions/registry.js';
import { FakeVm } from '../helpers/fake-vm.js';

const dirs: string[] = [];
const flush = () => new Promise((r) => setImmediate(r));

async function open(dataDir?: string, memoryBudgetMiB = 4096) {
  const dir = dataDir ?? mkdtempSync(path.join(tmpdir(), 'fnctl-scale-'));
  if (!dataDir) dirs.push(dir);
  const platform = new Platform(platformConfig({ dataDir: dir, isolation: 'none', memoryBudgetMiB }), {
    log: silentLogger(),
    clock: new FakeClock(1_700_000_000_000),
    boot: async (c) => new FakeVm(c.id),
  });
  await platform.start();
  return { platform, dir };
}

const code = (n: number) => Buffer.from(`export default { fetch: () => new Response('v${n}') };`);
const deploy = (p: Platform, n: number, settings: Record<string, unknown> = {}) =>
  p.deploy({ name: 'f', bundle: code(n), settings: { snapshot: 'off', ...settings } });

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('Platform.scale', () => {
  it('overrides min, max and standby of the current version live, and is kept by deploys that do not set them', async () => {
    const { platform } = await open();
    await deploy(platform, 1, { max: 5 });
    const r = await platform.scale('f', { min: 2, standby: 1 });
    expect(r.scaling).toEqual({ min: 2, max: 5, standby: 1 });
    await flush();
    expect(platform.describe('f').instances).toMatchObject({ idle: 2, paused: 1 });
    expect(platform.describe('f').settings).toMatchObject({ min: 2, max: 5, standby: 1 });

    // A new version without scaling settings: the override carries over (as Lambda's concurrency settings do).
    await deploy(platform, 2, { memory: 256 });
    expect(platform.describe('f')).toMatchObject({ version: 2, settings: { memory: 256, min: 2, max: 5, standby: 1 } });
    // A rollback too.
    await platform.rollback('f');
    expect(platform.describe('f')).toMatchObject({ version: 1, settings: { min: 2, max: 5, standby: 1 } });

    // A deploy that sets any of them takes scaling back: the override is dropped.
    await deploy(platform, 3, { min: 1 });
    const after = platform.describe('f');
    expect(after.settings).toMatchObject({ min: 1, max: 10, standby: 0 });
    expect(after.scaleOverride).toBeUndefined();
    await platform.shutdown();
  });

  it('an unchanged redeploy with scaling settings drops the override too, and applies them', async () => {
    const { platform } = await open();
    await deploy(platform, 1);
    await platform.scale('f', { min: 3 });
    await flush();
    const again = await deploy(platform, 1, { min: 0 });
    expect(again.unchanged).toBe(true); // same bundle and settings: no new version
    expect(platform.describe('f').scaleOverride).toBeUndefined();
    expect(platform.describe('f').settings.min).toBe(0);
    expect(platform.route('f').spec.min).toBe(0);
    await platform.shutdown();
  });

  it('is checked by the deploy settings\' rules, over the current values', async () => {
    const { platform } = await open();
    await deploy(platform, 1, { max: 4 });
    await expect(platform.scale('f', { min: 5 })).rejects.toThrow('invalid settings: min = 5, min must not exceed max (now min 0, max 4, standby 0)');
    await expect(platform.scale('f', { standby: 5 })).rejects.toThrow(/standby = 5, standby must not exceed max/);
    await expect(platform.scale('g', { min: 1 })).rejects.toMatchObject({ code: 'FUNCTION_NOT_FOUND' });
    expect(platform.describe('f').scaleOverride).toBeUndefined();
    await platform.shutdown();
  });

  it('survives a restart, and goes with the function when it is removed', async () => {
    const { platform, dir } = await open();
    await deploy(platform, 1);
    await platform.scale('f', { min: 1, max: 3 });
    await platform.shutdown();

    const { platform: again } = await open(dir);
    expect(again.describe('f').settings).toMatchObject({ min: 1, max: 3 });
    await flush();
    expect(again.describe('f').instances.idle).toBe(1);
    await again.remove('f');
    await deploy(again, 1);
    expect(again.describe('f').settings).toMatchObject({ min: 0, max: 10 });
    await again.shutdown();
  });

  it('refuses a deploy whose microVMs would not fit in the memory budget', async () => {
    const { platform } = await open(undefined, 256);
    await expect(deploy(platform, 1, { memory: 512 })).rejects.toThrow(/memory = 512, more than the host's memory budget of 256 MiB/);
    await platform.shutdown();
  });

  it('a registry from before scaling overrides (schema v1) gains their table when opened', async () => {
    const { platform, dir } = await open();
    await deploy(platform, 1);
    await platform.shutdown();
    const Database = createRequire(import.meta.url)('better-sqlite3');
    const raw = new Database(path.join(dir, 'registry.db'));
    raw.exec('DROP TABLE scaling');
    raw.pragma('user_version = 1');
    raw.close();
    const reg = Registry.open(dir);
    expect(reg.getScaling('f')).toBeUndefined();
    expect(reg.setScaling('f', { min: 1, max: 2, standby: 0 })).toMatchObject({ min: 1, max: 2, standby: 0 });
    expect(reg.currentVersion('f')?.version).toBe(1);
    reg.close();
  });
});
