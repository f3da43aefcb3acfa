// Per-microVM cgroups: memory (no swap), CPU quota (vcpus × period), pids, the freezer for pause,
// OOM-kill counters, and removal that leaves nothing behind. cgroup v2 where it offers a
// controller to us, v1 where v2 does not (as isolation.ts planned it); on hybrid machines a v2
// group is made even without controllers, for cgroup.freeze, cgroup.kill and CPU accounting.
//
// Layout, in every hierarchy used: <own cgroup>/fnctl/<owner>/<vm>, where <own cgroup> is the
// group this process runs in (we nest inside what we were given, never beside it) and <owner> is
// "<pid>-<start time>" of the platform process. Several platforms (and test workers) share one
// machine: the startup sweep removes only the groups of owners that are gone.
//
// Everything on the spawn path is synchronous on purpose: a handful of mkdir/write syscalls
// (~0.1 ms) that must be done before the guest starts, from hooks that are synchronous.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { writeFile as writeFileAsync } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CgroupPlan, IsolationReport } from './isolation.js';
import { planCgroups } from './isolation.js';

export interface CgroupLimits {
  memoryMib: number;
  /** CPU quota in cores, may be fractional (0.5 = half a core). */
  vcpus: number;
  pidsMax: number;
}

/** One hierarchy directory a microVM's group lives in. */
interface Place {
  version: 1 | 2;
  /** Controllers mounted on this hierarchy (v1), as /proc/<pid>/cgroup names it. */
  hierarchy: string[];
  /** <own>/fnctl */
  base: string;
  /** Controllers this place limits (v1: those mounted there and planned; v2: those enabled). */
  controllers: string[];
  freezer: boolean;
}

export interface CgroupStats {
  memoryBytes?: number;
  memoryLimitBytes?: number;
  /** Peak memory (v1 max_usage_in_bytes, v2 memory.peak). */
  memoryPeakBytes?: number;
  cpuUsageUsec?: number;
  /** Periods in which the CPU quota throttled the group. */
  throttledPeriods?: number;
  pids?: number;
  pidsMax?: number;
  /** Forks refused at pids.max. */
  pidsRefused?: number;
  oomKills: number;
}

export interface DestroyReport {
  /** OOM kills counted by the kernel before removal. */
  oomKills: number;
  /** Every group directory was removed. */
  removed: boolean;
  /** Pids still there when we gave up (D state), normally empty. */
  leftover: number[];
  ms: number;
}

export interface SweepReport {
  owners: string[];
  groups: number;
  killed: number;
  failed: string[];
}

export interface CgroupManagerOptions {
  /** Name of fnctl's folder in each hierarchy (default "fnctl"). */
  name?: string;
  /** Make a v2 group even when v2 offers no controller (freeze/kill/accounting). Default true. */
  v2Core?: boolean;
  /** Override the plan (tests force the v1 freezer or signals). */
  plan?: Partial<CgroupPlan>;
}

const KILL_WAIT_MS = 5000;
let managers = 0;

function write(path: string, value: string): void {
  writeFileSync(path, value);
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** "key value" lines (memory.events, cpu.stat, memory.oom_control) as numbers. */
function keyed(path: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of (read(path) ?? '').split('\n')) {
    const [k, v] = line.split(' ');
    if (k && v !== undefined) out.set(k, Number(v));
  }
  return out;
}

function num(path: string): number | undefined {
  const t = read(path)?.trim();
  if (t === undefined || t === '' || t === 'max') return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

function procsOf(dir: string): number[] {
  return (read(join(dir, 'cgroup.procs')) ?? '').split('\n').filter(Boolean).map(Number);
}

/** The start time (clock ticks since boot) of a pid, to tell a live owner from a reused pid. */
export function startTimeOf(pid: number): string | undefined {
  const stat = read(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  return stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[19];
}

function sigkill(pids: number[]): number {
  let n = 0;
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
      n++;
    } catch {
      // gone already
    }
  }
  return n;
}

