// The platform: the registry of functions and versions, their pools of microVMs and their logs,
// behind one typed vocabulary (deploy, route, rollback, remove, list) that the HTTP layers call.
// It never speaks HTTP itself.
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import type { Logger } from '../core/log.js';
import { systemClock, type Clock } from '../core/clock.js';
import { FnError } from '../core/errors.js';
import type { PlatformConfig } from '../core/config.js';
import { Metrics } from '../core/metrics.js';
import { Registry, type VersionRecord, type FunctionRecord } from '../functions/registry.js';
import { LogStore } from '../functions/logs.js';
import { resolveSettings, validateName, type Settings } from '../functions/settings.js';
import { Pool, type VmFactory } from '../microvm/pool.js';
import { MicroVm } from '../microvm/microvm.js';
import type { InstanceInfo, MicroVmConfig } from '../microvm/types.js';
import type { HandlerStyle } from '../core/protocol.js';

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
  snapshot: { status: 'none'; reason: string };
  settings: Settings;
}

export interface FunctionSummary {
  name: string;
  version: number;
  hash: string;
  style: HandlerStyle;
  settings: Settings;
  snapshot: { status: 'none'; reason: string };
  createdAt: number;
  updatedAt: number;
  instances: Record<'starting' | 'idle' | 'busy' | 'queued', number>;
}

interface FunctionState {
  current: VersionRecord;
  pools: Map<number, Pool>;
}

const NO_SNAPSHOT = { status: 'none' as const, reason: 'snapshots are not built yet on this platform' };

export class Platform {
  readonly registry: Registry;
  readonly logs: LogStore;
  readonly metrics: Metrics;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly factory: VmFactory;
  private readonly functions = new Map<string, FunctionState>();
  /** Deploys, rollbacks and removals of one function run one at a time. */
  private readonly locks = new Map<string, Promise<unknown>>();
  private stopped = false;

  constructor(
    readonly config: PlatformConfig,
    deps: { log: Logger; clock?: Clock; factory?: VmFactory; metrics?: Metrics },
  ) {
    this.log = deps.log;
    this.clock = deps.clock ?? systemClock;
    this.metrics = deps.metrics ?? new Metrics();
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    this.registry = Registry.open(config.dataDir);
    this.logs = new LogStore(path.join(config.dataDir, 'logs'));
    this.factory = deps.factory ?? ((cfg) => MicroVm.boot(cfg, { sink: this.logs, log: this.log }));
    for (const fn of this.registry.listFunctions()) {
      const current = this.registry.currentVersion(fn.name);
      if (current) this.functions.set(fn.name, { current, pools: new Map() });
    }
    for (const name of this.functions.keys()) this.poolFor(name).ensureMin();
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
    const record = v === fn.current.version ? fn.current : this.registry.getVersion(name, v);
    if (!record) throw new FnError('VERSION_NOT_FOUND', `function ${name} has no version ${v}`);
    const created = this.createPool(record);
    fn.pools.set(v, created);
    return created;
  }

  private createPool(record: VersionRecord): Pool {
    const s = record.settings;
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
        idleMs: Math.round(s.idle * 1000),
        env: s.env,
        network: s.network,
      },
      factory: this.factory,
      clock: this.clock,
      log: this.log,
      sink: this.logs,
      initTimeoutMs: this.config.initTimeoutMs,
      queueWaitMs: this.config.queueWaitMs,
      queueLength: this.config.queueLength,
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
    return this.withLock(name, async () => {
      this.assertRunning();
      const stored = this.registry.storeBundle(input.bundle);
      const boot = await this.validateBundle(name, stored.path, settings);
      const { version, unchanged } = this.registry.publish(name, {
        bundleSha256: stored.sha256,
        settings,
        info: { style: boot.style, initMs: boot.initMs },
      });
      this.switchTo(name, version);
      this.log.info({ fn: name, version: version.version, unchanged, initMs: boot.initMs }, 'deployed');
      return {
        name,
        version: version.version,
        hash: version.hash,
        unchanged,
        style: version.info.style,
        initMs: version.info.initMs,
        bundleBytes: version.bundleBytes,
        snapshot: NO_SNAPSHOT,
        settings: version.settings,
      };
    });
  }

  /** Boot the bundle in a throwaway microVM: its init must finish and a handler must be found. */
  private async validateBundle(name: string, bundlePath: string, settings: Settings) {
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
    const vm = await this.factory(config);
    const info = vm.bootInfo;
    await vm.stop(1000);
    return info;
  }

  private switchTo(name: string, version: VersionRecord): void {
    const fn = this.functions.get(name);
    if (!fn) {
      this.functions.set(name, { current: version, pools: new Map() });
      this.poolFor(name).ensureMin();
      return;
    }
    const previous = fn.current.version;
    fn.current = version;
    if (previous !== version.version) {
      const old = fn.pools.get(previous);
      fn.pools.delete(previous);
      void old?.drain(this.config.shutdownGraceMs);
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
      this.functions.delete(name);
      this.registry.remove(name);
      await Promise.all([...fn.pools.values()].map((p) => p.drain(this.config.shutdownGraceMs)));
      await this.logs.remove(name);
      this.log.info({ fn: name }, 'removed');
    });
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

  private summarize(record: FunctionRecord, fn: FunctionState): FunctionSummary {
    const instances = { starting: 0, idle: 0, busy: 0, queued: 0 };
    for (const pool of fn.pools.values()) {
      const c = pool.counts();
      instances.starting += c.starting;
      instances.idle += c.idle;
      instances.busy += c.busy;
      instances.queued += c.queued;
    }
    return {
      name: record.name,
      version: fn.current.version,
      hash: fn.current.hash,
      style: fn.current.info.style,
      settings: fn.current.settings,
      snapshot: NO_SNAPSHOT,
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
      instances,
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

  /** Stop every pool (in-flight requests finish within the grace period), then close the stores. */
  async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const pools = [...this.functions.values()].flatMap((fn) => [...fn.pools.values()]);
    await Promise.all(pools.map((p) => p.drain(this.config.shutdownGraceMs)));
    await Promise.allSettled([...this.locks.values()]);
    await this.logs.close();
    this.registry.close();
  }
}
