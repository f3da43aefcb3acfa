// The microVMs of one function version. A request takes, in order: a free warm microVM, a new one
// (up to `max`), or a place in a bounded queue; past the queue's length or its wait limit it is
// throttled. Idle microVMs above `min` are reaped after `idle`. The pool owns no process itself:
// microVMs come from an injected factory, so tests can drive it with small honest doubles.
import type { Logger } from '../core/log.js';
import type { Clock, Timer } from '../core/clock.js';
import { FnError } from '../core/errors.js';
import type {
  BootInfo,
  ConsoleRecord,
  ConsoleSink,
  InstanceInfo,
  InvokeRequest,
  InvokeResult,
  MicroVmConfig,
  NetworkMode,
  StartKind,
} from './types.js';

/** What the pool needs of a microVM. */
export interface PoolVm {
  readonly id: string;
  readonly bootInfo: BootInfo;
  invoke(req: InvokeRequest): Promise<InvokeResult>;
  stop(graceMs?: number): Promise<void>;
  kill(reason: string): void;
  onExit(listener: () => void): void;
  info(): InstanceInfo;
  /** Freeze and thaw (standby microVMs); a microVM without them is never kept on standby. */
  pause?(): Promise<void>;
  resume?(): Promise<void>;
  /** How it came to serve, as its listings show it. */
  start?: StartKind;
}

export type VmFactory = (config: MicroVmConfig) => Promise<PoolVm>;

export interface PoolSpec {
  functionName: string;
  version: number;
  bundlePath: string;
  memoryMib: number;
  timeoutMs: number;
  concurrency: number;
  min: number;
  max: number;
  /** Paused pre-restored microVMs to keep ready (the autoscaler's standby count). */
  standby: number;
  idleMs: number;
  env: Record<string, string>;
  network: NetworkMode;
}

export interface PoolOptions {
  spec: PoolSpec;
  factory: VmFactory;
  clock: Clock;
  log: Logger;
  sink: ConsoleSink;
  initTimeoutMs: number;
  queueWaitMs: number;
  queueLength: number;
}

/** How one request got its microVM; the gateway turns it into headers. */
export interface Lease {
  instance: string;
  start: StartKind;
  queueMs: number;
  /** Set when this request waited for the microVM to boot: Lambda's Init Duration. */
  initMs?: number;
  /** Boot time as the host measured it (spawn to ready), when this request waited for it. */
  bootMs?: number;
}

export interface PoolInvokeResult {
  result: InvokeResult;
  lease: Lease;
}

interface Entry {
  vm: PoolVm;
  inflight: number;
  lastUsedAt: number;
  invocations: number;
  maxRssBytes: number;
  /** The first invocation's REPORT line carries the init duration. */
  reportedInit: boolean;
  alive: boolean;
}

interface Waiter {
  resolve(entry: Entry, lease: Omit<Lease, 'instance'>): void;
  reject(err: unknown): void;
  enqueuedAt: number;
  timer: Timer | undefined;
}

let vmSeq = 0;

/** Where a record may carry its JSON line, ready made (functions/logs.ts looks for it). */
const JSON_LINE = Symbol.for('fnctl.consoleRecord.jsonLine');
/** Strings that JSON.stringify writes as they are, between quotes. */
const JSON_SAFE = /^[\w.:@+-]*$/;

export class Pool {
  private readonly entries: Entry[] = [];
  private readonly waiters: Waiter[] = [];
  /** Pre-restored, paused microVMs ready to be handed to a request (x-fn-start: standby). */
  private readonly standbys: Entry[] = [];
  private booting = 0;
  private standbyBooting = 0;
  private draining = false;
  private reapTimer: Timer | undefined;
  private reapAt = Infinity;
  private idleListeners: (() => void)[] = [];
  /** Requests in flight or queued, and its integral since the last observe(), for the autoscaler. */
  private loadNow = 0;
  private loadArea = 0;
  private loadSince: number;
  private observedSince: number;
  private lastActivityAt = 0;
  private activitySeen = false;

