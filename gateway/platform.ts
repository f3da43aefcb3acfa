// The platform: the registry of functions and versions, their pools of microVMs and their logs,
// behind one typed vocabulary (deploy, route, rollback, remove, list) that the HTTP layers call.
// It never speaks HTTP itself.
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import type { Logger } from '../core/log.js';
import { systemClock, type Clock } from '../core/clock.js';
import { FnError, toFnError } from '../core/errors.js';
import { MiB, machineMemory, memoryBudgetBytes, type PlatformConfig } from '../core/config.js';
import { Metrics } from '../core/metrics.js';
import { MemoryBudget } from '../core/budget.js';
import { Registry, versionHash, type VersionRecord, type FunctionRecord, type ScalingOverride } from '../functions/registry.js';
import { LogStore } from '../functions/logs.js';
import { resolveSettings, validateName, type Settings } from '../functions/settings.js';
import { Pool, type PoolVm, type ScalingSpec, type VmFactory } from '../microvm/pool.js';
import { MicroVm, guestNodeFlags, type MicroVmDeps } from '../microvm/microvm.js';
import { SnapshotStore, type StoredSnapshot } from '../snapshots/store.js';
import { ScaleLoop } from './scaling.js';
import { createJailer, type Jailer } from '../microvm/jailer.js';
import { HeldGuests } from '../microvm/held.js';
import { probeBatchScheduling } from '../microvm/sched.js';
import type { InstanceInfo, MicroVmConfig } from '../microvm/types.js';
import { SNAPSHOT_BLOB_FLAG, type HandlerStyle } from '../core/protocol.js';

/** What a version's snapshot is: ready to restore from, or why there is none. */
export type SnapshotStatus =
  | { status: 'ready'; blobBytes: number; initMs: number; buildMs: number }
  | { status: 'none'; reason: string }
  | { status: 'off'; reason: string };

export interface DeployInput {
  name: string;
  bundle: Buffer;
  settings: Partial<Settings>;
}

export interface DeployResult {
  name: string;
  version: number;
  hash: string;
  unchanged: boolean;
  style: HandlerStyle;
  initMs: number;
  bundleBytes: number;
  snapshot: SnapshotStatus;
  settings: Settings;
}

export interface FunctionSummary {
  name: string;
  version: number;
  hash: string;
  style: HandlerStyle;
  settings: Settings;
  snapshot: SnapshotStatus;
  createdAt: number;
  updatedAt: number;
  /** paused: standby microVMs, restored and frozen. */
  instances: InstanceCounts;
  /** Set when `fnctl scale` overrides the current version's min, max and standby (then in `settings`). */
  scaleOverride?: ScalingOverride;
}

export type InstanceCounts = Record<'starting' | 'idle' | 'busy' | 'paused' | 'queued', number>;

export interface ScaleResult {
  name: string;
  version: number;
  scaling: ScalingSpec;
  scaleOverride: ScalingOverride;
  instances: InstanceCounts;
  /** Set when min and standby cannot all fit in the memory budget. */
  warning?: string;
}

const SCALING_KEYS = ['min', 'max', 'standby'] as const;

interface FunctionState {
  current: VersionRecord;
  pools: Map<number, Pool>;
  /** `fnctl scale`'s min, max and standby, over the current version's; kept across restarts. */
  scaling: ScalingOverride | undefined;
}

const OFF: SnapshotStatus = { status: 'off', reason: 'disabled with --snapshot off' };

function snapshotOf(record: VersionRecord): SnapshotStatus {
  return (record.info.snapshot as SnapshotStatus | undefined) ?? { status: 'none', reason: 'deployed before snapshots existed' };
}

/** The prefix of the HeldGuests keys of a version (see bootVm). */
function heldKey(name: string, version?: number): string {
  return version === undefined ? `${name}@` : `${name}@${version}:`;
}