/** Remove a group folder, retrying while the kernel still counts exiting tasks. */
async function rmdirPatiently(dir: string, deadline: number): Promise<boolean> {
  for (;;) {
    try {
      rmdirSync(dir);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return true;
      if (code !== 'EBUSY' || Date.now() > deadline) return false;
      await sleep(5);
    }
  }
}

export class CgroupManager {
  readonly plan: CgroupPlan;
  /** "<pid>-<start time>-<n>": this process, and which of its managers. */
  readonly owner: string;
  private readonly places: Place[];
  private readonly live = new Set<VmCgroup>();
  private ownerReady = false;

  private constructor(plan: CgroupPlan, places: Place[], private readonly report: IsolationReport) {
    this.plan = plan;
    this.places = places;
    // A suffix per manager: two jailers in one process (tests) never remove each other's folders.
    this.owner = `${process.pid}-${startTimeOf(process.pid) ?? '0'}-${++managers}`;
  }

  /** A manager for what the report says is usable, or undefined when no cgroup is. */
  static create(report: IsolationReport, options: CgroupManagerOptions = {}): CgroupManager | undefined {
    const { v1, v2 } = report.cgroup;
    const plan: CgroupPlan = { ...planCgroups(v1, v2, options.v2Core === undefined ? {} : { v2Core: options.v2Core }), ...options.plan };
    const name = options.name ?? 'fnctl';
    const places: Place[] = [];
    if (plan.v2Group && v2) {
      const controllers = (['memory', 'cpu', 'pids'] as const).filter((c) => plan[c] === 2);
      places.push({ version: 2, hierarchy: [], base: join(v2.own, name), controllers, freezer: plan.freeze === 'v2' });
    }
    for (const h of v1) {
      if (!h.writable) continue;
      const controllers = (['memory', 'cpu', 'pids'] as const).filter((c) => plan[c] === 1 && h.controllers.includes(c));
      const freezer = plan.freeze === 'v1' && h.controllers.includes('freezer');
      if (controllers.length || freezer) places.push({ version: 1, hierarchy: h.controllers, base: join(h.own, name), controllers, freezer });
    }
    if (!places.length) return undefined;
    return new CgroupManager(plan, places, report);
  }

  /** Where groups go, one line per hierarchy (for doctor and logs). */
  describe(): string[] {
    return this.places.map((p) => `v${p.version} ${join(p.base, this.owner)}: ${[...p.controllers, ...(p.freezer ? ['freezer'] : [])].join(', ') || 'freeze/kill/accounting only'}`);
  }

  /** The group folders of this process (created on first use). */
  private ensureOwner(): void {
    if (this.ownerReady) return;
    const v2 = this.report.cgroup.v2;
    for (const p of this.places) {
      if (p.version === 2 && v2 && v2.delegation === 'alone' && p.controllers.length) moveSelfToLeaf(v2.own);
      mkdirSync(join(p.base, this.owner), { recursive: true });
      if (p.version === 2 && p.controllers.length) {
        // v2 hands controllers down one level at a time: own → fnctl → owner → vm.
        const list = p.controllers.map((c) => `+${c}`).join(' ');
        if (v2 && v2.delegation !== 'enabled') write(join(v2.own, 'cgroup.subtree_control'), list);
        write(join(p.base, 'cgroup.subtree_control'), list);
        write(join(p.base, this.owner, 'cgroup.subtree_control'), list);
      }
    }
    this.ownerReady = true;
  }

  /**
   * The group of one microVM, not created yet: its paths are known at once (the spawn command
   * names them), create() makes it right before the spawn.
   */
  group(vmId: string, limits: CgroupLimits): VmCgroup {
    const name = vmId.replace(/[^A-Za-z0-9_.-]/g, '_');
    const places = this.places.map((p) => ({ ...p, dir: join(p.base, this.owner, name) }));
    return new VmCgroup(name, places, limits, this.plan, {
      created: (g) => {
        this.ensureOwner();
        this.live.add(g);
      },
      destroyed: (g) => this.live.delete(g),
    });
  }

