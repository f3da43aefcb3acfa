// The microVMs of one function version. A request takes, in order: a free warm microVM, a standby
// (paused, pre-restored) one, a new one (up to `max`, and when the host's memory budget has room),
// or a place in a bounded queue; past the queue's length or its wait limit it is throttled. The
// pool owns no process itself: microVMs come from an injected factory, so tests can drive it with
// small honest doubles.
//
// Who stops microVMs: the autoscaler alone scales down (scaleTo: idle ones above its desired count,
// least recently used first, down to zero after `idle`), and the memory budget evicts idle ones
// for other functions. The pool itself only recycles a microVM past its maximum age or invocation
// count and replaces one that died (crash, timeout kill, out of memory): those are about one
// microVM's health, not about how many there should be, so they cannot fight the autoscaler.
import type { Logger } from '../core/log.js';
import type { Clock, Timer } from '../core/clock.js';
import { FnError } from '../core/errors.js';
import { MiB, MemoryBudget, type BudgetOwner, type Reservation } from '../core/budget.js';
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
  /** The host's memory budget, shared by every pool; without one, memory is not limited. */
  budget?: MemoryBudget;
  /** Recycle a microVM after this age or this many invocations (0: never). */
  recycle?: { maxAgeMs: number; maxInvocations: number };
}

/** The settings `fnctl scale` changes on a running pool. */
export type ScalingSpec = Pick<PoolSpec, 'min' | 'max' | 'standby'>;

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
  reservation: Reservation;
  inflight: number;
  createdAt: number;
  lastUsedAt: number;
  invocations: number;
  maxRssBytes: number;
  /** The first invocation's REPORT line carries the init duration. */
  reportedInit: boolean;
  /** Made at its first REPORT (see reportLine()). */
  reportPieces?: ReportPieces | null;
  /** Takes new requests: false once it exited, was stopped, or is due for recycling. */
  alive: boolean;
  /** In `entries` or `standbys` (not starting, not stopped). */
  listed: boolean;
}

interface ReportPieces {
  /** From after the time up to the request id's opening quote. */
  head: string;
  /** From after the billed duration up to the memory used. */
  memory: string;
}

interface Waiter {
  resolve(entry: Entry, lease: Omit<Lease, 'instance'>): void;
  reject(err: unknown): void;
  enqueuedAt: number;
  timer: Timer | undefined;
}

let vmSeq = 0;

/** Strings that JSON.stringify writes as they are, between quotes. */
const JSON_SAFE = /^[\w.:@+-]*$/;

/** Memory without limit, for pools given no budget. */
const unlimited = () => new MemoryBudget({ budgetBytes: Number.MAX_SAFE_INTEGER });
/** How long after a standby is handed out its replacement starts (see refillStandby). */
export const STANDBY_REFILL_MS = 100;