  constructor(private readonly options: PoolOptions) {
    this.loadSince = this.observedSince = options.clock.now();
  }

  get spec(): PoolSpec {
    return this.options.spec;
  }

  /** Run one request on a microVM of this pool. */
  invoke(req: InvokeRequest): Promise<PoolInvokeResult> {
    this.load(1);
    // The warm path, taken by nearly every request under load: no queue, no awaits.
    if (this.waiters.length === 0 && !this.draining) {
      const free = this.findFree();
      if (free) {
        free.inflight++;
        return this.run(free, { instance: free.vm.id, start: 'warm', queueMs: 0 }, req);
      }
    }
    return this.acquire().then(
      ({ entry, lease }) => this.run(entry, lease, req),
      (err: unknown) => {
        this.load(-1);
        throw err;
      },
    );
  }

  private run(entry: Entry, lease: Lease, req: InvokeRequest): Promise<PoolInvokeResult> {
    return entry.vm.invoke(req).then(
      (result) => {
        this.report(entry, req.requestId, result.handlerMs, result.rssBytes, lease);
        this.finishRequest(entry);
        return { result, lease };
      },
      (err: unknown) => {
        if (err instanceof FnError && err.details?.handlerMs !== undefined) {
          this.report(entry, req.requestId, Number(err.details.handlerMs), Number(err.details.rssBytes ?? 0), lease);
        }
        this.finishRequest(entry);
        throw err;
      },
    );
  }

  private finishRequest(entry: Entry): void {
    this.load(-1);
    this.release(entry);
  }


  /** Requests in flight or queued changed by `delta`: integrate the old value over its time. */
  private load(delta: number): void {
    const now = this.options.clock.now();
    this.loadArea += this.loadNow * (now - this.loadSince);
    this.loadSince = now;
    this.loadNow += delta;
    if (delta !== 0) {
      this.lastActivityAt = now;
      this.activitySeen = true;
    }
  }

  /**
   * The autoscaler's collector: average concurrency (in flight + queued) since the last call,
   * time-weighted so a burst between two ticks still counts.
   */
  observe(): { concurrency: number; durationMs: number; lastActivityAt: number | undefined; ready: number } {
    const now = this.options.clock.now();
    this.load(0);
    const durationMs = now - this.observedSince;
    const concurrency = durationMs > 0 ? this.loadArea / durationMs : this.loadNow;
    this.loadArea = 0;
    this.observedSince = now;
    return { concurrency, durationMs, lastActivityAt: this.activitySeen ? this.lastActivityAt : undefined, ready: this.entries.length };
  }

  /**
   * The autoscaler's actuator: start microVMs up to `desired`, or stop idle ones above it, least
   * recently used first (busy ones finish their requests and are left for a later tick).
   */
  scaleTo(desired: number): void {
    if (this.draining) return;
    this.ensureStandby();
    const target = Math.min(this.spec.max, Math.max(this.spec.min, desired));
    while (this.entries.length + this.booting < target) this.bootFor(undefined);
    let excess = this.entries.length + this.booting - target;
    if (excess <= 0) return;
    const idle = this.entries.filter((e) => e.inflight === 0).sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    for (const e of idle) {
      if (excess-- <= 0) break;
      this.retire(e, 'scaled down');
    }
  }

  private retire(e: Entry, why: string): void {
    e.alive = false;
    this.entries.splice(this.entries.indexOf(e), 1);
    this.options.log.debug({ fn: this.spec.functionName, version: this.spec.version, instance: e.vm.id }, `stopping microVM: ${why}`);
    void e.vm.stop();
  }