  /** Groups still alive in this process (not destroyed yet). */
  get active(): number {
    return this.live.size;
  }

  /**
   * Remove the groups of platforms that are gone (crashed, SIGKILLed): kill what runs in them, wait
   * until they are empty, rmdir. Groups of live platforms (other processes on this machine) stay.
   */
  async sweep(): Promise<SweepReport> {
    const report: SweepReport = { owners: [], groups: 0, killed: 0, failed: [] };
    const deadline = Date.now() + KILL_WAIT_MS;
    for (const p of this.places) {
      let owners: string[] = [];
      try {
        owners = readdirSync(p.base, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
      } catch {
        continue;
      }
      for (const owner of owners) {
        const m = /^(\d+)-(\d+)(-\d+)?$/.exec(owner);
        if (!m || owner === this.owner || startTimeOf(Number(m[1])) === m[2]) continue;
        if (!report.owners.includes(owner)) report.owners.push(owner);
        const ownerDir = join(p.base, owner);
        const vms = readdirSync(ownerDir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => join(ownerDir, d.name));
        for (const dir of vms) {
          report.groups++;
          const place: VmPlace = { ...p, dir };
          report.killed += killPlace(place);
          if (!(await waitEmpty([place], deadline, true))) report.failed.push(dir);
          else if (!(await rmdirPatiently(dir, deadline))) report.failed.push(dir);
        }
        if (!(await rmdirPatiently(ownerDir, deadline))) report.failed.push(ownerDir);
      }
    }
    return report;
  }

  /** Destroy every group still alive, then this process's owner folders (platform shutdown). */
  async close(): Promise<void> {
    await Promise.all([...this.live.values()].map((g) => g.destroy()));
    if (!this.ownerReady) return;
    const deadline = Date.now() + 1000;
    for (const p of this.places) await rmdirPatiently(join(p.base, this.owner), deadline);
    this.ownerReady = false;
  }
}

interface VmPlace extends Place {
  dir: string;
}

function applyLimits(p: Place, dir: string, limits: CgroupLimits): void {
  const bytes = Math.floor(limits.memoryMib * 1024 * 1024);
  const period = 100_000;
  const quota = Math.max(1000, Math.round(limits.vcpus * period));
  for (const c of p.controllers) {
    if (p.version === 2) {
      if (c === 'memory') {
        write(join(dir, 'memory.max'), String(bytes));
        // No swap: past its memory a guest is OOM-killed, it does not slow the machine down.
        if (existsSync(join(dir, 'memory.swap.max'))) write(join(dir, 'memory.swap.max'), '0');
        // An OOM kill takes the whole guest, not just its biggest process.
        if (existsSync(join(dir, 'memory.oom.group'))) write(join(dir, 'memory.oom.group'), '1');
      } else if (c === 'cpu') {
        write(join(dir, 'cpu.max'), `${quota} ${period}`);
        // Under contention a group competes as one entity: weigh it as `vcpus` busy threads.
        write(join(dir, 'cpu.weight'), String(cpuWeight(limits.vcpus)));
      } else if (c === 'pids') {
        write(join(dir, 'pids.max'), String(limits.pidsMax));
      }
    } else if (c === 'memory') {
      write(join(dir, 'memory.limit_in_bytes'), String(bytes));
      // memsw (memory + swap) exists only with swap accounting; without it, swappiness 0.
      if (existsSync(join(dir, 'memory.memsw.limit_in_bytes'))) write(join(dir, 'memory.memsw.limit_in_bytes'), String(bytes));
      else write(join(dir, 'memory.swappiness'), '0');
    } else if (c === 'cpu') {
      write(join(dir, 'cpu.cfs_period_us'), String(period));
      write(join(dir, 'cpu.cfs_quota_us'), String(quota));
      if (limits.vcpus !== 1) write(join(dir, 'cpu.shares'), String(cpuShares(limits.vcpus)));
    } else if (c === 'pids') {
      write(join(dir, 'pids.max'), String(limits.pidsMax));
    }
  }
}

/** v2 cpu.weight of a group with `vcpus`: it competes as `vcpus` busy threads (100 each). */
function cpuWeight(vcpus: number): number {
  return Math.max(1, Math.min(10000, Math.round(100 * vcpus)));
}

/** v1 cpu.shares of a group with `vcpus` (1024 a CPU). */
function cpuShares(vcpus: number): number {
  return Math.max(2, Math.round(1024 * vcpus));
}

/** SIGKILL everything in one group; returns how many were signalled. */
function killPlace(p: VmPlace): number {
  if (p.version === 2 && existsSync(join(p.dir, 'cgroup.kill'))) {
    const n = procsOf(p.dir).length;
    try {
      write(join(p.dir, 'cgroup.kill'), '1');
    } catch {
      // already gone
    }
    return n;
  }
  const frozen = p.freezer && read(join(p.dir, 'freezer.state'))?.trim() !== 'THAWED';
  const n = sigkill(procsOf(p.dir));
  // v1 frozen tasks do not die until thawed.
  if (frozen) {
    try {
      write(join(p.dir, 'freezer.state'), 'THAWED');
    } catch {
      // gone
    }
  }
  return n;
}

async function waitEmpty(places: VmPlace[], deadline: number, rekill: boolean): Promise<boolean> {
  for (let i = 0; ; i++) {
    if (places.every((p) => procsOf(p.dir).length === 0)) return true;
    if (Date.now() > deadline) return false;
    // Signals race forks (v1 without cgroup.kill): kill again what appeared since.
    if (rekill) for (const p of places) killPlace(p);
    await sleep(i < 10 ? 2 : 10);
  }
}

/** v2 "no internal processes": to give children controllers, we leave our own group for a leaf. */
function moveSelfToLeaf(own: string): void {
  const leaf = join(own, 'fnctl-host');
  mkdirSync(leaf, { recursive: true });
  write(join(leaf, 'cgroup.procs'), String(process.pid));
}

/** The cgroup of one microVM, in every hierarchy fnctl uses. */
export class VmCgroup {
  private destroyed: Promise<DestroyReport> | undefined;
  private lastOomKills = 0;