export class Pool implements BudgetOwner {
  private readonly entries: Entry[] = [];
  private readonly waiters: Waiter[] = [];
  /** Pre-restored, paused microVMs ready to be handed to a request (x-fn-start: standby). */
  private readonly standbys: Entry[] = [];
  private booting = 0;
  private standbyBooting = 0;
  private refillTimer: Timer | undefined;
  private draining = false;
  /** drain() has stopped every microVM: one that finishes starting now is stopped at once. */
  private drained = false;
  /** Requests whose microVM is starting (no longer in `waiters`); a finished drain rejects them. */
  private readonly bootWaiters = new Set<Waiter>();
  private readonly budget: MemoryBudget;
  /** The last start for a queued request found the memory budget full. */
  private memoryShort = false;
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
    this.budget = options.budget ?? unlimited();
  }

  get spec(): PoolSpec {
    return this.options.spec;
  }

  get functionName(): string {
    return this.options.spec.functionName;
  }

  get version(): number {
    return this.options.spec.version;
  }

  private get memoryBytes(): number {
    return this.options.spec.memoryMib * MiB;
  }

  /** The budget gave memory back while this pool waited: serve the queue first, then min and standby. */
  memoryFreed(): void {
    if (this.draining) return;
    this.pump();
    this.ensureMin();
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

  /** The REPORT line of one invocation; the log sink failing is no reason to fail the invocation. */
  private report(entry: Entry, requestId: string, handlerMs: number, rssBytes: number, lease: Lease): void {
    try {
      this.reportLine(entry, requestId, handlerMs, rssBytes, lease);
    } catch (err) {
      this.options.log.error({ err, fn: this.spec.functionName, requestId }, 'could not record the REPORT line');
    }
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
  observe(): { concurrency: number; durationMs: number; lastActivityAt: number | undefined; ready: number; unused: number } {
    const now = this.options.clock.now();
    this.load(0);
    const durationMs = now - this.observedSince;
    const concurrency = durationMs > 0 ? this.loadArea / durationMs : this.loadNow;
    this.loadArea = 0;
    this.observedSince = now;
    // A request in flight or queued is activity now, however long ago it arrived.
    const lastActivityAt = this.loadNow > 0 ? now : this.activitySeen ? this.lastActivityAt : undefined;
    let unused = 0;
    for (const e of this.entries) if (e.inflight === 0 && now - e.lastUsedAt >= this.spec.idleMs) unused++;
    return { concurrency, durationMs, lastActivityAt, ready: this.entries.length, unused };
  }

  /**
   * The autoscaler's actuator, and the only scale-down: start microVMs up to `desired` (with free
   * memory only: background starts never evict), or stop idle ones above it, least recently used
   * first (busy ones finish their requests and are left for a later tick). Also recycles idle
   * microVMs and standbys past their maximum age, and keeps `standby` paused ones.
   */
  scaleTo(desired: number): void {
    if (this.draining) return;
    this.recycleAged();
    const target = Math.min(this.spec.max, Math.max(this.spec.min, desired));
    while (this.entries.length + this.booting < target && this.total() < this.spec.max) {
      const reservation = this.budget.reserve(this, this.memoryBytes, { forRequest: false });
      if (!reservation) break;
      this.bootFor(undefined, reservation);
    }
    this.trimStandby();
    this.ensureStandby();
    let excess = this.entries.length + this.booting - target;
    if (excess <= 0) return;
    const idle = this.entries.filter((e) => e.alive && e.inflight === 0).sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    for (const e of idle) {
      if (excess-- <= 0) break;
      this.retire(e, 'scaled down');
    }
  }

  /**
   * `fnctl scale`: new min, max and standby, applied at once. min microVMs are started, standbys
   * topped up or stopped, idle microVMs above max stopped (busy ones finish first and go at a later
   * tick), and a higher max lets queued requests start microVMs. Nothing in flight is dropped.
   */
  updateScaling(scaling: ScalingSpec): void {
    const { spec } = this.options;
    spec.min = scaling.min;
    spec.max = scaling.max;
    spec.standby = scaling.standby;
    if (this.draining) return;
    this.pump();
    this.scaleTo(this.entries.length + this.booting);
  }

  /** Stop a microVM gracefully (in-flight requests finish); it takes no new request. */
  private retire(e: Entry, why: string): void {
    e.alive = false;
    if (!e.listed) return;
    this.unlist(e);
    this.options.log.debug({ fn: this.spec.functionName, version: this.spec.version, instance: e.vm.id }, `stopping microVM: ${why}`);
    void e.vm.stop();
  }

  private unlist(e: Entry): void {
    e.listed = false;
    const i = this.entries.indexOf(e);
    if (i >= 0) this.entries.splice(i, 1);
    const j = this.standbys.indexOf(e);
    if (j >= 0) this.standbys.splice(j, 1);
  }

  private recycleDue(e: Entry, now: number): boolean {
    const r = this.options.recycle;
    if (!r) return false;
    return (r.maxInvocations > 0 && e.invocations >= r.maxInvocations) || (r.maxAgeMs > 0 && now - e.createdAt >= r.maxAgeMs);
  }

  private recycleReason(e: Entry): string {
    const r = this.options.recycle!;
    return r.maxInvocations > 0 && e.invocations >= r.maxInvocations
      ? `recycled after ${e.invocations} invocations`
      : `recycled at ${Math.round((this.options.clock.now() - e.createdAt) / 1000)} s of age`;
  }

  /** Idle microVMs and standbys past their maximum age are stopped; min and standby are kept. */
  private recycleAged(): void {
    if (!this.options.recycle) return;
    const now = this.options.clock.now();
    for (const e of [...this.entries, ...this.standbys]) {
      if (e.inflight === 0 && this.recycleDue(e, now)) this.retire(e, this.recycleReason(e));
    }
  }

  /** Stop standbys beyond `standby`, or beyond `max` with the active ones, oldest first. */
  private trimStandby(): void {
    while (this.standbys.length > 0 && (this.standbys.length > this.spec.standby || this.total() > this.spec.max)) {
      this.retire(this.standbys[0]!, 'standby no longer wanted');
    }
  }

  private acquire(): Promise<{ entry: Entry; lease: Lease }> {
    if (this.draining) {
      return Promise.reject(new FnError('UNAVAILABLE', `${this.label} is being replaced; retry`));
    }
    if (!this.budget.fits(this.memoryBytes)) {
      return Promise.reject(new FnError('UNAVAILABLE', `${this.label} needs ${this.spec.memoryMib} MiB per microVM, more than the host's memory budget of ${this.budgetMib} MiB`));
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
        if (this.waiters.length === 0) this.budget.withdraw(this);
        const why = `no microVM was free within ${queueWaitMs} ms`;
        reject(this.memoryShort && this.canBoot() ? this.throttledByMemory(why) : this.throttled(why));
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

  private throttledByMemory(why: string): FnError {
    return new FnError(
      'THROTTLED',
      `${this.label}: ${why}, and the host's memory budget of ${this.budgetMib} MiB has no room for another ${this.spec.memoryMib} MiB microVM (nothing idle to evict)`,
      { details: { retryAfterSeconds: 1 } },
    );
  }

  private get label(): string {
    return `function ${this.spec.functionName} version ${this.spec.version}`;
  }

  private get budgetMib(): number {
    return Math.floor(this.budget.budgetBytes / MiB);
  }

  private canBoot(): boolean {
    return !this.draining && this.total() < this.spec.max;
  }

  private total(): number {
    return this.entries.length + this.booting + this.standbys.length + this.standbyBooting;
  }

  /** The most recently used microVM with room, so that the others go idle and can be scaled down. */
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
      // A start for a queued request may evict idle microVMs of other functions to make room.
      const want = Math.min(Math.ceil(this.waiters.length / this.spec.concurrency), this.spec.max - this.total());
      const reservation = this.budget.reserve(this, this.memoryBytes, { forRequest: true, want });
      this.memoryShort = !reservation;
      if (!reservation) break;
      const waiter = this.waiters.shift()!;
      waiter.timer?.cancel();
      this.bootFor(waiter, reservation);
    }
    if (this.waiters.length === 0) this.budget.withdraw(this);
    if (this.draining) this.checkDrained();
  }

  private bootFor(waiter: Waiter | undefined, reservation: Reservation): void {
    this.booting++;
    if (waiter) this.bootWaiters.add(waiter);
    const started = this.options.clock.monotonic();
    this.boot(reservation, waiter !== undefined).then(
      (entry) => {
        this.booting--;
        if (waiter) this.bootWaiters.delete(waiter);
        if (!entry) {
          // Started after the drain had finished: its request, if any, was already refused.
          this.pump();
          return;
        }
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
      },
      (err: unknown) => {
        this.booting--;
        if (waiter) this.bootWaiters.delete(waiter);
        if (waiter) waiter.reject(err);
        else this.options.log.warn({ fn: this.spec.functionName, version: this.spec.version, err }, 'microVM failed to start');
        this.pump();
      },
    );
  }

  /**
   * Start a microVM on memory already reserved for it; a claimed one is already counted busy for
   * the request that started it. Its reservation is released when it exits, or here if it never
   * started. Undefined when the pool's drain finished while it started: it is stopped at once, as
   * nothing else would ever use it or stop it.
   */
  private async boot(reservation: Reservation, claimed: boolean, standby = false): Promise<Entry | undefined> {
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
    let vm: PoolVm;
    try {
      vm = await this.options.factory(config);
    } catch (err) {
      this.budget.release(reservation);
      throw err;
    }
    if (this.drained) {
      this.options.log.debug({ fn: spec.functionName, version: spec.version, instance: vm.id }, 'stopping microVM: it started after its pool was drained');
      this.budget.release(reservation);
      void vm.stop().catch(() => {});
      return undefined;
    }
    const now = clock.now();
    const entry: Entry = {
      vm,
      reservation,
      // Claimed before it becomes visible to findFree(), so no queued request can take it first.
      inflight: claimed ? 1 : 0,
      createdAt: now,
      lastUsedAt: now,
      invocations: 0,
      maxRssBytes: 0,
      reportedInit: false,
      alive: true,
      listed: !standby,
    };
    vm.onExit(() => this.forget(entry));
    this.budget.attach(reservation, {
      instance: vm.id,
      evictable: () => entry.alive && entry.listed && entry.inflight === 0,
      evict: (why) => this.retire(entry, why),
    });
    if (!standby) this.entries.push(entry);
    return entry;
  }

  /** The microVM exited, for whatever reason: its memory goes back, and a dead one is replaced. */
  private forget(entry: Entry): void {
    entry.alive = false;
    this.unlist(entry);
    this.budget.release(entry.reservation);
    this.ensureMin();
    this.pump();
  }

  private release(entry: Entry): void {
    entry.inflight--;
    entry.invocations++;
    const now = (entry.lastUsedAt = this.options.clock.now());
    // Due for recycling: no new request; stopped once the ones in flight are done.
    if (entry.alive && this.recycleDue(entry, now)) entry.alive = false;
    if (this.waiters.length > 0) this.pump();
    // After the queue had its turn: if it is idle still, another function's request may evict it.
    this.budget.touch(entry.reservation);
    if (entry.inflight === 0) {
      if (this.draining) this.checkDrained();
      else if (!entry.alive && entry.listed) {
        this.retire(entry, this.recycleReason(entry));
        this.ensureMin();
        this.pump();
      }
    }
  }

  /**
   * One REPORT record per invocation, in the form of Lambda's. This runs on every invocation, so
   * the record is handed to the sink as its JSON line, built by a template from pieces that are
   * fixed per microVM (exactly what JSON.stringify gives, tested), and the record object is made
   * only if someone follows the logs. Only when every string in it needs no JSON escaping, which
   * the gateway's ids and names never do; otherwise the record goes the ordinary way.
   */
  private reportLine(entry: Entry, requestId: string, handlerMs: number, rssBytes: number, lease: Lease): void {
    if (rssBytes > entry.maxRssBytes) entry.maxRssBytes = rssBytes;
    const duration = handlerMs.toFixed(2);
    const billed = Math.max(1, Math.ceil(handlerMs));
    const used = Math.ceil(entry.maxRssBytes / MiB);
    let init = '';
    const startMs = lease.bootMs ?? lease.initMs;
    if (!entry.reportedInit && startMs !== undefined) {
      entry.reportedInit = true;
      init = `${lease.start === 'restore' ? 'Restore' : 'Init'} Duration: ${startMs.toFixed(2)} ms`;
    }
    const time = this.options.clock.now();
    const { sink } = this.options;
    const record = (): ConsoleRecord => ({
      time,
      functionName: this.spec.functionName,
      version: this.spec.version,
      instance: entry.vm.id,
      stream: 'stdout',
      requestId,
      level: 'REPORT',
      message:
        `REPORT RequestId: ${requestId}\tDuration: ${duration} ms\tBilled Duration: ${billed} ms` +
        `\tMemory Size: ${this.spec.memoryMib} MB\tMax Memory Used: ${used} MB${init ? '\t' + init : ''}`,
    });
    if (entry.reportPieces === undefined) entry.reportPieces = this.reportPieces(entry);
    const pieces = entry.reportPieces;
    if (pieces && sink.recordLine && JSON_SAFE.test(requestId) && Number.isFinite(time)) {
      const line =
        '{"time":' + time + pieces.head + requestId + '","level":"REPORT","message":"REPORT RequestId: ' + requestId +
        '\\tDuration: ' + duration + ' ms\\tBilled Duration: ' + billed + pieces.memory + used + ' MB' + (init ? '\\t' + init : '') + '"}';
      sink.recordLine(this.spec.functionName, line, record);
    } else {
      sink.record(record());
    }
  }

  /** The parts of a microVM's REPORT line that never change, or null when they would need escaping. */
  private reportPieces(entry: Entry): ReportPieces | null {
    const { functionName, version, memoryMib } = this.spec;
    const instance = entry.vm.id;
    if (!JSON_SAFE.test(functionName) || !JSON_SAFE.test(instance) || !Number.isInteger(version) || !Number.isInteger(memoryMib)) return null;
    return {
      head: `,"functionName":"${functionName}","version":${version},"instance":"${instance}","stream":"stdout","requestId":"`,
      memory: ` ms\\tMemory Size: ${memoryMib} MB\\tMax Memory Used: `,
    };
  }

  /** Keep `min` microVMs running and `standby` paused ones ready, with free memory only. */
  ensureMin(): void {
    while (!this.draining && this.entries.length + this.booting < this.spec.min) {
      const reservation = this.budget.reserve(this, this.memoryBytes, { forRequest: false });
      if (!reservation) return;
      this.bootFor(undefined, reservation);
    }
    this.ensureStandby();
  }

  /** Restore microVMs and pause them until `standby` are ready (within `max`). */
  private ensureStandby(): void {
    while (!this.draining && this.standbys.length + this.standbyBooting < this.spec.standby && this.total() < this.spec.max) {
      const reservation = this.budget.reserve(this, this.memoryBytes, { forRequest: false });
      if (!reservation) return;
      this.standbyBooting++;
      void this.startStandby(reservation).finally(() => {
        this.standbyBooting--;
        // A drain waits for standbys being restored, which stop when they land.
        if (this.draining) this.checkDrained();
      });
    }
  }

  private async startStandby(reservation: Reservation): Promise<void> {
    let entry: Entry | undefined;
    try {
      entry = await this.boot(reservation, false, true);
      if (!entry) return;
      if (this.draining) {
        await entry.vm.stop();
        return;
      }
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
      entry.listed = true;
      this.standbys.push(entry);
      this.pump();
    } catch (err) {
      this.options.log.warn({ fn: this.spec.functionName, err }, 'standby microVM failed to start');
      // Booted but could not be paused: stop it, so its memory comes back.
      if (entry) void entry.vm.stop();
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
        this.refillStandby();
      },
      (err: unknown) => {
        entry.inflight = 0;
        waiter.reject(err);
        this.retire(entry, 'could not be resumed');
        this.ensureStandby();
      },
    );
  }

  /**
   * Restore a standby in place of the one just handed out, STANDBY_REFILL_MS later: a restore
   * started at once takes a core from the request that standby serves (on two cores it cost
   * that request ~7 ms at p50).
   */
  private refillStandby(): void {
    if (this.refillTimer) return;
    this.refillTimer = this.options.clock.setTimeout(() => {
      this.refillTimer = undefined;
      this.ensureStandby();
    }, STANDBY_REFILL_MS);
  }

  /**
   * Stop taking requests, let what is queued, starting and in flight finish, then stop every
   * microVM. After `graceMs`, requests still queued or waiting for a start are refused, and a
   * microVM still starting is stopped as soon as it is up.
   */
  drain(graceMs: number): Promise<void> {
    this.draining = true;
    this.refillTimer?.cancel();
    this.refillTimer = undefined;
    return new Promise<void>((resolve) => {
      const timer = this.options.clock.setTimeout(() => finish(), graceMs);
      const finish = () => {
        timer.cancel();
        this.drained = true;
        this.idleListeners = [];
        for (const w of [...this.waiters.splice(0), ...this.bootWaiters]) {
          w.timer?.cancel();
          w.reject(new FnError('UNAVAILABLE', `${this.label} was stopped before a microVM was free`));
        }
        this.bootWaiters.clear();
        this.budget.forget(this);
        const entries = [...this.entries.splice(0), ...this.standbys.splice(0)];
        for (const e of entries) {
          e.alive = false;
          e.listed = false;
        }
        void Promise.all(entries.map((e) => e.vm.stop(Math.max(0, graceMs)))).then(() => resolve());
      };
      this.idleListeners.push(finish);
      this.checkDrained();
    });
  }

  private checkDrained(): void {
    if (this.waiters.length > 0 || this.booting > 0 || this.standbyBooting > 0) return;
    for (const e of this.entries) if (e.inflight > 0) return;
    const listeners = this.idleListeners;
    this.idleListeners = [];
    for (const l of listeners) l();
  }

  instances(): InstanceInfo[] {
    return [...this.entries, ...this.standbys].map((e) => e.vm.info());
  }

  /** microVMs by state (standbys being restored count as starting, paused ones as paused). */
  counts(): { starting: number; idle: number; busy: number; paused: number; queued: number } {
    let idle = 0;
    let busy = 0;
    for (const e of this.entries) (e.inflight > 0 ? busy++ : idle++);
    return { starting: this.booting + this.standbyBooting, idle, busy, paused: this.standbys.length, queued: this.waiters.length };
  }
}