let heldSeq = 0;
/** An id for a guest held ahead of its request, in the form of the pool's ids. */
function heldId(config: MicroVmConfig): string {
  // The '.' keeps it apart from the pool's ids, whose last part is [0-9a-z] only.
  return `vm-${config.functionName}-${config.version}-h.${(++heldSeq).toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

export class Platform {
  readonly registry: Registry;
  readonly logs: LogStore;
  readonly metrics: Metrics;
  /** The host memory budget every pool reserves its microVMs' memory in. */
  readonly budget: MemoryBudget;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly functions = new Map<string, FunctionState>();
  /** Deploys, rollbacks and removals of one function run one at a time. */
  private readonly locks = new Map<string, Promise<unknown>>();
  private snapshotStore: SnapshotStore | undefined;
  private scaler: ScaleLoop | undefined;
  private jailer: Jailer | undefined;
  /** chrt's path when guests start under SCHED_BATCH (config guestScheduling, and chrt works here). */
  private batch: string | undefined;
  /** Guests spawned ahead of their request, one per version that has started a microVM. */
  private readonly held: HeldGuests<MicroVm>;
  /** microVMs being started now (their guests not ready yet). */
  private starting = 0;
  private stopped = false;

  /**
   * @param deps.boot replaces how a microVM starts (tests inject doubles); by default a guest
   *   process, restored from its snapshot when one is given.
   */
  constructor(
    readonly config: PlatformConfig,
    private readonly deps: { log: Logger; clock?: Clock; boot?: (config: MicroVmConfig, snapshot?: StoredSnapshot) => Promise<PoolVm>; metrics?: Metrics },
  ) {
    this.log = deps.log;
    this.clock = deps.clock ?? systemClock;
    this.metrics = deps.metrics ?? new Metrics();
    this.held = new HeldGuests({ log: this.log, quiet: () => this.starting === 0 });
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    this.registry = Registry.open(config.dataDir);
    this.logs = new LogStore(path.join(config.dataDir, 'logs'));
    for (const fn of this.registry.listFunctions()) {
      const current = this.registry.currentVersion(fn.name);
      if (current) this.functions.set(fn.name, { current, pools: new Map(), scaling: this.registry.getScaling(fn.name) });
    }
    this.budget = new MemoryBudget({
      budgetBytes: memoryBudgetBytes(config),
      log: this.log,
      onEvict: (e) => this.metrics.evictions.labels(e.victim.functionName).inc(),
    });
    this.metrics.watch({
      memory: () => ({ budgetBytes: this.budget.budgetBytes, reservedBytes: this.budget.reservedBytes }),
      microvms: () => [...this.functions].map(([name, fn]): [string, Record<string, number>] => {
        const { queued: _queued, ...byState } = this.countsOf(fn);
        return [name, byState];
      }),
    });
  }

  /** Open the snapshot store and start the `min` microVMs of every function. */
  async start(): Promise<void> {
    if (this.config.isolation === 'auto' && !this.deps.boot) {
      const jailer = createJailer();
      await jailer.sweep();
      this.jailer = jailer;
      this.log.info({ jail: jailer.level, isolation: jailer.describe() }, 'microVM jail');
      for (const warning of jailer.warnings) this.log.warn(`weaker isolation: ${warning} (see fnctl doctor)`);
    }
    if (this.config.guestScheduling === 'batch' && !this.deps.boot) {
      const probe = probeBatchScheduling();
      this.batch = probe.chrt;
      if (probe.error) this.log.warn(`guests run under the normal scheduling policy, not SCHED_BATCH: ${probe.error}`);
    }
    const jailer = this.jailer;
    this.snapshotStore = await SnapshotStore.open(this.config.dataDir, {
      log: this.log,
      ...(jailer ? { jail: (plain, input) => jailer.wrapBuild(plain, input) } : {}),
    });
    const { overcommit, memoryBudgetMiB } = this.config;
    this.log.info(
      { budgetMiB: Math.floor(this.budget.budgetBytes / MiB), ...(memoryBudgetMiB === undefined ? { overcommit } : {}) },
      memoryBudgetMiB !== undefined ? 'host memory budget: set with --memory-budget'
      : machineMemory().source === 'limit' ? "host memory budget: this process's memory limit (cgroup) × overcommit"
      : "host memory budget: the machine's memory × overcommit",
    );
    for (const name of this.functions.keys()) this.poolFor(name).ensureMin();
    this.scaler = new ScaleLoop(() => this.pools(), this.clock, this.log);
    this.scaler.start();
  }

  private *pools(): Iterable<Pool> {
    for (const fn of this.functions.values()) yield* fn.pools.values();
  }

  private get snapshots(): SnapshotStore {
    if (!this.snapshotStore) throw new FnError('UNAVAILABLE', 'the platform is not started');
    return this.snapshotStore;
  }

  /**
   * Start a microVM of this version: the guest held ready for it when there is one (its jail is
   * already set up, see microvm/held.ts), else a new one; either way, once it is up, another is
   * held for the next start. `hold` false (a deploy's checks, not a version's microVMs) does neither.
   */
  private async bootVm(config: MicroVmConfig, snapshot?: StoredSnapshot, hold = true): Promise<PoolVm> {
    if (this.deps.boot) return this.deps.boot(config, snapshot);
    const jailer = this.jailer;
    const deps = {
      sink: this.logs,
      log: this.log,
      ...(this.batch ? { batch: this.batch } : {}),
      ...(jailer ? { jail: (c: MicroVmConfig, plain: { command: string; args: string[] }) => jailer.wrap(c, plain, snapshot ? [snapshot.blobPath] : []) } : {}),
      ...(snapshot
        ? { restore: true, spawnArgs: (c: MicroVmConfig) => ({ command: process.execPath, args: [...guestNodeFlags(c), SNAPSHOT_BLOB_FLAG, snapshot.blobPath] }) }
        : {}),
    };
    const { functionName: name, version } = config;
    const key = `${heldKey(name, version)}${snapshot ? 'restore' : 'cold'}`;
    const held = hold ? this.held.take(key) : undefined;
    let vm: MicroVm;
    this.starting++;
    try {
      vm = held ? await this.releaseHeld(held, config, deps) : await MicroVm.boot(config, deps);
    } finally {
      this.starting--;
      // After this start is done (not during it: the two would share the CPU and the cgroups),
      // and only for a version that still serves (not one that a deploy, rollback or rm dropped
      // while this start ran).
      const live = (): boolean => !this.stopped && this.serves(name, version);
      if (hold && live()) this.held.keep(key, () => (live() ? MicroVm.hold({ ...config, id: heldId(config) }, deps) : undefined));
    }
    if (hold) this.metrics.starts.labels(config.functionName, snapshot ? 'restore' : 'cold').inc();
    return vm;
  }

  /**
   * Start a held guest. One that died while held (its exit not yet seen when it was taken) or
   * whose start fails is replaced by a fresh boot: a request never fails for the held guest's sake.
   */
  private async releaseHeld(held: MicroVm, config: MicroVmConfig, deps: MicroVmDeps): Promise<MicroVm> {
    try {
      await held.release();
      return held;
    } catch (err) {
      this.log.warn({ fn: config.functionName, version: config.version, instance: held.id, err }, 'a held guest failed to start: booting a new one');
      return MicroVm.boot(config, deps);
    }
  }

  /** Whether NAME@VERSION still serves: its function's current version, or a pinned one with a pool. */
  private serves(name: string, version: number): boolean {
    const fn = this.functions.get(name);
    return fn !== undefined && (fn.current.version === version || fn.pools.has(version));
  }

  /**
   * How a version's microVMs start: restored from its snapshot when it has one. The snapshot is
   * verified once per pool; one that fails verification (corrupt, or made by another node) is
   * rebuilt from the version's bundle before any microVM uses it, and the event is logged.
   */
  private factoryFor(record: VersionRecord): VmFactory {
    if (snapshotOf(record).status !== 'ready') return (cfg) => this.bootVm(cfg);
    let snapshot: Promise<StoredSnapshot | undefined> | undefined;
    const load = async (): Promise<StoredSnapshot | undefined> => {
      const memory = record.settings.memory;
      const found = await this.snapshots.get(record.bundleSha256, memory);
      if (found) return found;
      this.log.warn({ fn: record.name, version: record.version }, 'snapshot missing or failed verification: rebuilding it from the bundle');
      const built = await this.snapshots.build(record.bundlePath, record.bundleSha256, memory, this.config.initTimeoutMs);
      if (built.status === 'ok') return built.snapshot;
      this.log.error({ fn: record.name, version: record.version, reason: built.reason }, 'snapshot rebuild failed: booting without it');
      return undefined;
    };
    return async (cfg) => {
      snapshot ??= load().catch((err: unknown) => {
        snapshot = undefined;
        throw err;
      });
      return this.bootVm(cfg, await snapshot);
    };
  }

  /** The pool serving NAME (at VERSION, else its current version). The invoke hot path. */
  route(name: string, version?: number): Pool {
    const fn = this.functions.get(name);
    if (!fn) throw new FnError('FUNCTION_NOT_FOUND', `function ${name} does not exist`);
    return this.poolFor(name, version, fn);
  }

  private poolFor(name: string, version?: number, fn = this.functions.get(name)!): Pool {
    const v = version ?? fn.current.version;
    const pool = fn.pools.get(v);
    if (pool) return pool;
    if (this.stopped) throw new FnError('UNAVAILABLE', 'the platform is shutting down');
    const current = v === fn.current.version;
    const record = current ? fn.current : this.registry.getVersion(name, v);
    if (!record) throw new FnError('VERSION_NOT_FOUND', `function ${name} has no version ${v}`);
    // `fnctl scale` applies to the current version; a pinned older one keeps its own scaling.
    const created = this.createPool(current ? this.effectiveSettings(fn) : record.settings, record);
    fn.pools.set(v, created);
    return created;
  }

  /** The current version's settings with `fnctl scale`'s min, max and standby over them. */
  private effectiveSettings(fn: FunctionState): Settings {
    const s = fn.current.settings;
    if (!fn.scaling) return s;
    return { ...s, min: fn.scaling.min, max: fn.scaling.max, standby: fn.scaling.standby };
  }

  private createPool(s: Settings, record: VersionRecord): Pool {
    return new Pool({
      spec: {
        functionName: record.name,
        version: record.version,
        bundlePath: record.bundlePath,
        memoryMib: s.memory,
        timeoutMs: Math.round(s.timeout * 1000),
        concurrency: s.concurrency,
        min: s.min,
        max: s.max,
        standby: s.standby,
        idleMs: Math.round(s.idle * 1000),
        env: s.env,
        network: s.network,
      },
      factory: this.factoryFor(record),
      clock: this.clock,
      log: this.log,
      sink: this.logs,
      initTimeoutMs: this.config.initTimeoutMs,
      queueWaitMs: this.config.queueWaitMs,
      queueLength: this.config.queueLength,
      budget: this.budget,
      recycle: { maxAgeMs: this.config.recycleAfterMs, maxInvocations: this.config.recycleAfterInvocations },
    });
  }

  private withLock<T>(name: string, work: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(name) ?? Promise.resolve();
    const next = prev.then(work, work);
    const settled = next.catch(() => undefined);
    this.locks.set(name, settled);
    void settled.then(() => {
      if (this.locks.get(name) === settled) this.locks.delete(name);
    });
    return next;
  }

  /**
   * Store the bundle, boot it once to run its initialisation and find its handler, and only then
   * publish the version and switch traffic to it. Any failure leaves the previous version serving.
   */
  async deploy(input: DeployInput): Promise<DeployResult> {
    const name = validateName(input.name);
    const settings = resolveSettings(input.settings);
    if (input.bundle.length > this.config.maxBundleBytes) {
      throw new FnError('INVALID_BUNDLE', `bundle is ${input.bundle.length} bytes, over the limit of ${this.config.maxBundleBytes}`);
    }
    if (settings.memory * MiB > this.budget.budgetBytes) {
      const budgetMib = Math.floor(this.budget.budgetBytes / MiB);
      throw new FnError('INVALID_SETTING', `invalid settings: memory = ${settings.memory}, more than the host's memory budget of ${budgetMib} MiB (see fnctl up --memory-budget and --overcommit)`);
    }
    // A deploy that sets min, max or standby itself takes scaling back from `fnctl scale`.
    const takesScaling = SCALING_KEYS.some((k) => input.settings[k] !== undefined);
    return this.withLock(name, async () => {
      this.assertRunning();
      const stored = this.registry.storeBundle(input.bundle);
      const current = this.functions.get(name)?.current;
      if (current && current.hash === versionHash(stored.sha256, settings)) {
        if (takesScaling) this.dropScaleOverride(name);
        return this.deployResult(current, true);
      }
      const { boot, snapshot } = await this.prepareVersion(name, stored.path, stored.sha256, settings);
      const { version, unchanged } = this.registry.publish(name, {
        bundleSha256: stored.sha256,
        settings,
        info: { style: boot.style, initMs: boot.initMs, snapshot },
      });
      // Before the switch, without touching the pool being replaced: the new version's pool
      // starts from its own settings.
      if (takesScaling) this.dropScaleOverride(name, false);
      this.switchTo(name, version);
      this.log.info({ fn: name, version: version.version, unchanged, initMs: boot.initMs, snapshot: snapshot.status }, 'deployed');
      return this.deployResult(version, unchanged);
    });
  }

  private deployResult(version: VersionRecord, unchanged: boolean): DeployResult {
    return {
      name: version.name,
      version: version.version,
      hash: version.hash,
      unchanged,
      style: version.info.style,
      initMs: version.info.initMs,
      bundleBytes: version.bundleBytes,
      snapshot: snapshotOf(version),
      settings: version.settings,
    };
  }

  /**
   * Run the function's initialisation as its microVMs will. First a plain boot: init must finish
   * within the limit and a handler must be found, or the deploy fails. Then, unless snapshots are
   * off, the snapshot build, and a microVM restored from it before anything is published. A
   * function that booted but cannot be snapshotted (Node 20's snapshot builder lacks some APIs)
   * falls back to plain boots with the reason, or fails the deploy with --snapshot required.
   */
  private async prepareVersion(name: string, bundlePath: string, bundleSha256: string, settings: Settings): Promise<{ boot: { style: HandlerStyle; initMs: number }; snapshot: SnapshotStatus }> {
    const config: MicroVmConfig = {
      id: `vm-${name}-deploy-${Math.random().toString(36).slice(2, 8)}`,
      functionName: name,
      version: 0,
      vcpus: 1,
      memoryMib: settings.memory,
      network: settings.network,
      rootfs: { bundlePath },
      env: settings.env,
      timeoutMs: Math.round(settings.timeout * 1000),
      initTimeoutMs: this.config.initTimeoutMs,
      concurrency: 1,
    };
    const plain = await this.bootVm(config, undefined, false);
    const boot = { style: plain.bootInfo.style, initMs: plain.bootInfo.initMs };
    await plain.stop(1000);
    if (settings.snapshot === 'off') return { boot, snapshot: OFF };

    let reason: string;
    try {
      const built = await this.snapshots.build(bundlePath, bundleSha256, settings.memory, this.config.initTimeoutMs);
      if (built.status === 'ok') {
        // A snapshot is only as good as a microVM restored from it: try one before publishing.
        const restored = await this.bootVm(config, built.snapshot, false);
        await restored.stop(1000);
        const { meta } = built.snapshot;
        return { boot, snapshot: { status: 'ready', blobBytes: meta.blobBytes, initMs: meta.initMs, buildMs: meta.buildMs } };
      }
      reason = built.reason;
    } catch (err) {
      const e = toFnError(err);
      if (e.code !== 'INIT_FAILED') throw e;
      reason = `init fails while the snapshot is built, though it boots: ${e.message.split('\n')[0]}`;
    }
    if (settings.snapshot === 'required') {
      throw new FnError('SNAPSHOT_FAILED', `function ${name} cannot be snapshotted (--snapshot required): ${reason}`);
    }
    return { boot, snapshot: { status: 'none', reason } };
  }

  /**
   * Forget `fnctl scale`'s override of NAME; with `apply`, the current pool goes back to its
   * version's scaling (not when a new version is about to replace that pool).
   */
  private dropScaleOverride(name: string, apply = true): void {
    const fn = this.functions.get(name);
    const had = this.registry.clearScaling(name);
    if (!fn?.scaling && !had) return;
    if (fn) {
      fn.scaling = undefined;
      const { min, max, standby } = fn.current.settings;
      if (apply) fn.pools.get(fn.current.version)?.updateScaling({ min, max, standby });
    }
    this.log.info({ fn: name }, 'the deploy sets min, max or standby: the override from fnctl scale is dropped');
  }

  /**
   * `fnctl scale`: change min, max and standby of NAME live, without a deploy. Checked by the
   * deploy settings' rules over the current values, stored per function in the registry (so a
   * restart keeps them), and applied at once to the current version's pool: min microVMs started,
   * standbys topped up or stopped, max enforced for new starts. Nothing in flight is dropped.
   */
  async scale(name: string, change: Partial<ScalingSpec>): Promise<ScaleResult> {
    validateName(name);
    return this.withLock(name, async () => {
      this.assertRunning();
      const fn = this.functions.get(name);
      if (!fn) throw new FnError('FUNCTION_NOT_FOUND', `function ${name} does not exist`);
      const before = this.effectiveSettings(fn);
      let next: Settings;
      try {
        next = resolveSettings(before, change);
      } catch (err) {
        const e = toFnError(err);
        throw new FnError(e.code, `${e.message} (now min ${before.min}, max ${before.max}, standby ${before.standby})`, e.details ? { details: e.details } : undefined);
      }
      const scaling: ScalingSpec = { min: next.min, max: next.max, standby: next.standby };
      fn.scaling = this.registry.setScaling(name, scaling);
      this.poolFor(name, undefined, fn).updateScaling(scaling);
      this.log.info({ fn: name, version: fn.current.version, ...scaling }, 'scaling changed (fnctl scale)');
      const needMib = (scaling.min + scaling.standby) * next.memory;
      const budgetMib = Math.floor(this.budget.budgetBytes / MiB);
      const warning = needMib > budgetMib
        ? `min ${scaling.min} and standby ${scaling.standby} need ${needMib} MiB, more than the host's memory budget of ${budgetMib} MiB: they start only as far as it allows`
        : undefined;
      return { name, version: fn.current.version, scaling, scaleOverride: fn.scaling, instances: this.countsOf(fn), ...(warning ? { warning } : {}) };
    });
  }

  private switchTo(name: string, version: VersionRecord): void {
    const fn = this.functions.get(name);
    if (!fn) {
      this.functions.set(name, { current: version, pools: new Map(), scaling: this.registry.getScaling(name) });
      this.poolFor(name).ensureMin();
      return;
    }
    const previous = fn.current.version;
    fn.current = version;
    if (previous !== version.version) {
      const old = fn.pools.get(previous);
      fn.pools.delete(previous);
      void old?.drain(this.config.shutdownGraceMs);
      void this.held.drop((key) => key.startsWith(heldKey(name, previous)));
      this.poolFor(name).ensureMin();
    }
  }

  async rollback(name: string, version?: number): Promise<VersionRecord> {
    validateName(name);
    return this.withLock(name, async () => {
      this.assertRunning();
      if (!this.functions.has(name)) throw new FnError('FUNCTION_NOT_FOUND', `function ${name} does not exist`);
      let target = version;
      if (target === undefined) {
        const prev = this.registry.previousVersion(name);
        if (!prev) throw new FnError('VERSION_NOT_FOUND', `function ${name} has no version before ${this.functions.get(name)!.current.version}`);
        target = prev.version;
      }
      const record = this.registry.setCurrent(name, target);
      this.switchTo(name, record);
      this.log.info({ fn: name, version: record.version }, 'rolled back');
      return record;
    });
  }

  async remove(name: string): Promise<void> {
    validateName(name);
    return this.withLock(name, async () => {
      const fn = this.functions.get(name);
      if (!fn) throw new FnError('FUNCTION_NOT_FOUND', `function ${name} does not exist`);
      const versions = this.registry.listVersions(name);
      this.functions.delete(name);
      this.registry.remove(name);
      await this.pruneSnapshots(versions);
      await Promise.all([...fn.pools.values()].map((p) => p.drain(this.config.shutdownGraceMs)));
      await this.held.drop((key) => key.startsWith(heldKey(name)));
      await this.logs.remove(name);
      this.log.info({ fn: name }, 'removed');
    });
  }

  /** Delete the snapshots of these removed versions unless a live version shares them. */
  private async pruneSnapshots(removed: VersionRecord[]): Promise<void> {
    const live = new Set<string>();
    for (const fn of this.registry.listFunctions()) {
      for (const v of this.registry.listVersions(fn.name)) live.add(`${v.bundleSha256}/${v.settings.memory}`);
    }
    for (const v of removed) {
      if (!live.has(`${v.bundleSha256}/${v.settings.memory}`)) await this.snapshots.remove(v.bundleSha256, v.settings.memory);
    }
  }

  private assertRunning(): void {
    if (this.stopped) throw new FnError('UNAVAILABLE', 'the platform is shutting down');
  }

  describe(name: string): FunctionSummary {
    const fn = this.functions.get(name);
    const record = fn && this.registry.getFunction(name);
    if (!fn || !record) throw new FnError('FUNCTION_NOT_FOUND', `function ${name} does not exist`);
    return this.summarize(record, fn);
  }

  list(): FunctionSummary[] {
    const out: FunctionSummary[] = [];
    for (const record of this.registry.listFunctions()) {
      const fn = this.functions.get(record.name);
      if (fn) out.push(this.summarize(record, fn));
    }
    return out;
  }

  private countsOf(fn: FunctionState): InstanceCounts {
    const instances = { starting: 0, idle: 0, busy: 0, paused: 0, queued: 0 };
    for (const pool of fn.pools.values()) {
      const c = pool.counts();
      instances.starting += c.starting;
      instances.idle += c.idle;
      instances.busy += c.busy;
      instances.paused += c.paused;
      instances.queued += c.queued;
    }
    return instances;
  }

  private summarize(record: FunctionRecord, fn: FunctionState): FunctionSummary {
    return {
      name: record.name,
      version: fn.current.version,
      hash: fn.current.hash,
      style: fn.current.info.style,
      settings: this.effectiveSettings(fn),
      snapshot: snapshotOf(fn.current),
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
      instances: this.countsOf(fn),
      ...(fn.scaling ? { scaleOverride: fn.scaling } : {}),
    };
  }

  versions(name: string): VersionRecord[] {
    if (!this.functions.has(name)) throw new FnError('FUNCTION_NOT_FOUND', `function ${name} does not exist`);
    return this.registry.listVersions(name);
  }

  instances(name: string): InstanceInfo[] {
    const fn = this.functions.get(name);
    if (!fn) throw new FnError('FUNCTION_NOT_FOUND', `function ${name} does not exist`);
    return [...fn.pools.values()].flatMap((p) => p.instances());
  }

  /**
   * Stop every microVM of NAME (in-flight requests finish first): the next request starts from
   * zero, or from the function's `min` and `standby` microVMs when it has them.
   */
  async stopInstances(name: string): Promise<number> {
    const fn = this.functions.get(name);
    if (!fn) throw new FnError('FUNCTION_NOT_FOUND', `function ${name} does not exist`);
    const pools = [...fn.pools.values()];
    fn.pools.clear();
    const count = pools.reduce((n, p) => n + p.instances().length, 0);
    await Promise.all(pools.map((p) => p.drain(this.config.shutdownGraceMs)));
    // Back to the function's baseline: its `min` microVMs and `standby` paused ones.
    if (this.functions.get(name) === fn && !this.stopped) this.poolFor(name, undefined, fn).ensureMin();
    return count;
  }

  /** Stop every pool (in-flight requests finish within the grace period), then close the stores. */
  async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.scaler?.stop();
    const held = this.held.close();
    const pools = [...this.functions.values()].flatMap((fn) => [...fn.pools.values()]);
    await Promise.all(pools.map((p) => p.drain(this.config.shutdownGraceMs)));
    await Promise.allSettled([...this.locks.values()]);
    await held;
    await this.jailer?.close();
    await this.logs.close();
    this.registry.close();
  }
}