  private created = false;

  constructor(
    readonly name: string,
    private readonly places: VmPlace[],
    readonly limits: CgroupLimits,
    readonly plan: CgroupPlan,
    private readonly hooks: { created: (g: VmCgroup) => void; destroyed: (g: VmCgroup) => void },
  ) {}

  /** Make the group in every hierarchy and set its limits (synchronous; throws, leaving nothing, on failure). */
  create(): void {
    if (this.created) return;
    this.hooks.created(this);
    const made: string[] = [];
    try {
      for (const p of this.places) {
        try {
          mkdirSync(p.dir);
          made.push(p.dir);
        } catch (err) {
          // A group of a vm with this id that ended without cleanup: reuse it only if empty.
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || procsOf(p.dir).length) throw err;
        }
        applyLimits(p, p.dir, this.limits);
      }
    } catch (err) {
      for (const d of made.reverse()) {
        try {
          rmdirSync(d);
        } catch {
          // left for the sweep
        }
      }
      this.hooks.destroyed(this);
      throw err;
    }
    this.created = true;
  }

  get exists(): boolean {
    return this.created;
  }

  /** Group folders, one per hierarchy. */
  get dirs(): string[] {
    return this.places.map((p) => p.dir);
  }

  /** The cgroup.procs files a process writes its pid to, to join this group everywhere. */
  get procsFiles(): string[] {
    return this.places.map((p) => join(p.dir, 'cgroup.procs'));
  }

