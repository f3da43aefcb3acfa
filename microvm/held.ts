// Guests spawned ahead of their request (MicroVm.hold), one kept per key (a function version and
// how it starts). Setting up a jail costs ~9 ms per microVM here: bubblewrap's namespaces and
// mounts, joining three cgroups, dropping to the guest's uid. A held guest has all of that done,
// and node itself started and waiting at its first read, before it loads anything of the
// function (see MicroVm.hold). A start from zero pays the rest of node's start: loading the
// snapshot (or the bundle and its init) and the function's own start (Lambda's MicroManager keeps
// a small pool of pre-booted microVMs for the same reason).
//
// The next one is made a little after the start that took the last is done, preferably while no
// other start is under way, and its setup runs at the least CPU weight, so that it slows neither a
// start nor a request much. A held guest is not a microVM of its function: it runs no code of the
// function, is not listed or counted, and goes when its version goes.
import type { Logger } from '../core/log.js';

/** What HeldGuests needs of a held microVM (MicroVm satisfies it). */
export interface HoldableVm {
  /** Still held and alive, so it can be released. */
  readonly held: boolean;
  kill(reason: string): Promise<void>;
  onExit(listener: () => void): void;
}

export interface HeldGuestsOptions {
  /** Held guests kept at most, over all keys (default 16). */
  maxHeld?: number;
  /**
   * How long after keep() the guest is made (default 50 ms). Making one spawns from the
   * platform's event loop and moves a process into cgroups (an RCU grace period, see jailer.ts).
   * Made 5 ms after a standby came up, it cost the first request on that standby ~8 ms at p50
   * (npm run bench -- standby); made 50 ms later, nothing beyond noise.
   */
  delayMs?: number;
  /**
   * Whether now is a good time to make one: while it says no (say, a microVM is starting), the
   * make waits another delay, up to MAX_DEFERRALS times, so that it does not slow that start down.
   */
  quiet?: () => boolean;
  log?: Logger;
}

/**
 * At most 4 × 50 ms of waiting for a quiet moment. With 40 (2 s), while starts of four functions
 * ran back to back (npm run bench -- cold), 14–18 of 20 starts found a held guest; with 4, 19 of
 * 20 (15 for heavy-init's 350 ms boots), and hello's restore p50 was steadier (27.6–29.1 ms
 * against 26.9–34.9); heavy-init's boots, now overlapped by the making, were ~5 % slower.
 */
const MAX_DEFERRALS = 4;

export class HeldGuests<V extends HoldableVm = HoldableVm> {
  private readonly held = new Map<string, V>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly delayMs: number;
  private readonly maxHeld: number;
  private closed = false;

  constructor(private readonly options: HeldGuestsOptions = {}) {
    this.delayMs = options.delayMs ?? 50;
    this.maxHeld = options.maxHeld ?? 16;
  }

  /** The held guest for `key`, if one is alive (it is then no longer kept here). */
  take(key: string): V | undefined {
    const vm = this.held.get(key);
    if (!vm) return undefined;
    this.held.delete(key);
    if (vm.held) return vm;
    void vm.kill('no longer held');
    return undefined;
  }

  /**
   * Keep one guest held for `key`, made by `make` after `delayMs` unless one is held or coming
   * (`make` may decline by returning undefined). At most `maxHeld` are kept: the one whose key was
   * kept least recently goes first.
   */
  keep(key: string, make: () => V | undefined): void {
    this.schedule(key, make, 0);
  }

  private schedule(key: string, make: () => V | undefined, deferrals: number): void {
    if (this.closed || this.held.has(key) || this.timers.has(key)) return;
    const timer = setTimeout(() => {
      this.timers.delete(key);
      if (this.closed || this.held.has(key)) return;
      if (deferrals < MAX_DEFERRALS && this.options.quiet && !this.options.quiet()) {
        this.schedule(key, make, deferrals + 1);
        return;
      }
      let vm: V | undefined;
      try {
        vm = make();
      } catch (err) {
        this.options.log?.warn({ key, err }, 'could not hold a guest ahead of its request');
        return;
      }
      if (!vm) return;
      this.held.set(key, vm);
      // Over the cap: the least recently kept goes (a Map iterates in insertion order).
      for (const [k, old] of this.held) {
        if (this.held.size <= this.maxHeld) break;
        this.held.delete(k);
        void old.kill('too many held guests');
      }
      // Gone while held (killed, or its jail failed): forget it; the next start makes another.
      vm.onExit(() => {
        if (this.held.get(key) === vm) this.held.delete(key);
      });
    }, this.delayMs);
    timer.unref();
    this.timers.set(key, timer);
  }

  /** How many guests are held now (for tests and diagnostics). */
  get size(): number {
    return this.held.size;
  }

  /** Stop holding for every key that `match` accepts, and kill what was held for them. */
  async drop(match: (key: string) => boolean): Promise<void> {
    for (const [key, timer] of this.timers) {
      if (!match(key)) continue;
      clearTimeout(timer);
      this.timers.delete(key);
    }
    const gone: Promise<void>[] = [];
    for (const [key, vm] of this.held) {
      if (!match(key)) continue;
      this.held.delete(key);
      gone.push(vm.kill('its version is gone'));
    }
    await Promise.all(gone);
  }

  /** Hold nothing more, and kill every held guest. */
  async close(): Promise<void> {
    this.closed = true;
    await this.drop(() => true);
  }
}
