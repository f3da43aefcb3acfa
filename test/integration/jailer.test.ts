// Integration tests of the jailer with real guests: what a jailed guest sees of itself, the cgroup
// limits the host set, pause and resume with each freezer, the faults (timeout, exit, crash) and
// that none of them leaves a process, a cgroup or a descriptor behind; the startup sweep of a
// crashed platform's groups, shutdown, a snapshot built and restored inside the jail, and the
// weaker levels. The attacks are in security.test.ts.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectIsolation } from '../../microvm/isolation.js';
import { createJailer, plainGuestCommand, type JailedCommand, type Jailer } from '../../microvm/jailer.js';
import { MicroVm, guestNodeFlags } from '../../microvm/microvm.js';
import { HOLD_GATE_FLAG } from '../../core/protocol.js';
import { buildSnapshot } from '../../snapshots/builder.js';
import { bundleGuest, type GuestBundle } from '../helpers/guest-bundle.js';
import { bootJailed, fdTargets, invokeError, leftovers, openFds, processesInGroup, req, vmConfig, type JailedVm } from '../fixtures/attacks/harness.js';

const report = detectIsolation();
const fixture = (name: string): string => readFileSync(new URL(`../fixtures/attacks/${name}`, import.meta.url), 'utf8');
const hasBwrap = report.tools.bwrap.works;
const hasCgroups = report.root && (report.cgroup.plan.memory !== undefined || report.cgroup.plan.pids !== undefined);

let jailer: Jailer;
let attacker: GuestBundle;
const extra: GuestBundle[] = [];

beforeAll(async () => {
  jailer = createJailer(report);
  await jailer.sweep();
  attacker = await bundleGuest(fixture('attacker.mjs'));
});

afterAll(async () => {
  await jailer?.close();
  await attacker?.cleanup();
  await Promise.all(extra.map((b) => b.cleanup()));
});

type WhoAmI = {
  uid: number;
  gid: number;
  groups: number[];
  pid: number;
  cwd: string;
  argv: string[];
  root: string[];
  fn: string[] | null;
  cgroup: string;
  hostname: string;
  nofile: string[];
  core: string[];
  caps: string[];
  channelFd: { ok: boolean; value?: boolean };
  procs: number;
  atInit: { uid: number; cgroup: string };
};

describe('isolation report', () => {
  it('describes this machine, with a fix for everything missing', () => {
    expect(['bubblewrap', 'unshare', 'none']).toContain(report.level);
    expect(report.node.execPath).toMatch(/node/);
    for (const m of report.missing) {
      expect(m.why).toBeTruthy();
      expect(m.fix).toBeTruthy();
    }
    if (hasBwrap) expect(report.tools.bwrap.version).toMatch(/^\d+\.\d+/);
    expect(detectIsolation()).toBe(report);
  });
});