  /**
   * The /proc/<pid>/cgroup lines a member of this group has, as their controller field ("" for v2,
   * "memory", "cpu,cpuacct" …), sorted: a process is in the group when each of these lines ends with
   * "/<name>".
   */
  get hierarchies(): string[] {
    return this.places.map((p) => (p.version === 2 ? '' : [...p.hierarchy].sort().join(',')));
  }

  /** Whether `pid` is in this group in every hierarchy (false when it is gone). */
  holds(pid: number): boolean {
    const text = read(`/proc/${pid}/cgroup`);
    if (text === undefined) return false;
    const paths = new Map<string, string>();
    for (const line of text.split('\n')) {
      const m = /^\d+:([^:]*):(.*)$/.exec(line);
      if (m) paths.set(m[1]!.split(',').sort().join(','), m[2]!);
    }
    return this.hierarchies.every((h) => paths.get(h)?.endsWith(`/${this.name}`) === true);
  }

  /**
   * Move `pid` into the group in every hierarchy, off the event loop: a cgroup migration waits for
   * an RCU grace period (~10 ms on a busy machine), which must not block the platform. Resolves
   * false when the process is gone.
   */
  async join(pid: number): Promise<boolean> {
    for (const f of this.procsFiles) {
      try {
        await writeFileAsync(f, String(pid));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
        throw err;
      }
    }
    return true;
  }

  /**
   * Weigh the group as background work (the least CPU weight there is: it runs when nothing else
   * wants the CPU), or back to its limits' weight. For guests held ready ahead of their request,
   * whose setup must not slow a start or a request down. A no-op without a cpu controller.
   */
  background(on: boolean): void {
    for (const p of this.places) {
      if (!p.controllers.includes('cpu')) continue;
      if (p.version === 2) write(join(p.dir, 'cpu.weight'), on ? '1' : String(cpuWeight(this.limits.vcpus)));
      else write(join(p.dir, 'cpu.shares'), on ? '2' : String(cpuShares(this.limits.vcpus)));
    }
  }

  /** Every pid in the group (from the first hierarchy: all hold the same processes). */
  pids(): number[] {
    const seen = new Set<number>();
    for (const p of this.places) for (const pid of procsOf(p.dir)) seen.add(pid);
    return [...seen];
  }

  /** OOM kills in this group so far (v2 memory.events oom_kill, v1 memory.oom_control oom_kill). */
  oomKills(): number {
    let n = 0;
    for (const p of this.places) {
      if (!p.controllers.includes('memory')) continue;
      if (p.version === 2) n += keyed(join(p.dir, 'memory.events')).get('oom_kill') ?? 0;
      else n += keyed(join(p.dir, 'memory.oom_control')).get('oom_kill') ?? 0;
    }
    // Once removed the files are gone: keep the last count seen.
    this.lastOomKills = Math.max(this.lastOomKills, n);
    return this.lastOomKills;
  }

  stats(): CgroupStats {
    const s: CgroupStats = { oomKills: this.oomKills() };
    for (const p of this.places) {
      const f = (name: string): string => join(p.dir, name);
      if (p.version === 2) {
        const cpu = keyed(f('cpu.stat'));
        if (cpu.has('usage_usec')) s.cpuUsageUsec = cpu.get('usage_usec')!;
        if (cpu.has('nr_throttled')) s.throttledPeriods = cpu.get('nr_throttled')!;
      }
      for (const c of p.controllers) {
        if (c === 'memory') {
          const usage = num(f(p.version === 2 ? 'memory.current' : 'memory.usage_in_bytes'));
          const limit = num(f(p.version === 2 ? 'memory.max' : 'memory.limit_in_bytes'));
          const peak = num(f(p.version === 2 ? 'memory.peak' : 'memory.max_usage_in_bytes'));
          if (usage !== undefined) s.memoryBytes = usage;
          if (limit !== undefined) s.memoryLimitBytes = limit;
          if (peak !== undefined) s.memoryPeakBytes = peak;
        } else if (c === 'cpu' && p.version === 1) {
          const cpu = keyed(f('cpu.stat'));
          if (cpu.has('nr_throttled')) s.throttledPeriods = cpu.get('nr_throttled')!;
          if (cpu.has('usage_usec')) s.cpuUsageUsec ??= cpu.get('usage_usec')!;
        } else if (c === 'pids') {
          const cur = num(f('pids.current'));
          const max = num(f('pids.max'));
          if (cur !== undefined) s.pids = cur;
          if (max !== undefined) s.pidsMax = max;
          const ev = keyed(f('pids.events')).get('max');
          if (ev !== undefined) s.pidsRefused = ev;
        }
      }
    }
    return s;
  }

