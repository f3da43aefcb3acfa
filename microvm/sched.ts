// Guests run under Linux's SCHED_BATCH policy (sched(7)): the same share of the CPU as any other
// process of their nice value, but a guest that wakes up does not preempt what is running. A
// guest wakes at every batch of requests the gateway writes to it, and under the normal policy it
// then usually took the CPU from the gateway in the middle of its turn of HTTP work, the one
// process every request goes through. sched(7) names this use: "workloads that want a
// deterministic scheduling policy without interactivity causing extra preemptions (between the
// workload's tasks)". Measured on this 2-core machine (one platform, the guests' policy switched
// between runs, alternating): hello at 50 connections on one microVM +11 % throughput, hello at
// concurrency 1 on ten microVMs +39 % and p99 −33 %.
//
// Node has no call for it, so a guest starts through util-linux's `chrt --batch 0`, which sets the
// policy and execs the guest's command (the same pid; everything the guest starts inherits it):
// one exec more per start (~0.7 ms), made ahead of time for held guests.
import { spawnSync } from 'node:child_process';
import { which } from './isolation.js';

export interface BatchProbe {
  /** chrt's path, when `chrt --batch 0` works here. */
  chrt?: string;
  /** Why guests cannot run under SCHED_BATCH here. */
  error?: string;
}

let cached: BatchProbe | undefined;

/** Whether guests can start under SCHED_BATCH: chrt is there and the policy takes (tried once per process). */
export function probeBatchScheduling(): BatchProbe {
  if (cached) return cached;
  const chrt = which('chrt');
  if (!chrt) return (cached = { error: 'chrt is not installed (apt-get install util-linux)' });
  // chrt under chrt: the inner one reports the policy the outer one set.
  const r = spawnSync(chrt, ['--batch', '0', chrt, '--pid', '0'], { encoding: 'utf8', timeout: 5000 });
  if (r.status === 0 && /SCHED_BATCH/.test(r.stdout)) return (cached = { chrt });
  const why = (r.stderr || r.stdout || r.error?.message || `exit ${r.status}`).trim().split('\n')[0];
  return (cached = { error: `chrt --batch 0 failed: ${why}` });
}

/** COMMAND started under SCHED_BATCH through CHRT (see the header). */
export function underBatch(chrt: string, spec: { command: string; args: string[] }): { command: string; args: string[] } {
  return { command: chrt, args: ['--batch', '0', spec.command, ...spec.args] };
}
