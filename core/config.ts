// Configuration the Knative way: defaults, then an overlay, then validation whose messages name
// the key, the value and the rule ("memory = 5, must be an integer in [64, 10240]").
import { totalmem } from 'node:os';
import { z } from 'zod';
import { FnError, type ErrorCode } from './errors.js';

/** Validate `value` with `schema`; on failure throw one FnError naming every bad key. */
export function validate<S extends z.ZodType>(
  schema: S,
  value: unknown,
  options: { code?: ErrorCode; what?: string } = {},
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => describeIssue(issue, value));
  const prefix = options.what ? `${options.what}: ` : '';
  throw new FnError(options.code ?? 'INVALID_SETTING', prefix + problems.join('; '), {
    details: { problems },
  });
}

function describeIssue(issue: z.core.$ZodIssue, root: unknown): string {
  const key = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const where = key ? ` in ${key}` : '';
    return `unknown setting${issue.keys.length > 1 ? 's' : ''}${where}: ${issue.keys.join(', ')}`;
  }
  const value = valueAt(root, issue.path);
  const shown = value === undefined ? 'missing' : JSON.stringify(value);
  return key ? `${key} = ${shown}, ${issue.message}` : `${shown}: ${issue.message}`;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

/** An integer in [min, max], with a message that states the rule. */
export function intInRange(min: number, max: number) {
  const rule = `must be an integer in [${min}, ${max}]`;
  return z.number({ error: rule }).int({ error: rule }).min(min, { error: rule }).max(max, { error: rule });
}

export const MiB = 1024 * 1024;

const OVERCOMMIT_RULE = 'must be a number in (0, 100]: the share of the machine\'s memory microVMs may reserve';

/** Settings of the platform process itself (`fnctl up`). */
export const PlatformConfigSchema = z
  .object({
    port: intInRange(0, 65535),
    host: z.string().min(1, { error: 'must not be empty' }),
    dataDir: z.string().min(1, { error: 'must not be empty' }),
    maxBodyBytes: intInRange(1, 1024 * MiB),
    maxBundleBytes: intInRange(1, 1024 * MiB),
    /** How long a request may wait for a microVM before it is throttled. */
    queueWaitMs: intInRange(0, 15 * 60 * 1000),
    /** How many requests may wait per function version. */
    queueLength: intInRange(0, 100_000),
    /** Init time limit (Lambda's init phase): a deploy whose init runs longer fails. */
    initTimeoutMs: intInRange(100, 15 * 60 * 1000),
    /** How long shutdown waits for in-flight requests before stopping guests anyway. */
    shutdownGraceMs: intInRange(0, 15 * 60 * 1000),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    /** auto: the strongest jail this machine offers (fnctl doctor); none: plain processes. */
    isolation: z.enum(['auto', 'none'], { error: 'must be one of auto, none' }),
    /** batch: guests run under SCHED_BATCH, so that a guest waking does not preempt the gateway (microvm/sched.ts); normal: the default policy. */
    guestScheduling: z.enum(['batch', 'normal'], { error: 'must be one of batch, normal' }),
    /**
     * The host memory budget is the machine's memory (or this process's memory limit, when lower,
     * as in a container) × this ratio: the memory limits of all running microVMs (starting, idle,
     * busy, paused) add up to no more. Above 1 overcommits.
     */
    overcommit: z.number({ error: OVERCOMMIT_RULE }).gt(0, { error: OVERCOMMIT_RULE }).max(100, { error: OVERCOMMIT_RULE }),
    /** The budget in MiB, when set: replaces the machine's memory × overcommit. */
    memoryBudgetMiB: intInRange(64, 1024 * 1024 * 1024).optional(),
    /** A microVM is recycled (stopped once idle, replaced as needed) after this age; 0: never. */
    recycleAfterMs: intInRange(0, 7 * 24 * 3600 * 1000),
    /** ... or after this many invocations; 0: never. */
    recycleAfterInvocations: intInRange(0, 1_000_000_000),
  })
  .strict();

export type PlatformConfig = z.output<typeof PlatformConfigSchema>;

export const platformDefaults: PlatformConfig = {
  port: 8080,
  host: '127.0.0.1',
  dataDir: '.fnctl',
  maxBodyBytes: 6 * MiB,
  maxBundleBytes: 256 * MiB,
  queueWaitMs: 10_000,
  queueLength: 1000,
  initTimeoutMs: 10_000,
  shutdownGraceMs: 10_000,
  logLevel: 'info',
  isolation: 'auto',
  guestScheduling: 'batch',
  overcommit: 1.0,
  // Lambda recycles execution environments after some hours, whatever their traffic.
  recycleAfterMs: 4 * 3600 * 1000,
  recycleAfterInvocations: 0,
};

export function platformConfig(overlay: Partial<PlatformConfig> = {}): PlatformConfig {
  const defined = Object.fromEntries(Object.entries(overlay).filter(([, v]) => v !== undefined));
  return validate(PlatformConfigSchema, { ...platformDefaults, ...defined }, { what: 'platform config' });
}

/** The memory this process may use, and where that figure came from. */
export interface MachineMemory {
  bytes: number;
  /** 'limit': a memory limit on this process (a container's cgroup) below the machine's memory. */
  source: 'machine' | 'limit';
}

/**
 * The machine's memory, or the limit on this process's memory when there is one below it: in a
 * container os.totalmem() is the host's memory. process.constrainedMemory() returns 0 (or
 * undefined) without a limit, and with cgroup v2's "max" a huge number (~1.8e19): anything at
 * or above the machine's memory counts as no limit.
 */
export function machineMemory(
  total: number = totalmem(),
  constrained: number | undefined = process.constrainedMemory?.(),
): MachineMemory {
  if (constrained !== undefined && Number.isFinite(constrained) && constrained > 0 && constrained < total) {
    return { bytes: constrained, source: 'limit' };
  }
  return { bytes: total, source: 'machine' };
}

/**
 * The host memory budget in bytes: memoryBudgetMiB when set, else the machine's memory (or this
 * process's memory limit, when lower) × overcommit.
 */
export function memoryBudgetBytes(config: Pick<PlatformConfig, 'overcommit' | 'memoryBudgetMiB'>, machineBytes = machineMemory().bytes): number {
  if (config.memoryBudgetMiB !== undefined) return config.memoryBudgetMiB * MiB;
  return Math.floor(machineBytes * config.overcommit);
}