  private acquire(): Promise<{ entry: Entry; lease: Lease }> {
    if (this.draining) {
      return Promise.reject(new FnError('UNAVAILABLE', `${this.label} is being replaced; retry`));
    }
    // invoke() has already taken a free microVM when one was there and nobody was queued.
    const { queueLength, queueWaitMs, clock } = this.options;
    if (this.waiters.length >= queueLength && !this.canBoot() && this.standbys.length === 0) {
      return Promise.reject(this.throttled(`queue of ${queueLength} is full`));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        enqueuedAt: clock.monotonic(),
        timer: undefined,
        resolve: (entry, lease) => resolve({ entry, lease: { ...lease, instance: entry.vm.id } }),
        reject,
      };
      waiter.timer = clock.setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i < 0) return;
        this.waiters.splice(i, 1);
        reject(this.throttled(`no microVM was free within ${queueWaitMs} ms`));
      }, queueWaitMs);
      this.waiters.push(waiter);
      this.pump();
    });
  }

  private throttled(why: string): FnError {
    return new FnError('THROTTLED', `${this.label} is at its limit of ${this.spec.max} microVMs × ${this.spec.concurrency} concurrent requests: ${why}`, {
      details: { retryAfterSeconds: 1 },
    });
  }

  private get label(): string {
    return `function ${this.spec.functionName} version ${this.spec.version}`;
  }

  private canBoot(): boolean {
    return !this.draining && this.total() < this.spec.max;
  }

  private total(): number {
    return this.entries.length + this.booting + this.standbys.length + this.standbyBooting;
  }

  /** The most recently used microVM with room, so that the others go idle and can be reaped. */
  private findFree(): Entry | undefined {
    let best: Entry | undefined;
    for (const e of this.entries) {
      if (e.alive && e.inflight < this.spec.concurrency && (!best || e.lastUsedAt > best.lastUsedAt)) best = e;
    }
    return best;
  }

  /** Hand free microVMs to waiters in order; boot new ones for the rest while there is room. */
  private pump(): void {
    while (this.waiters.length > 0) {
      const free = this.findFree();
      if (free) {
        const waiter = this.waiters.shift()!;
        waiter.timer?.cancel();
        free.inflight++;
        waiter.resolve(free, { start: 'warm', queueMs: this.options.clock.monotonic() - waiter.enqueuedAt });
        continue;
      }
      if (this.standbys.length > 0) {
        const waiter = this.waiters.shift()!;
        waiter.timer?.cancel();
        this.takeStandby(waiter);
        continue;
      }
      if (!this.canBoot()) break;
      const waiter = this.waiters.shift()!;
      waiter.timer?.cancel();
      this.bootFor(waiter);
    }
    if (this.draining) this.checkDrained();
  }

  private bootFor(waiter: Waiter | undefined): void {
    this.booting++;
    const started = this.options.clock.monotonic();
    this.boot(waiter !== undefined).then(
      (entry) => {
        this.booting--;
        if (waiter) {
          const info = entry.vm.bootInfo;
          waiter.resolve(entry, {
            start: info.restored ? 'restore' : 'cold',
            queueMs: started - waiter.enqueuedAt,
            initMs: info.initMs,
            bootMs: this.options.clock.monotonic() - started,
          });
        }
        this.pump();
        if (!waiter) this.armReaper();
      },
      (err: unknown) => {
        this.booting--;
        if (waiter) waiter.reject(err);
        else this.options.log.warn({ fn: this.spec.functionName, version: this.spec.version, err }, 'microVM failed to start');
        this.pump();
      },
    );
  }

  /** Start a microVM; a reserved one is already counted busy for the request that started it. */
  private async boot(reserved: boolean, standby = false): Promise<Entry> {
    const { spec, clock } = this.options;
    const config: MicroVmConfig = {
      id: `vm-${spec.functionName}-${spec.version}-${(++vmSeq).toString(36)}${Math.random().toString(36).slice(2, 6)}`,
      functionName: spec.functionName,
      version: spec.version,
      vcpus: 1,
      memoryMib: spec.memoryMib,
      network: spec.network,
      rootfs: { bundlePath: spec.bundlePath },
      env: spec.env,
      timeoutMs: spec.timeoutMs,
      initTimeoutMs: this.options.initTimeoutMs,
      concurrency: spec.concurrency,
    };
    const vm = await this.options.factory(config);
    const entry: Entry = {
      vm,
      // Claimed before it becomes visible to findFree(), so no queued request can take it first.
      inflight: reserved ? 1 : 0,
      lastUsedAt: clock.now(),
      invocations: 0,
      maxRssBytes: 0,
      reportedInit: false,
      alive: true,
    };
    vm.onExit(() => this.forget(entry));
    if (!standby) this.entries.push(entry);
    return entry;
  }

  private forget(entry: Entry): void {
    entry.alive = false;
    const i = this.entries.indexOf(entry);
    if (i >= 0) this.entries.splice(i, 1);
    const j = this.standbys.indexOf(entry);
    if (j >= 0) this.standbys.splice(j, 1);
    this.ensureMin();
    this.pump();
  }

  private release(entry: Entry): void {
    entry.inflight--;
    entry.invocations++;
    entry.lastUsedAt = this.options.clock.now();
    if (this.waiters.length > 0) this.pump();
    if (entry.inflight === 0) {
      if (this.draining) this.checkDrained();
      else this.armReaper();
    }
  }

  /**
   * One REPORT record per invocation, in the form of Lambda's. It also carries its own JSON line
   * (under JSON_LINE, which the log store writes instead of running JSON.stringify): built from
   * the same pieces by a template, a third of the cost, and this runs on every invocation. Only
   * when every string in it needs no JSON escaping, which the gateway's ids and names never do.
   */
  private report(entry: Entry, requestId: string, handlerMs: number, rssBytes: number, lease: Lease): void {
    if (rssBytes > entry.maxRssBytes) entry.maxRssBytes = rssBytes;
    const { functionName, version, memoryMib } = this.spec;
    const duration = handlerMs.toFixed(2);
    const billed = Math.max(1, Math.ceil(handlerMs));
    const used = Math.ceil(entry.maxRssBytes / (1024 * 1024));
    let init = '';
    const startMs = lease.bootMs ?? lease.initMs;
    if (!entry.reportedInit && startMs !== undefined) {
      entry.reportedInit = true;
      init = `${lease.start === 'restore' ? 'Restore' : 'Init'} Duration: ${startMs.toFixed(2)} ms`;
    }
    const message = (tab: string): string =>
      `REPORT RequestId: ${requestId}${tab}Duration: ${duration} ms${tab}Billed Duration: ${billed} ms` +
      `${tab}Memory Size: ${memoryMib} MB${tab}Max Memory Used: ${used} MB${init ? tab + init : ''}`;
    const time = this.options.clock.now();
    const instance = entry.vm.id;
    const record: ConsoleRecord & { [JSON_LINE]?: string } = {
      time,
      functionName,
      version,
      instance,
      stream: 'stdout',
      requestId,
      level: 'REPORT',
      message: message('\t'),
    };
    if (JSON_SAFE.test(requestId) && JSON_SAFE.test(functionName) && JSON_SAFE.test(instance) && Number.isFinite(time) && Number.isInteger(version)) {
      record[JSON_LINE] =
        `{"time":${time},"functionName":"${functionName}","version":${version},"instance":"${instance}","stream":"stdout",` +
        `"requestId":"${requestId}","level":"REPORT","message":"${message('\\t')}"}`;
    }
    this.options.sink.record(record);
  }

  /** Keep `min` microVMs running and `standby` paused ones ready. */
  ensureMin(): void {
    while (!this.draining && this.entries.length + this.booting < this.spec.min) this.bootFor(undefined);
    this.ensureStandby();
  }

  /** Restore microVMs and pause them until `standby` are ready (within `max`). */
  private ensureStandby(): void {
    while (!this.draining && this.standbys.length + this.standbyBooting < this.spec.standby && this.total() < this.spec.max) {
      this.standbyBooting++;
      this.boot(false, true)
        .then(async (entry) => {
          if (!entry.vm.pause) {
            this.options.log.warn({ fn: this.spec.functionName }, 'microVMs of this kind cannot be paused: no standby');
            await entry.vm.stop();
            return;
          }
          await entry.vm.pause();
          if (this.draining || !entry.alive) {
            await entry.vm.stop();
            return;
          }
          this.standbys.push(entry);
          this.pump();
        })
        .catch((err: unknown) => this.options.log.warn({ fn: this.spec.functionName, err }, 'standby microVM failed to start'))
        .finally(() => {
          this.standbyBooting--;
        });
    }
  }

  /** Resume a standby microVM for this waiter, then start a new standby in its place. */
  private takeStandby(waiter: Waiter): void {
    const entry = this.standbys.shift()!;
    entry.inflight = 1;
    this.entries.push(entry);
    const { clock } = this.options;
    entry.vm.resume!().then(
      () => {
        entry.vm.start = 'standby';
        waiter.resolve(entry, { start: 'standby', queueMs: clock.monotonic() - waiter.enqueuedAt });
        this.ensureStandby();
      },
      (err: unknown) => {
        entry.inflight = 0;
        waiter.reject(err);
        this.retire(entry, 'could not be resumed');
        this.ensureStandby();
      },
    );
  }

  private armReaper(): void {
    const { clock, spec } = this.options;
    if (this.entries.length <= spec.min) return;
    let earliest = Infinity;
    for (const e of this.entries) if (e.inflight === 0 && e.lastUsedAt < earliest) earliest = e.lastUsedAt;
    if (earliest === Infinity) return;
    const at = earliest + spec.idleMs;
    if (this.reapTimer && this.reapAt <= at) return;
    this.reapTimer?.cancel();
    this.reapAt = at;
    this.reapTimer = clock.setTimeout(() => this.reap(), Math.max(0, at - clock.now()));
  }

  /** Stop microVMs idle for `idle`, least recently used first, down to `min`. */
  private reap(): void {
    this.reapTimer = undefined;
    this.reapAt = Infinity;
    const { clock, spec } = this.options;
    const now = clock.now();
    const idle = this.entries
      .filter((e) => e.inflight === 0 && now - e.lastUsedAt >= spec.idleMs)
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    let excess = this.entries.length - spec.min;
    for (const e of idle) {
      if (excess <= 0) break;
      excess--;
      this.retire(e, `idle for ${Math.round(spec.idleMs / 1000)} s`);
    }
    this.armReaper();
  }

  /** Stop taking requests, let what is queued and in flight finish, then stop every microVM. */
  drain(graceMs: number): Promise<void> {
    this.draining = true;
    this.reapTimer?.cancel();
    return new Promise<void>((resolve) => {
      const timer = this.options.clock.setTimeout(() => finish(), graceMs);
      const finish = () => {
        timer.cancel();
        this.idleListeners = [];
        for (const w of this.waiters.splice(0)) {
          w.timer?.cancel();
          w.reject(new FnError('UNAVAILABLE', `${this.label} was stopped before a microVM was free`));
        }
        const entries = [...this.entries.splice(0), ...this.standbys.splice(0)];
        for (const e of entries) e.alive = false;
        void Promise.all(entries.map((e) => e.vm.stop(Math.max(0, graceMs)))).then(() => resolve());
      };
      this.idleListeners.push(finish);
      this.checkDrained();
    });
  }

  private checkDrained(): void {
    if (this.waiters.length > 0 || this.booting > 0) return;
    for (const e of this.entries) if (e.inflight > 0) return;
    const listeners = this.idleListeners;
    this.idleListeners = [];
    for (const l of listeners) l();
  }

  instances(): InstanceInfo[] {
    return [...this.entries, ...this.standbys].map((e) => e.vm.info());
  }

  counts(): { starting: number; idle: number; busy: number; queued: number } {
    let idle = 0;
    let busy = 0;
    for (const e of this.entries) (e.inflight > 0 ? busy++ : idle++);
    return { starting: this.booting, idle, busy, queued: this.waiters.length };
  }
}
