// The security suite of the jail: a hostile function (test/fixtures/attacks/attacker.mjs) tries to
// read the platform's token and data folder, read another function's code, write outside /tmp,
// fill /tmp, fork without end, allocate past its memory, spin, reach the gateway's port with
// network "none" and signal the platform. Each attempt is asserted from facts gathered inside
// the jail and from the host (cgroup counters, the process table), while a neighbour function keeps
// answering, and each attacker leaves no process and no cgroup behind. Runs for every jail level
// this machine has (bubblewrap, unshare).
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectIsolation, type JailLevel } from '../../microvm/isolation.js';
import { createJailer, plainGuestCommand, type Jailer } from '../../microvm/jailer.js';
import { guestNodeFlags } from '../../microvm/microvm.js';
import { bundleGuest, type GuestBundle } from '../helpers/guest-bundle.js';
import { bootJailed, fdTargets, invokeError, keepCalling, leftovers, openFds, req, vmConfig, type JailedVm } from '../fixtures/attacks/harness.js';

const report = detectIsolation();
const levels: JailLevel[] = [];
if (report.tools.bwrap.works) levels.push('bubblewrap');
if (report.level !== 'none' && report.tools.unshare.ok) levels.push('unshare');
const fixture = (name: string): string => readFileSync(new URL(`../fixtures/attacks/${name}`, import.meta.url), 'utf8');

const TMP_MIB = 8;
const PIDS_MAX = 64;
const token = randomBytes(24).toString('hex');

/** A data folder laid out as the platform's: gateway.json (0600), registry.db, bundles/<sha>.cjs. */
function makeDataDir(bundles: string[]): { dir: string; paths: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'fnctl-data-'));
  writeFileSync(join(dir, 'gateway.json'), JSON.stringify({ url: 'http://127.0.0.1:8080', token }), { mode: 0o600 });
  writeFileSync(join(dir, 'registry.db'), `SQLite format 3\0 ${token}`, { mode: 0o600 });
  mkdirSync(join(dir, 'bundles'), { mode: 0o700 });
  const paths = bundles.map((src) => {
    const sha = createHash('sha256').update(readFileSync(src)).digest('hex');
    const p = join(dir, 'bundles', `${sha}.cjs`);
    copyFileSync(src, p);
    chmodSync(p, 0o444);
    return p;
  });
  return { dir, paths };
}

if (!levels.length) {
  describe('security suite', () => {
    it.skip(`needs bubblewrap or root with unshare (this machine: ${report.missing.map((m) => m.what).join(', ')})`, () => {});
  });
}