  /** Freeze every process of the guest; resolves once the kernel says frozen. */
  async freeze(): Promise<void> {
    await this.setFrozen(true);
  }

  async thaw(): Promise<void> {
    await this.setFrozen(false);
  }

  get canFreeze(): boolean {
    return this.places.some((p) => p.freezer);
  }

  private async setFrozen(on: boolean): Promise<void> {
    const p = this.places.find((x) => x.freezer);
    if (!p) throw new Error('no freezer for this cgroup');
    const deadline = Date.now() + 2000;
    if (p.version === 2) {
      write(join(p.dir, 'cgroup.freeze'), on ? '1' : '0');
      // cgroup.events says "frozen 1" once every task has stopped.
      for (let i = 0; keyed(join(p.dir, 'cgroup.events')).get('frozen') !== (on ? 1 : 0); i++) {
        if (Date.now() > deadline) throw new Error(`cgroup ${p.dir} did not ${on ? 'freeze' : 'thaw'} within 2 s`);
        await (i < 20 ? new Promise((r) => setImmediate(r)) : sleep(1));
      }
      return;
    }
    const want = on ? 'FROZEN' : 'THAWED';
    write(join(p.dir, 'freezer.state'), want);
    // FREEZING while some task is still on its way to the fridge.
    for (let i = 0; read(join(p.dir, 'freezer.state'))?.trim() !== want; i++) {
      if (Date.now() > deadline) throw new Error(`cgroup ${p.dir} did not reach ${want} within 2 s`);
      if (on) write(join(p.dir, 'freezer.state'), want);
      await (i < 20 ? new Promise((r) => setImmediate(r)) : sleep(1));
    }
  }

  /** SIGKILL everything in the group now (cgroup.kill where there is one). Synchronous. */
  kill(): void {
    // One hierarchy suffices: every process is in all of them.
    const p = this.places.find((x) => x.version === 2) ?? this.places[0];
    if (p) killPlace(p);
  }

  /**
   * Kill what is left, wait until the group is empty, read the OOM count and remove every folder.
   * Idempotent; never rejects.
   */
  destroy(): Promise<DestroyReport> {
    if (!this.created) return Promise.resolve({ oomKills: 0, removed: true, leftover: [], ms: 0 });
    this.destroyed ??= this.doDestroy();
    return this.destroyed;
  }

  private async doDestroy(): Promise<DestroyReport> {
    const t0 = performance.now();
    const deadline = Date.now() + KILL_WAIT_MS;
    this.kill();
    for (const p of this.places) if (p.version === 1 && p.freezer) killPlace(p);
    const empty = await waitEmpty(this.places, deadline, true);
    const oomKills = this.oomKills();
    let removed = empty;
    if (empty) {
      for (const p of this.places) removed = (await rmdirPatiently(p.dir, deadline)) && removed;
    }
    const leftover = empty ? [] : this.pids();
    this.hooks.destroyed(this);
    return { oomKills, removed, leftover, ms: performance.now() - t0 };
  }
}
