// The host's memory budget: the memory limits of every running microVM (starting, idle, busy or
// paused on standby) add up to at most `budgetBytes`, the machine's memory (or the process's
// memory limit in a container, when lower) × the overcommit ratio, or a set figure. A microVM
// reserves its limit before it is started and gives it back when it exits, whatever the reason
// (stop, eviction, crash, timeout kill).
//
// When a start for a waiting request finds the budget full, idle microVMs of other pools (other
// functions, or other versions of the same function) are evicted least recently used first,
// stopped gracefully, and the request waits in its pool's queue until their memory is given back;
// when nothing can be evicted it waits like any other and is throttled after its wait limit.
// Background starts (min, standby, the autoscaler) take only free memory and never evict: two
// functions' `min` evicting each other would start and stop microVMs forever.
//
// Recency comes from an lru-cache of the reservations: a microVM is "used" when it is reserved and
// each time a request on it finishes. The cache's own size limit is the budget, as a backstop;
// the budget never lets it come to that.
import { LRUCache } from 'lru-cache';
import type { Logger } from './log.js';

export const MiB = 1024 * 1024;

/** Whose reservation it is: a pool. Eviction spares reservations of the claimant's own pool. */
export interface BudgetOwner {
  readonly functionName: string;
  readonly version: number;
  /** Memory was given back while this owner waited for some: try again (called in a microtask). */
  memoryFreed(): void;
}

/** The microVM behind a reservation, once it has started. */
export interface BudgetHolder {
  readonly instance: string;
  /** No request in flight and not starting or resuming: it may be stopped now. */
  evictable(): boolean;
  /** Stop it gracefully; its reservation is released when it exits. */
  evict(reason: string): void;
}

export interface Reservation {
  readonly id: number;
  readonly owner: BudgetOwner;
  readonly bytes: number;
  holder: BudgetHolder | undefined;
  evicting: boolean;
  released: boolean;
}

export interface Eviction {
  victim: { functionName: string; version: number; instance: string };
  claimant: { functionName: string; version: number };
  bytes: number;
}

export interface MemoryBudgetOptions {
  budgetBytes: number;
  log?: Logger;
  /** Called for each eviction (metrics). */
  onEvict?: (e: Eviction) => void;
}

let reservationSeq = 0;

export class MemoryBudget {
  readonly budgetBytes: number;
  private readonly lru: LRUCache<number, Reservation>;
  /** Bytes of reservations whose microVM is being evicted and has not exited yet. */
  private releasing = 0;
  /** Owners with queued requests that wait for memory, and the bytes they want; insertion order is FIFO. */
  private readonly claims = new Map<BudgetOwner, number>();
  /** Owners whose background starts (min, standby) wait for memory. */
  private readonly background = new Set<BudgetOwner>();
  private notifyScheduled = false;
  /** The most ever reserved at once: never above budgetBytes. */
  peakBytes = 0;
  evictions = 0;

  constructor(private readonly options: MemoryBudgetOptions) {
    if (!Number.isSafeInteger(options.budgetBytes) || options.budgetBytes <= 0) {
      throw new RangeError(`memory budget = ${options.budgetBytes}, must be a positive number of bytes`);
    }
    this.budgetBytes = options.budgetBytes;
    this.lru = new LRUCache<number, Reservation>({
      maxSize: this.budgetBytes,
      sizeCalculation: (r) => r.bytes,
      dispose: (r, _id, reason) => {
        if (reason === 'evict') options.log?.error({ fn: r.owner.functionName }, 'memory budget: a reservation fell out of the LRU (a bug)');
      },
    });
  }

  get reservedBytes(): number {
    return this.lru.calculatedSize;
  }

  get freeBytes(): number {
    return this.budgetBytes - this.reservedBytes;
  }

  /** How many reservations are held. */
  get size(): number {
    return this.lru.size;
  }

  /**
   * Reserve `bytes` for a microVM of `owner`, or return undefined when they do not fit now.
   * `forRequest`: a queued request waits for this start. Then idle microVMs of other pools are
   * evicted, least recently used first, until enough memory for `want` such microVMs is free or on
   * its way back, and the owner hears (memoryFreed) when some comes back. Otherwise only free
   * memory that no waiting request has claimed is taken.
   */
  reserve(owner: BudgetOwner, bytes: number, how: { forRequest: boolean; want?: number }): Reservation | undefined {
    if (bytes > this.budgetBytes) return undefined;
    if (this.freeBytes - this.claimedAhead(owner) >= bytes) return this.grant(owner, bytes);
    if (!how.forRequest) {
      this.background.add(owner);
      return undefined;
    }
    // A new claim joins the end of the line; an existing one keeps its place.
    this.claims.set(owner, Math.min(this.budgetBytes, bytes * Math.max(1, how.want ?? 1)));
    this.evictFor((o) => o.functionName === owner.functionName && o.version === owner.version, owner);
    return undefined;
  }

