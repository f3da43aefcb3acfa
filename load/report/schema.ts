// The JSON report of `fnctl load` and `npm run bench`: one schema for every scenario, versioned,
// so that scripts (and the HTML report) can read any run. load/report/schema.json is this schema
// written out as JSON Schema (reportJsonSchema); a test keeps the two equal, and validates every
// scenario's report against the file with ajv, as a user's script would.
//
// Results are kept apart by class: a class is one target (a function, or a baseline) and one way
// its responses started (x-fn-start), as SeBS keeps cold and warm apart; they are never mixed.
import { z } from 'zod';

export const SCHEMA_ID = 'fnctl.load/v1';

export const SCENARIOS = ['warm', 'cold', 'burst', 'ramp', 'mixed'] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** How a response started: x-fn-start, `baseline` for a baseline target, `none` when absent (an error before any microVM). */
export const START_KINDS = ['cold', 'restore', 'standby', 'warm', 'baseline', 'none'] as const;
export type StartKind = (typeof START_KINDS)[number];

const ms = z.number().nonnegative().describe('milliseconds');

export const PercentilesSchema = z
  .object({
    p50: ms,
    p90: ms,
    p99: ms,
    p999: ms,
    max: ms,
    mean: ms,
  })
  .strict()
  .describe('latency percentiles (nearest rank) in ms');
export type Percentiles = z.infer<typeof PercentilesSchema>;

export const HistogramBucketSchema = z
  .object({ leMs: ms.describe('upper bound of the bucket, ms'), count: z.number().int().nonnegative() })
  .strict();

export const ClassStatsSchema = z
  .object({
    target: z.string().describe('function name, or the baseline label (e.g. "bare node:http")'),
    start: z.enum(START_KINDS),
    requests: z.number().int().nonnegative().describe('responses in this class, successful or not'),
    ok: z.number().int().nonnegative().describe('2xx responses'),
    rps: z.number().nonnegative().describe('responses per second over the time the class was loaded'),
    latencyMs: PercentilesSchema.nullable().describe('of the 2xx responses; null when there were none'),
    errors: z.record(z.string(), z.number().int().nonnegative()).describe('non-2xx responses by error code (THROTTLED, FUNCTION_ERROR, …), transport failures as TRANSPORT'),
    startPhaseMs: z
      .object({ init: PercentilesSchema.nullable(), restore: PercentilesSchema.nullable() })
      .strict()
      .describe("server-timing init (Lambda's Init Duration) and restore (Restore Duration) of this class's responses"),
    histogram: z.array(HistogramBucketSchema).describe('latency distribution of the 2xx responses, log-spaced buckets'),
  })
  .strict();
export type ClassStats = z.infer<typeof ClassStatsSchema>;

export const TimelinePointSchema = z
  .object({
    tMs: ms.describe('since the scenario began'),
    connections: z.number().int().nonnegative().describe('connections the load generator held open'),
    rps: z.number().nonnegative().describe('responses per second in the interval ending here'),
    p50Ms: ms.nullable(),
    p99Ms: ms.nullable(),
    errors: z.number().int().nonnegative().describe('non-2xx responses in the interval'),
    microvms: z
      .object({ starting: z.number().int(), idle: z.number().int(), busy: z.number().int(), paused: z.number().int() })
      .strict()
      .nullable()
      .describe("the target function(s)' microVMs by state, read from the control API; null when not readable"),
    queued: z.number().int().nonnegative().nullable(),
  })
  .strict();
export type TimelinePoint = z.infer<typeof TimelinePointSchema>;

export const RatioSchema = z
  .object({
    name: z.string().describe('what is compared, e.g. "warm throughput / bare node:http"'),
    value: z.number(),
    goal: z.string().optional().describe('the target, e.g. "≥ 0.5"'),
    met: z.boolean().optional(),
  })
  .strict();

export const LoadReportSchema = z
  .object({
    schema: z.literal(SCHEMA_ID),
    scenario: z.enum(SCENARIOS),
    startedAt: z.string().describe('ISO 8601'),
    durationMs: ms,
    platform: z.object({ url: z.string() }).strict(),
    machine: z
      .object({ cpus: z.number().int(), node: z.string(), arch: z.string(), loadavg: z.array(z.number()).length(3) })
      .strict(),
    options: z
      .object({
        functions: z.array(z.string()).describe('the functions loaded'),
        connections: z.number().int().positive(),
        durationS: z.number().positive(),
      })
      .catchall(z.union([z.number(), z.string(), z.boolean(), z.array(z.number())]))
      .describe("the scenario's options; scenario-specific ones besides these three"),
    classes: z.array(ClassStatsSchema),
    ratios: z.array(RatioSchema).describe('to the baseline of the same run'),
    timeline: z.array(TimelinePointSchema),
    counters: z
      .object({
        microvmsStarted: z.number().int().nonnegative().nullable(),
        evictions: z.number().int().nonnegative().nullable(),
        coldStartRate: z.number().min(0).max(1).nullable().describe('responses not started warm / all responses'),
        timeToAllServedMs: ms.nullable().describe('burst: from the start until every connection had its first response'),
      })
      .strict(),
    notes: z.array(z.string()).describe('what the reader should know: skipped baselines, warnings'),
  })
  .strict();
export type LoadReport = z.infer<typeof LoadReportSchema>;

/** The JSON Schema (draft 2020-12) of a report. */
export function reportJsonSchema(): Record<string, unknown> {
  return { $id: `https://fnctl.dev/schema/${SCHEMA_ID}.json`, title: 'fnctl load report', ...z.toJSONSchema(LoadReportSchema) };
}
