// The timeline with an injected clock and timers: points at each interval, per-interval figures,
// the microVM state read beside them, and a last point at stop.
import { describe, expect, it } from 'vitest';
import { Timeline } from '../../load/timeline.js';
import { Recorder } from '../../load/recorder.js';
import type { MicrovmState } from '../../load/platform-api.js';

/** A manual clock: timers fire only when advance() passes their time. */
function fakeClock() {
  let now = 1000;
  let timers: { at: number; fn: () => void; id: number }[] = [];
  let ids = 0;
  const clock = {
    /** How late the next timer fires, ms (a busy event loop). */
    lagNext: 0,
    now: () => now,
    setTimer: (fn: () => void, ms: number) => {
      const id = ++ids;
      timers.push({ at: now + ms + clock.lagNext, fn, id });
      clock.lagNext = 0;
      return id;
    },
    clearTimer: (id: unknown) => {
      timers = timers.filter((t) => t.id !== id);
    },
    async advance(ms: number) {
      const end = now + ms;
      for (;;) {
        // let state reads settle, as they would between ticks
        await new Promise((r) => setImmediate(r));
        timers.sort((a, b) => a.at - b.at);
        const next = timers[0];
        if (!next || next.at > end) break;
        timers.shift();
        now = next.at;
        next.fn();
      }
      now = end;
    },
  };
  return clock;
}

const state = (busy: number, queued: number): MicrovmState => ({ microvms: { starting: 0, idle: 1, busy, paused: 0 }, queued });

describe('Timeline', () => {
  it('takes a point every interval with that interval’s responses, errors and latency', async () => {
    const clock = fakeClock();
    const recorder = new Recorder();
    let connections = 4;
    let busy = 0;
    const timeline = new Timeline({ recorder, connections: () => connections, readState: async () => state(busy++, 2), intervalMs: 250, ...clock });
    const hello = recorder.classOf('hello', 'warm');
    for (let i = 1; i <= 100; i++) hello.success(i / 10);
    recorder.classOf('hello', 'none').failure('THROTTLED');
    await clock.advance(250);
    connections = 8;
    hello.success(50);
    await clock.advance(250);
    await clock.advance(250);

    expect(timeline.points.map((p) => p.tMs)).toEqual([250, 500, 750]);
    const [a, b, c] = timeline.points;
    expect(a).toMatchObject({ connections: 4, rps: 404, p50Ms: 5, p99Ms: 9.9, errors: 1 });
    expect(b).toMatchObject({ connections: 8, rps: 4, p50Ms: 50, p99Ms: 50, errors: 0 });
    expect(c).toMatchObject({ rps: 0, p50Ms: null, p99Ms: null, errors: 0 });
    // the state read at the start, then the one read after each point
    expect(a!.microvms).toEqual({ starting: 0, idle: 1, busy: 0, paused: 0 });
    expect(b!.microvms!.busy).toBe(1);
    expect(a!.queued).toBe(2);
    expect(timeline.elapsedMs()).toBe(750);
  });

  it('keeps to the interval grid when a tick runs late', async () => {
    const clock = fakeClock();
    clock.lagNext = 700;
    const timeline = new Timeline({ recorder: new Recorder(), connections: () => 1, intervalMs: 500, ...clock });
    await clock.advance(2100);
    expect(timeline.points.map((p) => p.tMs)).toEqual([1200, 1500, 2000]);
    expect(timeline.points[0]!.microvms).toBeNull();
    expect(timeline.points[0]!.queued).toBeNull();
  });

  it('reports no microVMs when the control API cannot be read', async () => {
    const clock = fakeClock();
    const timeline = new Timeline({ recorder: new Recorder(), connections: () => 1, readState: () => Promise.reject(new Error('down')), intervalMs: 250, ...clock });
    await clock.advance(250);
    expect(timeline.points[0]!.microvms).toBeNull();
  });

  it('takes a last point at stop for the interval under way, unless it has barely begun', async () => {
    const clock = fakeClock();
    const recorder = new Recorder();
    const timeline = new Timeline({ recorder, connections: () => 2, readState: async () => state(3, 0), intervalMs: 250, ...clock });
    await clock.advance(250);
    recorder.classOf('f', 'restore').success(80);
    await clock.advance(100);
    const points = await timeline.stop();
    expect(points.map((p) => p.tMs)).toEqual([250, 350]);
    expect(points[1]).toMatchObject({ rps: 10, p50Ms: 80, microvms: { busy: 3 } });
    await clock.advance(1000);
    expect(timeline.points).toHaveLength(2);

    const short = new Timeline({ recorder: new Recorder(), connections: () => 0, intervalMs: 250, ...clock });
    await clock.advance(250);
    await clock.advance(10);
    expect(await short.stop()).toHaveLength(1);
  });
});