describe.each(levels)('the %s jail contains a hostile function', (level) => {
  let jailer: Jailer;
  const built: GuestBundle[] = [];
  let data: { dir: string; paths: string[] };
  let attackerPath: string;
  let victimPath: string;
  let bystander: JailedVm;
  let fdBaseline = 0;
  let fdNames: string[] = [];

  beforeAll(async () => {
    jailer = createJailer(report, { level, tmpMib: TMP_MIB, pidsMax: PIDS_MAX });
    expect(jailer.level).toBe(level);
    await jailer.sweep();
    const [a, v, b] = await Promise.all([bundleGuest(fixture('attacker.mjs')), bundleGuest(fixture('victim.mjs')), bundleGuest(fixture('bystander.mjs'))]);
    built.push(a, v, b);
    data = makeDataDir([a.bundlePath, v.bundlePath, b.bundlePath]);
    [attackerPath, victimPath] = data.paths as [string, string];
    bystander = await bootJailed(jailer, vmConfig(data.paths[2]!, { functionName: 'bystander' }));
    // One attacker boot and kill first: node opens some descriptors lazily, once.
    await (await attacker()).kill();
    fdBaseline = openFds();
    fdNames = fdTargets();
  });

  afterAll(async () => {
    await bystander?.kill();
    await jailer?.close();
    if (data) rmSync(data.dir, { recursive: true, force: true });
    await Promise.all(built.map((b) => b.cleanup()));
  });

  function attacker(over: Parameters<typeof vmConfig>[1] = {}, guestMib?: number): Promise<JailedVm> {
    const config = vmConfig(attackerPath, { functionName: 'attacker', ...over });
    // A V8 heap limit far above the cgroup's: the memory attack must meet the cgroup, not V8.
    const guest = guestMib ? { command: process.execPath, args: [...guestNodeFlags({ memoryMib: guestMib }), config.rootfs.bundlePath] } : plainGuestCommand(config);
    return bootJailed(jailer, config, { guest });
  }

  /** Run `attack` while the bystander is called every 50 ms; it must answer every time. */
  async function during<T>(attack: () => Promise<T>): Promise<T> {
    const calls = keepCalling(bystander);
    try {
      return await attack();
    } finally {
      const s = await calls.stop();
      expect(s.failures).toEqual([]);
      expect(s.calls).toBeGreaterThan(0);
    }
  }

  async function expectGone(v: JailedVm): Promise<void> {
    const { cleanup } = await v.kill();
    if (v.jailed.cgroup) expect(cleanup).toMatchObject({ removed: true, leftover: [] });
    expect(leftovers(v.jailed)).toEqual({ processes: [], dirs: [] });
  }

  it('cannot read the token, the data folder or another function', async () => {
    const v = await attacker();
    const got = await during(() => v.call<{ tries: Record<string, { ok: boolean; code?: string }>; root: string[]; fn: string[]; leaks: string[]; files: number }>('/read', {
      dataDir: data.dir, otherBundle: victimPath, token,
    }));
    for (const [path, r] of Object.entries(got.tries)) expect({ path, ok: r.ok }).toEqual({ path, ok: false });
    expect(got.leaks).toEqual([]);
    expect(got.fn).toEqual(['bundle.cjs']);
    for (const host of ['home', 'root', 'var', 'work', 'run', 'srv', 'opt', 'mnt']) expect(got.root).not.toContain(host);
    expect(got.files).toBeGreaterThan(0);
    expect(JSON.stringify(got)).not.toContain(token);
    expect(JSON.stringify(got)).not.toContain('victim-secret');
    await expectGone(v);
  });

  it('cannot write outside its /tmp', async () => {
    const v = await attacker();
    const got = await during(() => v.call<{ tries: Record<string, { ok: boolean; code?: string }>; uid: number }>('/write', { dataDir: data.dir }));
    const { '/tmp/ok': tmp, ...rest } = got.tries;
    expect(tmp).toEqual({ ok: true });
    for (const [path, r] of Object.entries(rest)) {
      expect({ path, ok: r.ok }).toEqual({ path, ok: false });
      expect(['EROFS', 'EACCES', 'ENOENT', 'EPERM']).toContain(r.code);
    }
    if (report.root) expect(got.uid).toBe(v.jailed.uid);
    expect(readFileSync(attackerPath, 'utf8')).not.toBe('pwned');
    await expectGone(v);
  });

  it(`fills /tmp only up to its bound (${TMP_MIB} MiB) and keeps running`, async () => {
    const v = await attacker();
    const got = await during(() => v.call<{ written: number; partial: number; error?: string }>('/fillTmp', {}));
    expect(got.error).toBe('ENOSPC');
    expect(got.partial).toBeLessThanOrEqual(TMP_MIB * 1024 * 1024);
    expect(got.partial).toBeGreaterThan((TMP_MIB - 2) * 1024 * 1024);
    expect((await v.call<{ uid: number }>('/whoami')).uid).toBeTypeOf('number');
    await expectGone(v);
  });

  it(`stops a fork bomb at pids.max (${PIDS_MAX}), and removal kills every fork`, async () => {
    const v = await attacker({ vcpus: 0.5 });
    const cg = v.jailed.cgroup;
    let peak = 0;
    const watch = setInterval(() => (peak = Math.max(peak, cg?.stats().pids ?? 0)), 20);
    await during(() => v.invoke(req('/forkBomb', { holdMs: 1500 })).catch(() => undefined));
    clearInterval(watch);
    if (cg?.plan.pids) {
      const s = cg.stats();
      expect(peak).toBeLessThanOrEqual(PIDS_MAX);
      expect(peak).toBeGreaterThan(PIDS_MAX / 2);
      expect(s.pidsRefused).toBeGreaterThan(0);
    }
    await expectGone(v);
  });

  it('is OOM-killed by its cgroup past its memory, even with a larger V8 heap, and answers OUT_OF_MEMORY', async () => {
    const v = await attacker({ memoryMib: 64 }, 1024);
    const err = await during(() => invokeError(v, req('/allocate', { chunkMib: 4 })));
    const { oom, cleanup } = await v.ended;
    if (v.jailed.cgroup?.plan.memory) {
      expect(err.code).toBe('OUT_OF_MEMORY');
      expect(err.message).toContain('limit 64 MiB');
      expect(oom).toBe(true);
      expect(cleanup?.oomKills).toBeGreaterThan(0);
    } else {
      expect(['FUNCTION_CRASHED', 'OUT_OF_MEMORY']).toContain(err.code);
    }
    expect(leftovers(v.jailed)).toEqual({ processes: [], dirs: [] });
  });

  it('gets at most its vcpus of CPU when it spins', async () => {
    const v = await attacker({ vcpus: 0.5 });
    const got = await during(() => v.call<{ cores: number; wall: number }>('/spin', { threads: 2, ms: 1000 }));
    if (v.jailed.cgroup?.plan.cpu) {
      // Two threads spinning would take ~2 cores (or all the machine has) without the quota.
      expect(got.cores).toBeLessThan(0.5 * 1.25);
      expect(v.jailed.cgroup.stats().throttledPeriods).toBeGreaterThan(0);
    }
    await expectGone(v);
  });

  it('is killed with everything it started when it spins past its timeout', async () => {
    const v = await attacker({ timeoutMs: 800, vcpus: 0.5 });
    const err = await during(() => invokeError(v, req('/spinForever', {})));
    expect(err.code).toBe('FUNCTION_TIMEOUT');
    const { cleanup } = await v.ended;
    if (v.jailed.cgroup) expect(cleanup).toMatchObject({ removed: true, leftover: [] });
    expect(leftovers(v.jailed)).toEqual({ processes: [], dirs: [] });
  });

  it('cannot reach the gateway port or the host with network "none" (and can with "host")', async () => {
    let accepted = 0;
    const sockets = new Set<Socket>();
    const server: Server = createServer((s) => {
      accepted++;
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
      s.end('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
    });
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    const port = (server.address() as { port: number }).port;
    const hosts = ['127.0.0.1', ...Object.values(networkInterfaces()).flat().filter((i) => i && i.family === 'IPv4' && !i.internal).map((i) => i!.address).slice(0, 2)];
    try {
      const v = await attacker({ network: 'none' });
      const got = await during(() => v.call<Record<string, { ok: boolean; code?: string }>>('/connect', { port, hosts }));
      for (const [h, r] of Object.entries(got)) expect({ h, ok: r.ok }).toEqual({ h, ok: false });
      expect(accepted).toBe(0);
      await expectGone(v);
      // The control: the same attempt with network "host" does connect, so the test can fail.
      const open = await attacker({ network: 'host' });
      const ok = await open.call<Record<string, { ok: boolean }>>('/connect', { port, hosts: ['127.0.0.1'] });
      expect(ok['127.0.0.1']).toEqual({ ok: true });
      expect(accepted).toBeGreaterThan(0);
      await expectGone(open);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it("cannot signal the platform's process (or see it)", async () => {
    const v = await attacker();
    const got = await during(() => v.call<Record<string, { ok: boolean; code?: string }> & { visible: number[]; self: number }>('/signal', { platformPid: process.pid }));
    expect(got.platform).toEqual({ ok: false, code: 'ESRCH' });
    expect(got.visible).not.toContain(process.pid);
    // Its own pid namespace: a handful of pids, its own small pid.
    expect(got.visible.length).toBeLessThanOrEqual(3);
    expect(got.self).toBeLessThanOrEqual(2);
    if (level === 'bubblewrap') expect(got.init).toEqual({ ok: false, code: 'EPERM' });
    // Still alive, and so are we.
    expect((await v.call<{ uid: number }>('/whoami')).uid).toBeTypeOf('number');
    await expectGone(v);
  });

  it('leaves no file descriptor behind in the host', async () => {
    // Every attacker above was booted and removed; only the bystander is still up.
    const now = fdTargets();
    expect({ count: openFds(), extra: now.filter((t) => !fdNames.includes(t)) }).toEqual({ count: fdBaseline, extra: [] });
  });
});
