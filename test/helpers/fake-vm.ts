// A small honest microVM double for pool and autoscaler tests: invocations stay pending until
// the test finishes them, and stop/crash fire the exit listeners as a real microVM does.
import { FnError } from '../../core/errors.js';
import type { PoolVm } from '../../microvm/pool.js';
import type { InstanceInfo, InvokeRequest, InvokeResult } from '../../microvm/types.js';

export class FakeVm implements PoolVm {
  readonly bootInfo = { pid: 1, style: 'fetch' as const, initMs: 5, bootMs: 7, restored: false, fields: true };
  readonly pending: { req: InvokeRequest; resolve: (r: InvokeResult) => void; reject: (e: unknown) => void }[] = [];
  stopped = false;
  paused = false;
  start?: 'cold' | 'restore' | 'standby' | 'warm';

  async pause(): Promise<void> {
    this.paused = true;
  }

  async resume(): Promise<void> {
    this.paused = false;
  }
  private exitListeners: (() => void)[] = [];

  constructor(readonly id: string) {}

  invoke(req: InvokeRequest): Promise<InvokeResult> {
    return new Promise((resolve, reject) => this.pending.push({ req, resolve, reject }));
  }

  finish(index = 0): void {
    const [p] = this.pending.splice(index, 1);
    p!.resolve({ status: 200, headers: [], body: Buffer.from(this.id), handlerMs: 1, rssBytes: 40 * 1024 * 1024 });
  }

  crash(): void {
    for (const p of this.pending.splice(0)) p.reject(new FnError('FUNCTION_CRASHED', 'gone'));
    for (const l of this.exitListeners) l();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const l of this.exitListeners) l();
  }

  kill(): void {
    void this.stop();
  }

  onExit(listener: () => void): void {
    this.exitListeners.push(listener);
  }

  info(): InstanceInfo {
    return { id: this.id, functionName: 'f', version: 1, state: 'idle', start: 'cold', pid: 1, createdAt: 0, lastUsedAt: 0, inflight: this.pending.length, invocations: 0, rssBytes: 0 };
  }
}