  /** Whether a reservation of `bytes` could ever fit. */
  fits(bytes: number): boolean {
    return bytes <= this.budgetBytes;
  }

  /** The owner has no request waiting for memory any more. */
  withdraw(owner: BudgetOwner): void {
    if (this.claims.delete(owner)) this.scheduleNotify();
  }

  /** Forget an owner entirely (its pool is gone). */
  forget(owner: BudgetOwner): void {
    this.claims.delete(owner);
    this.background.delete(owner);
  }

  /** The microVM now exists: it can be evicted when idle. */
  attach(r: Reservation, holder: BudgetHolder): void {
    if (!r.released) r.holder = holder;
  }

  /**
   * The microVM was just used: it becomes the most recently used. When requests wait for memory,
   * a microVM that has just gone idle may be what they can evict.
   */
  touch(r: Reservation): void {
    this.lru.get(r.id);
    if (this.claims.size > 0) this.evictFor((o) => this.claims.has(o), this.claims.keys().next().value!);
  }

  /** Give the memory back (idempotent): the microVM has exited, or never started. */
  release(r: Reservation): void {
    if (r.released) return;
    r.released = true;
    r.holder = undefined;
    if (r.evicting) this.releasing -= r.bytes;
    this.lru.delete(r.id);
    this.scheduleNotify();
  }

  private grant(owner: BudgetOwner, bytes: number): Reservation {
    const r: Reservation = { id: ++reservationSeq, owner, bytes, holder: undefined, evicting: false, released: false };
    this.lru.set(r.id, r);
    if (this.reservedBytes > this.peakBytes) this.peakBytes = this.reservedBytes;
    const claim = this.claims.get(owner);
    if (claim !== undefined) {
      if (claim > bytes) this.claims.set(owner, claim - bytes);
      else this.claims.delete(owner);
    }
    this.background.delete(owner);
    return r;
  }

  /**
   * Memory claimed by requests ahead of `owner` in the line (all claims for an owner without one):
   * first come, first served, and no two claimants can block each other.
   */
  private claimedAhead(owner: BudgetOwner): number {
    let sum = 0;
    for (const [o, bytes] of this.claims) {
      if (o === owner) return sum;
      sum += bytes;
    }
    return sum;
  }

  /**
   * Evict idle microVMs, LRU first, until every claim is covered, sparing the pools `spared` says
   * (the claimant's own: an idle microVM there would serve its queue instead).
   */
  private evictFor(spared: (owner: BudgetOwner) => boolean, claimant: BudgetOwner): void {
    let total = 0;
    for (const bytes of this.claims.values()) total += bytes;
    let deficit = total - this.freeBytes - this.releasing;
    if (deficit <= 0) return;
    const victims: Reservation[] = [];
    for (const r of this.lru.rvalues()) {
      if (deficit <= 0) break;
      if (!r || r.evicting || r.released || !r.holder) continue;
      if (spared(r.owner) || !r.holder.evictable()) continue;
      victims.push(r);
      deficit -= r.bytes;
    }
    // Marked first, stopped after: a stop may report the exit at once.
    for (const r of victims) {
      r.evicting = true;
      this.releasing += r.bytes;
    }
    for (const r of victims) this.evict(r, claimant);
  }

  private evict(r: Reservation, claimant: BudgetOwner): void {
    const holder = r.holder!;
    const e: Eviction = {
      victim: { functionName: r.owner.functionName, version: r.owner.version, instance: holder.instance },
      claimant: { functionName: claimant.functionName, version: claimant.version },
      bytes: r.bytes,
    };
    this.evictions++;
    this.options.log?.info(
      { fn: e.victim.functionName, version: e.victim.version, instance: e.victim.instance, for: e.claimant.functionName, forVersion: e.claimant.version, mib: r.bytes / MiB },
      `memory budget full: evicting idle microVM ${e.victim.instance} of ${e.victim.functionName} for ${e.claimant.functionName}`,
    );
    this.options.onEvict?.(e);
    holder.evict(`evicted for ${claimant.functionName} (memory budget full)`);
  }

  /** Tell waiting owners, request claims first, once per burst of releases, off the caller's stack. */
  private scheduleNotify(): void {
    if (this.notifyScheduled || (this.claims.size === 0 && this.background.size === 0)) return;
    this.notifyScheduled = true;
    queueMicrotask(() => {
      this.notifyScheduled = false;
      const owners = [...this.claims.keys(), ...[...this.background].filter((o) => !this.claims.has(o))];
      this.background.clear();
      for (const o of owners) o.memoryFreed();
    });
  }
}
