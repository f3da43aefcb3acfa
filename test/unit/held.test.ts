// HeldGuests (microvm/held.ts) with fake microVMs and fake timers: one guest held per key, made a
// little after one is taken, dropped with its version, none made after close.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HeldGuests, type HoldableVm } from '../../microvm/held.js';

class FakeVm implements HoldableVm {
  held = true;
  killed: string | undefined;
  private exitListeners: (() => void)[] = [];
  constructor(readonly name: string) {}
  kill(reason: string): Promise<void> {
    this.killed = reason;
    this.die();
    return Promise.resolve();
  }
  die(): void {
    this.held = false;
    for (const l of this.exitListeners.splice(0)) l();
  }
  onExit(listener: () => void): void {
    this.exitListeners.push(listener);
  }
}

describe('HeldGuests', () => {
  let made: FakeVm[];
  const make = (key: string) => () => {
    const vm = new FakeVm(`${key}#${made.length}`);
    made.push(vm);
    return vm;
  };
  beforeEach(() => {
    vi.useFakeTimers();
    made = [];
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('holds one guest per key, made after the delay, and hands it out once', () => {
    const held = new HeldGuests<FakeVm>({ delayMs: 100 });
    held.keep('hello@1', make('hello@1'));
    held.keep('hello@1', make('hello@1'));
    expect(held.take('hello@1')).toBeUndefined();
    vi.advanceTimersByTime(99);
    expect(made).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(made).toHaveLength(1);
    expect(held.size).toBe(1);
    const vm = held.take('hello@1');
    expect(vm).toBe(made[0]);
    expect(held.take('hello@1')).toBeUndefined();
    // Taking does not make the next one by itself: keep() after a take does, after the delay.
    held.keep('hello@1', make('hello@1'));
    vi.advanceTimersByTime(100);
    expect(made).toHaveLength(2);
    expect(held.take('other@1')).toBeUndefined();
  });

  it('forgets a guest that died while held, and never hands out a dead one', () => {
    const held = new HeldGuests<FakeVm>({ delayMs: 10 });
    held.keep('a@1', make('a@1'));
    vi.advanceTimersByTime(10);
    made[0]!.die();
    expect(held.size).toBe(0);
    expect(held.take('a@1')).toBeUndefined();
    held.keep('a@1', make('a@1'));
    vi.advanceTimersByTime(10);
    made[1]!.held = false; // released elsewhere or gone without an exit yet
    expect(held.take('a@1')).toBeUndefined();
    expect(made[1]!.killed).toBe('no longer held');
  });

  it('drops the keys of a version with their guests and pending makes; close holds nothing more', async () => {
    const held = new HeldGuests<FakeVm>({ delayMs: 10 });
    held.keep('a@1', make('a@1'));
    held.keep('b@1', make('b@1'));
    vi.advanceTimersByTime(10);
    held.keep('a@2', make('a@2'));
    await held.drop((key) => key.startsWith('a@'));
    vi.advanceTimersByTime(10);
    expect(made.map((vm) => [vm.name, vm.killed])).toEqual([
      ['a@1#0', 'its version is gone'],
      ['b@1#1', undefined],
    ]);
    await held.close();
    expect(made[1]!.killed).toBe('its version is gone');
    held.keep('c@1', make('c@1'));
    vi.advanceTimersByTime(1000);
    expect(made).toHaveLength(2);
    expect(held.size).toBe(0);
  });

  it('waits while it is not quiet, a delay at a time, four at most', () => {
    let quiet = false;
    const held = new HeldGuests<FakeVm>({ delayMs: 100, quiet: () => quiet });
    held.keep('a@1', make('a@1'));
    vi.advanceTimersByTime(300);
    expect(made).toHaveLength(0);
    quiet = true;
    vi.advanceTimersByTime(100);
    expect(made).toHaveLength(1);
    // Never quiet: made anyway after four more delays.
    quiet = false;
    held.take('a@1');
    held.keep('a@1', make('a@1'));
    vi.advanceTimersByTime(400);
    expect(made).toHaveLength(1);
    vi.advanceTimersByTime(100);
    expect(made).toHaveLength(2);
  });

  it('keeps at most maxHeld, the least recently made going first; a make may decline', () => {
    const held = new HeldGuests<FakeVm>({ delayMs: 0, maxHeld: 2 });
    for (const key of ['a@1', 'b@1', 'c@1']) {
      held.keep(key, make(key));
      vi.advanceTimersByTime(0);
    }
    expect(held.size).toBe(2);
    expect(made.map((vm) => vm.killed)).toEqual(['too many held guests', undefined, undefined]);
    expect(held.take('a@1')).toBeUndefined();
    expect(held.take('b@1')).toBe(made[1]);
    held.keep('d@1', () => undefined);
    vi.advanceTimersByTime(0);
    expect(held.size).toBe(1);
  });

  it('logs and holds nothing when making one throws', () => {
    const warn = vi.fn();
    const held = new HeldGuests<FakeVm>({ delayMs: 0, log: { warn } as never });
    held.keep('x@1', () => {
      throw new Error('no jail');
    });
    vi.advanceTimersByTime(0);
    expect(held.size).toBe(0);
    expect(warn).toHaveBeenCalledOnce();
  });
});
