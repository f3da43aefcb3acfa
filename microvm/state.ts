// The lifecycle of one microVM as an explicit table of allowed transitions, so that a pool or the
// gateway can never, say, route a request to a microVM that is stopping.
import { FnError } from '../core/errors.js';
import type { MicroVmState } from './types.js';

/** Every allowed move; anything not listed throws. stopped and failed are final. */
export const TRANSITIONS: Readonly<Record<MicroVmState, readonly MicroVmState[]>> = {
  created: ['booting', 'restoring', 'stopping'],
  booting: ['idle', 'stopping', 'failed'],
  restoring: ['idle', 'stopping', 'failed'],
  idle: ['busy', 'paused', 'stopping', 'failed'],
  busy: ['idle', 'stopping', 'failed'],
  paused: ['idle', 'stopping', 'failed'],
  stopping: ['stopped', 'failed'],
  stopped: [],
  failed: [],
};

export function isFinal(state: MicroVmState): boolean {
  return state === 'stopped' || state === 'failed';
}

export type StateListener = (next: MicroVmState, prev: MicroVmState) => void;

export class Lifecycle {
  private current: MicroVmState = 'created';
  private listeners: StateListener[] = [];

  constructor(readonly id: string) {}

  get state(): MicroVmState {
    return this.current;
  }

  can(next: MicroVmState): boolean {
    return TRANSITIONS[this.current].includes(next);
  }

  /** Move to `next`, or throw NOT_ALLOWED_IN_STATE when the table does not allow it. */
  to(next: MicroVmState): void {
    const prev = this.current;
    if (!TRANSITIONS[prev].includes(next)) {
      throw new FnError('NOT_ALLOWED_IN_STATE', `microVM ${this.id}: cannot go from ${prev} to ${next}`, {
        details: { from: prev, to: next },
      });
    }
    this.current = next;
    for (const listener of this.listeners) listener(next, prev);
  }

  /** Listen to every transition; returns the function that stops listening. */
  onChange(listener: StateListener): () => void {
    this.listeners.push(listener);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }
}