describe.skipIf(!hasBwrap)('a guest in the bubblewrap jail', () => {
  let v: JailedVm;
  let me: WhoAmI;

  beforeAll(async () => {
    v = await bootJailed(jailer, vmConfig(attacker.bundlePath, { vcpus: 1, memoryMib: 128 }));
    me = await v.call<WhoAmI>('/whoami');
  });
  afterAll(async () => {
    await v?.kill();
  });

  it('runs unprivileged, in its own pid namespace, on a root holding only what it needs', () => {
    if (report.root) {
      expect(v.jailed.uid).toBeGreaterThan(65535);
      expect({ uid: me.uid, gid: me.gid }).toEqual({ uid: v.jailed.uid, gid: v.jailed.uid });
      expect(me.groups).not.toContain(0);
    }
    expect(me.caps).toEqual(expect.arrayContaining(['CapEff:\t0000000000000000', 'CapPrm:\t0000000000000000', 'NoNewPrivs:\t1']));
    expect(me.pid).toBeLessThanOrEqual(3);
    expect(me.procs).toBeLessThanOrEqual(3);
    expect(me.root).toEqual(expect.arrayContaining(['usr', 'fn', 'tmp', 'proc', 'dev']));
    for (const host of ['home', 'root', 'var', 'work', 'run', 'srv', 'opt', 'boot']) expect(me.root).not.toContain(host);
    // Of /sys, only copies of the two files glibc's malloc reads the huge page mode and size from,
    // and those whenever the host has them (else guests' malloc could not use huge pages).
    if (existsSync('/sys/kernel/mm/transparent_hugepage/hpage_pmd_size')) {
      expect(me.sys).toEqual(['kernel', 'kernel/mm', 'kernel/mm/transparent_hugepage', 'kernel/mm/transparent_hugepage/enabled', 'kernel/mm/transparent_hugepage/hpage_pmd_size']);
    } else {
      expect(me.sys).toBeNull();
    }
    expect(me.fn).toEqual(['bundle.cjs']);
    expect(me.cwd).toBe('/fn');
    expect(me.argv[1]).toBe('/fn/bundle.cjs');
    expect(me.hostname).toBe(v.vm.id);
    // Its own cgroup namespace: paths relative to where the platform runs, never the host's own
    // paths above it (e.g. the platform's memory cgroup when it is not the root).
    const hostPaths = readFileSync('/proc/self/cgroup', 'utf8').split('\n').map((l) => l.split(':')[2]).filter((p): p is string => !!p && p !== '/');
    for (const p of hostPaths) expect(me.cgroup).not.toContain(p);
    if (v.jailed.cgroup) expect(me.cgroup).toContain(`/${v.jailed.cgroup.name}\n`);
  });

  it.skipIf(!report.root)('gets a uid of its own: two guests never share one', async () => {
    const other = await bootJailed(jailer, vmConfig(attacker.bundlePath));
    try {
      const them = await other.call<WhoAmI>('/whoami');
      expect(them.uid).not.toBe(me.uid);
      expect(them.uid).toBe(other.jailed.uid);
    } finally {
      await other.kill();
    }
  });

  it('talks over the channel on fd 3 and has its rlimits', () => {
    expect(me.channelFd).toEqual({ ok: true, value: true });
    expect(me.nofile).toEqual(['1024', '1024']);
    expect(me.core).toEqual(['0', '0']);
  });

  it.skipIf(!hasCgroups)('is in a cgroup with its limits, joined before it ran', () => {
    const cg = v.jailed.cgroup!;
    // The function's module top level already ran in every hierarchy of its group, unprivileged.
    const lines = new Map(me.atInit.cgroup.split('\n').filter(Boolean).map((l) => [l.split(':')[1]!.split(',').sort().join(','), l.split(':')[2]!]));
    for (const h of cg.hierarchies) expect({ h, path: lines.get(h) }).toEqual({ h, path: expect.stringMatching(new RegExp(`/${cg.name}$`)) });
    if (report.root) expect(me.atInit.uid).toBe(v.jailed.uid);
    const s = cg.stats();
    if (cg.plan.memory) expect(s.memoryLimitBytes).toBe(128 * 1024 * 1024);
    if (cg.plan.pids) expect(s.pidsMax).toBe(64);
    // Every process of the guest is in its group: bwrap, its init and node.
    const inGroup = new Set(processesInGroup(cg.name));
    expect(inGroup.has(v.vm.pid!)).toBe(true);
    expect(inGroup.size).toBeGreaterThanOrEqual(3);
    for (const dir of cg.dirs) {
      if (dir.includes('/memory/')) {
        expect(readFileSync(join(dir, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(String(128 * 1024 * 1024));
        if (existsSync(join(dir, 'memory.memsw.limit_in_bytes'))) expect(readFileSync(join(dir, 'memory.memsw.limit_in_bytes'), 'utf8').trim()).toBe(String(128 * 1024 * 1024));
      }
      if (dir.includes('/cpu/')) expect(readFileSync(join(dir, 'cpu.cfs_quota_us'), 'utf8').trim()).toBe('100000');
      if (existsSync(join(dir, 'cpu.max'))) expect(readFileSync(join(dir, 'cpu.max'), 'utf8').trim()).toBe('100000 100000');
    }
  });
});

/** Pause, check that nothing answers, resume, check that it answers: returns the two durations. */
async function pauseResume(j: Jailer): Promise<{ pauseMs: number; resumeMs: number }> {
  const v = await bootJailed(j, vmConfig(attacker.bundlePath));
  try {
    await v.call('/whoami');
    const t0 = performance.now();
    await v.jailed.pause();
    const pauseMs = performance.now() - t0;
    const pending = v.call<{ uid: number }>('/whoami');
    const early = await Promise.race([pending.then(() => 'answered'), new Promise((r) => setTimeout(() => r('paused'), 300))]);
    expect(early).toBe('paused');
    const t1 = performance.now();
    await v.jailed.resume();
    const resumeMs = performance.now() - t1;
    expect((await pending).uid).toBeTypeOf('number');
    return { pauseMs, resumeMs };
  } finally {
    const { cleanup } = await v.kill();
    if (v.jailed.cgroup) expect(cleanup?.removed).toBe(true);
    expect(leftovers(v.jailed)).toEqual({ processes: [], dirs: [] });
  }
}

describe.skipIf(!hasBwrap)('a held guest: its jail set up ahead of its request', () => {
  function hold(): { vm: MicroVm; jailed: () => JailedCommand } {
    let jailed: JailedCommand | undefined;
    const vm = MicroVm.hold(vmConfig(attacker.bundlePath), { sink: { record: () => {} }, jail: (c, plain) => (jailed = jailer.wrap(c, plain)) });
    return { vm, jailed: () => jailed! };
  }

  async function until(what: string, ok: () => boolean): Promise<void> {
    for (const deadline = Date.now() + 10_000; !ok(); await new Promise((r) => setTimeout(r, 20))) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    }
  }

  it('waits in its jail, node stopped before anything of the function, then runs as jailed as any guest, and leaves nothing behind', async () => {
    const { vm, jailed } = hold();
    const j = jailed();
    // Held: the jail's processes are up (in the guest's cgroup, when there is one), and node has
    // started but waits at its first read, its OpenSSL config from a pipe, with nothing of the
    // function opened: no bundle, no snapshot.
    const inGroup = (comm: string): number[] => processesInGroup(j.cgroup?.name ?? vm.id).filter((pid) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm);
    const gated = (pid: number): boolean => /pipe_read$/.test(readFileSync(`/proc/${pid}/wchan`, 'utf8'));
    if (j.cgroup) {
      await until('the held node waits at its gate', () => inGroup('node').some(gated));
      const [node] = inGroup('node');
      expect(readFileSync(`/proc/${node}/cmdline`, 'utf8').split('\0')).toContain(HOLD_GATE_FLAG);
      const fds = readdirSync(`/proc/${node}/fd`).map((fd) => readlinkSync(`/proc/${node}/fd/${fd}`));
      expect(fds.join(' ')).not.toMatch(/bundle|\.blob/);
      // node was started with the platform's malloc setting (the runtime hides it from the function).
      expect(readFileSync(`/proc/${node}/environ`, 'utf8').split('\0')).toContain('GLIBC_TUNABLES=glibc.malloc.hugetlb=1');
    }
    expect(vm.held).toBe(true);
    expect(vm.state).toBe('created');
    // Its setup runs at the least CPU weight; released, it has its own weight back.
    // v1: cpu.shares in the cpu hierarchy's folder; v2: cpu.weight in the one folder.
    const file = (j.cgroup?.dirs ?? []).flatMap((d) => [join(d, 'cpu.shares'), join(d, 'cpu.weight')]).find((f) => existsSync(f));
    const weight = (): string => readFileSync(file!, 'utf8').trim();
    const cpuPlanned = j.cgroup?.plan.cpu !== undefined;
    expect(cpuPlanned ? file : 'no cpu controller').toBeDefined();
    if (cpuPlanned) expect(['1', '2']).toContain(weight());
    const releasedAt = Date.now();
    await vm.release();
    // Its age counts from its release, not from when its jail was set up.
    expect(vm.createdAt).toBeGreaterThanOrEqual(releasedAt);
    if (cpuPlanned) expect(['100', '1024']).toContain(weight());
    expect(vm.state).toBe('idle');
    const r = await vm.invoke(req('/whoami'));
    const me = JSON.parse(r.body.toString()) as WhoAmI;
    if (report.root) expect({ uid: me.uid, gid: me.gid }).toEqual({ uid: j.uid, gid: j.uid });
    expect(me.caps).toEqual(expect.arrayContaining(['CapEff:\t0000000000000000', 'NoNewPrivs:\t1']));
    // bwrap is 1, then the holding shell, its `read` and node.
    expect(me.pid).toBeLessThanOrEqual(4);
    // The gate and node's malloc setting are the platform's, not the function's: a child node
    // given the gate flag would wait on its stdin.
    expect(me.execArgv.join(' ')).not.toContain('openssl-config');
    expect(me.env).toEqual(['PATH']);
    expect(me.fn).toEqual(['bundle.cjs']);
    expect(me.hostname).toBe(vm.id);
    expect(me.nofile).toEqual(['1024', '1024']);
    if (j.cgroup) {
      // It joined its group before bubblewrap made its cgroup namespace, so from inside, its group
      // is the root of every hierarchy; from outside, node is in the group.
      for (const line of me.atInit.cgroup.split('\n').filter(Boolean)) expect(line.split(':')[2]).toBe('/');
      expect(processesInGroup(j.cgroup.name)).toContain(vm.pid);
    }
    await vm.kill('test over');
    expect(leftovers(j)).toEqual({ processes: [], dirs: [] });
  });

  it('killed while held: release fails, and nothing is left', async () => {
    const { vm, jailed } = hold();
    await vm.kill('not needed');
    expect(vm.held).toBe(false);
    await expect(vm.release()).rejects.toThrow();
    expect(leftovers(jailed())).toEqual({ processes: [], dirs: [] });
  });
});

describe('pause and resume', () => {
  it.skipIf(!hasCgroups || report.cgroup.plan.freeze === 'signal')(`with the cgroup freezer (${report.cgroup.plan.freeze})`, async () => {
    const t = await pauseResume(jailer);
    expect(t.pauseMs).toBeLessThan(1000);
  });

  it.skipIf(!hasCgroups || !report.cgroup.v1.some((h) => h.writable && h.controllers.includes('freezer')))('with the v1 freezer', async () => {
    const j = createJailer(report, { cgroups: { v2Core: false } });
    try {
      expect(j.cgroups?.plan.freeze).toBe('v1');
      await pauseResume(j);
    } finally {
      await j.close();
    }
  });

  it('with SIGSTOP/SIGCONT when there is no freezer', async () => {
    const j = createJailer(report, { cgroups: false });
    try {
      expect(j.warnings.join(' ')).toMatch(/no usable cgroups/);
      await pauseResume(j);
    } finally {
      await j.close();
    }
  });
});

describe('faults leave nothing behind', () => {
  let fds0 = 0;
  let names0: string[] = [];
  beforeAll(async () => {
    // One boot first: node opens some descriptors lazily, once.
    await (await bootJailed(jailer, vmConfig(attacker.bundlePath))).kill();
    fds0 = openFds();
    names0 = fdTargets();
  });

  async function fault(path: string, over: Parameters<typeof vmConfig>[1] = {}, args: unknown = {}): Promise<{ code: string; message: string; v: JailedVm }> {
    const v = await bootJailed(jailer, vmConfig(attacker.bundlePath, over));
    const err = await invokeError(v, req(path, args));
    // Every fault here ends the microVM; a guest that survived would fail the leftovers check.
    const { cleanup } = await Promise.race([v.ended, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${path}: the guest is still up after ${err.code}`)), 10_000))]);
    if (v.jailed.cgroup) expect(cleanup).toMatchObject({ removed: true, leftover: [] });
    expect(leftovers(v.jailed)).toEqual({ processes: [], dirs: [] });
    return { code: err.code, message: err.message, v };
  }

  it('timeout: FUNCTION_TIMEOUT, and the guest with all it started is gone', async () => {
    expect((await fault('/spinForever', { timeoutMs: 500, vcpus: 0.5 })).code).toBe('FUNCTION_TIMEOUT');
  });

  it('exit: FUNCTION_CRASHED', async () => {
    const f = await fault('/exit');
    expect(f.code).toBe('FUNCTION_CRASHED');
    expect(f.message).toMatch(/code 3/);
  });

  it('crash: FUNCTION_CRASHED naming the error', async () => {
    const f = await fault('/crash');
    expect(f.code).toBe('FUNCTION_CRASHED');
    expect(f.message).toMatch(/boom from a timer/);
  });

  it.skipIf(!hasCgroups)('out of memory: OUT_OF_MEMORY naming the limit', async () => {
    const f = await fault('/allocate', { memoryMib: 48 }, { chunkMib: 4 });
    expect(f.code).toBe('OUT_OF_MEMORY');
    expect(f.message).toContain('limit 48 MiB');
  });

  it('no descriptor leaked by any of them', () => {
    expect({ count: openFds(), extra: fdTargets().filter((t) => !names0.includes(t)) }).toEqual({ count: fds0, extra: [] });
  });
});

describe.skipIf(!hasCgroups)('cgroup housekeeping', () => {
  it("the startup sweep removes a crashed platform's groups and kills what ran in them", async () => {
    const cgroups = jailer.cgroups!;
    // Where this process's groups go; a stale owner is one whose pid does not have that start time.
    const bases = cgroups.group('probe', { memoryMib: 64, vcpus: 1, pidsMax: 8 }).dirs.map((d) => dirname(dirname(d)));
    const staleOwner = `${process.pid}-1-1`;
    const dirs = bases.map((b) => join(b, staleOwner, 'vm-stale'));
    for (const d of dirs) mkdirSync(d, { recursive: true });
    const joinAll = dirs.map((d) => `echo $$ > ${join(d, 'cgroup.procs')}`).join('; ');
    const child = spawn('/bin/sh', ['-c', `${joinAll}; exec sleep 60`], { stdio: 'ignore', detached: true });
    const exited = new Promise((r) => child.on('exit', r));
    await new Promise((r) => setTimeout(r, 100));
    expect(processesInGroup('vm-stale')).toContain(child.pid);
    try {
      const swept = await jailer.sweep();
      expect(swept?.owners).toContain(staleOwner);
      expect(swept?.killed).toBeGreaterThanOrEqual(1);
      expect(swept?.failed).toEqual([]);
      await exited;
      for (const d of dirs) expect(existsSync(dirname(d))).toBe(false);
    } finally {
      try {
        process.kill(child.pid!, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
      for (const d of dirs) {
        for (const x of [d, dirname(d)]) {
          try {
            rmdirSync(x);
          } catch {
            // removed by the sweep
          }
        }
      }
    }
  });

  it('shutdown (close) kills running guests and removes every group of this platform', async () => {
    const j = createJailer(report);
    const a = await bootJailed(j, vmConfig(attacker.bundlePath));
    const b = await bootJailed(j, vmConfig(attacker.bundlePath));
    const owners = [...a.jailed.cgroup!.dirs].map((d) => dirname(d));
    expect(j.cgroups!.active).toBe(2);
    await j.close();
    await Promise.all([a.ended, b.ended]);
    expect(j.cgroups!.active).toBe(0);
    for (const v of [a, b]) expect(leftovers(v.jailed)).toEqual({ processes: [], dirs: [] });
    for (const o of owners) expect(existsSync(o)).toBe(false);
  });
});

describe.skipIf(!hasBwrap)('snapshots inside the jail', () => {
  it('builds a snapshot in the jail and restores it in the jail', async () => {
    const b = await bundleGuest(`let n = 0; const boot = Date.now();\nexport default { fetch() { return Response.json({ uid: process.getuid(), n: ++n, boot }); } };`);
    extra.push(b);
    const outPath = join(b.dir, 'fn.blob');
    let build: ReturnType<Jailer['wrapBuild']> | undefined;
    const result = await buildSnapshot({
      bundlePath: b.bundlePath,
      outPath,
      memoryMib: 128,
      initTimeoutMs: 15_000,
      spawnArgs: (plain) => {
        build = jailer.wrapBuild(plain, { bundlePath: b.bundlePath, outPath, memoryMib: 128 });
        build.prepare();
        return build;
      },
    });
    const cleaned = await build!.cleanup();
    if (build!.cgroup) expect(cleaned?.removed).toBe(true);
    expect(result.status).toBe('ok');
    const config = vmConfig(b.bundlePath);
    const v = await bootJailed(jailer, config, {
      restore: true,
      extraBinds: [outPath],
      guest: { command: process.execPath, args: [...guestNodeFlags(config), '--snapshot-blob', outPath] },
    });
    try {
      expect(v.vm.bootInfo.restored).toBe(true);
      const got = await v.call<{ uid: number; n: number }>('/');
      expect(got.n).toBe(1);
      if (report.root) expect(got.uid).toBe(v.jailed.uid);
      expect(v.jailed.args).toContain('/fn/fn.blob');
    } finally {
      await v.kill();
    }
  });
});

describe('weaker levels', () => {
  it.skipIf(!report.tools.unshare.ok)('unshare: serves, unprivileged, without the data around its bundle', async () => {
    const j = createJailer(report, { level: 'unshare' });
    try {
      expect(j.level).toBe('unshare');
      const v = await bootJailed(j, vmConfig(attacker.bundlePath));
      const me = await v.call<WhoAmI>('/whoami');
      if (report.root) expect(me.uid).toBe(v.jailed.uid);
      expect(me.fn).toEqual(['bundle.cjs']);
      expect(me.root).not.toContain('home');
      expect(me.channelFd).toEqual({ ok: true, value: true });
      await v.kill();
      expect(leftovers(v.jailed)).toEqual({ processes: [], dirs: [] });
    } finally {
      await j.close();
    }
  });

  it('none: serves, and says what it does not isolate', async () => {
    const j = createJailer(report, { level: 'none' });
    try {
      expect(j.level).toBe('none');
      expect(j.warnings.join(' ')).toMatch(/no jail/);
      const v = await bootJailed(j, vmConfig(attacker.bundlePath));
      const me = await v.call<WhoAmI>('/whoami');
      expect(me.nofile).toEqual(['1024', '1024']);
      await v.kill();
      expect(leftovers(v.jailed)).toEqual({ processes: [], dirs: [] });
    } finally {
      await j.close();
    }
  });

  it('falls back with a warning when asked for a level the machine lacks', () => {
    const without = { ...report, tools: { ...report.tools, bwrap: { ...report.tools.bwrap, works: false, error: 'not installed' } } };
    const j = createJailer(without, { level: 'bubblewrap', cgroups: false });
    expect(j.level).not.toBe('bubblewrap');
    expect(j.warnings[0]).toMatch(/bubblewrap was asked for/);
  });

  it('refuses a bundle the unprivileged guest could not read', async () => {
    if (!report.root || report.level === 'none') return;
    const b = await bundleGuest(fixture('bystander.mjs'));
    extra.push(b);
    const { chmodSync } = await import('node:fs');
    chmodSync(b.bundlePath, 0o600);
    const wrapped = jailer.wrap(vmConfig(b.bundlePath), plainGuestCommand(vmConfig(b.bundlePath)));
    expect(() => wrapped.prepare()).toThrow(/not world-readable/);
  });
});
