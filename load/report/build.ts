// Puts a scenario's figures together into a LoadReport and checks it against the schema, so no
// report that breaks the contract is ever printed or written.
import { availableParallelism, arch, loadavg } from 'node:os';
import type { Recorder } from '../recorder.js';
import { LoadReportSchema, SCHEMA_ID, type LoadReport, type Scenario } from './schema.js';

type Ratio = LoadReport['ratios'][number];

/**
 * A ratio with its goal (`≥ 0.5`, `≤ 1.15`, `≤ 2`) and whether the value meets it; a goal that
 * is not of that form is kept as text, without `met`.
 */
export function ratio(name: string, value: number, goal?: string): Ratio {
  if (goal === undefined) return { name, value };
  const m = /^\s*(≥|>=|≤|<=)\s*(-?[\d.]+)/.exec(goal);
  if (!m) return { name, value, goal };
  const bound = Number(m[2]);
  const met = m[1] === '≥' || m[1] === '>=' ? value >= bound : value <= bound;
  return { name, value, goal, met };
}

/**
 * A scenario's options: the three every report has, and its own (numbers, strings, booleans,
 * lists of numbers). The schema's inferred type cannot be written as an object literal (its
 * index signature would also have to admit `functions`), so reports are built from this.
 */
export type ScenarioOptions = { functions: string[]; connections: number; durationS: number } & { [key: string]: string[] | string | number | boolean | number[] };

export interface ReportParts {
  scenario: Scenario;
  startedAt: Date;
  durationMs: number;
  url: string;
  options: ScenarioOptions;
  recorder: Recorder;
  ratios?: Ratio[];
  timeline: LoadReport['timeline'];
  counters?: Partial<LoadReport['counters']>;
  notes?: string[];
}

export function buildReport(parts: ReportParts): LoadReport {
  const report: LoadReport = {
    schema: SCHEMA_ID,
    scenario: parts.scenario,
    startedAt: parts.startedAt.toISOString(),
    durationMs: parts.durationMs,
    platform: { url: parts.url },
    machine: { cpus: availableParallelism(), node: process.version, arch: arch(), loadavg: loadavg() },
    options: parts.options as LoadReport['options'],
    classes: parts.recorder.stats(),
    ratios: parts.ratios ?? [],
    timeline: parts.timeline,
    counters: {
      microvmsStarted: null,
      evictions: null,
      coldStartRate: parts.recorder.coldStartRate(),
      timeToAllServedMs: null,
      ...parts.counters,
    },
    notes: parts.notes ?? [],
  };
  return LoadReportSchema.parse(report);
}
