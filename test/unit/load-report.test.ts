// The report contract: the committed JSON Schema is the zod schema written out, reports are built
// and checked against it, and the helpers around scenarios (ratios and goals, /metrics sums, ramp
// steps, mixed names, the terminal table).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import Ajv2020 from 'ajv/dist/2020.js';
import { reportJsonSchema } from '../../load/report/schema.js';
import { schemaFile, schemaText } from '../../load/report/write-schema.js';
import { buildReport, ratio } from '../../load/report/build.js';
import { formatReport } from '../../load/report/text.js';
import { Recorder } from '../../load/recorder.js';
import { metricSum } from '../../load/platform-api.js';
import { rampSteps } from '../../load/scenarios/ramp.js';
import { mixedNames } from '../../load/scenarios/mixed.js';

describe('load/report/schema.json', () => {
  it('is reportJsonSchema() as committed (run `npm run schema` after changing the zod schema)', () => {
    const committed = readFileSync(schemaFile, 'utf8');
    expect(JSON.parse(committed)).toEqual(reportJsonSchema());
    expect(committed).toBe(schemaText());
  });
});

function sampleReport() {
  const recorder = new Recorder();
  const warm = recorder.classOf('hello', 'warm');
  for (let i = 0; i < 50; i++) warm.success(1 + i / 100);
  const restore = recorder.classOf('hello', 'restore');
  restore.success(80);
  restore.phases({ queue: 0.1, restore: 70, handler: 0.2 });
  recorder.classOf('hello', 'none').failure('THROTTLED');
  recorder.classOf('bare node:http', 'baseline').success(0.5);
  recorder.addLoadedTime('hello', 2000);
  recorder.addLoadedTime('bare node:http', 1000);
  return buildReport({
    scenario: 'warm',
    startedAt: new Date('2026-11-27T10:00:00Z'),
    durationMs: 3000,
    url: 'http://127.0.0.1:8080',
    options: { functions: ['hello'], connections: 4, durationS: 1, rounds: 2, steps: [1, 2] },
    recorder,
    ratios: [ratio('hello warm throughput / bare node:http', 0.42, '≥ 0.5')],
    timeline: [{ tMs: 250, connections: 4, rps: 200, p50Ms: 1, p99Ms: 2, errors: 1, microvms: { starting: 0, idle: 0, busy: 1, paused: 0 }, queued: 0 }],
    counters: { microvmsStarted: 1 },
    notes: ['a note'],
  });
}

describe('buildReport', () => {
  it('builds a report that validates against schema.json with ajv', () => {
    const report = sampleReport();
    const validate = new Ajv2020().compile(JSON.parse(readFileSync(schemaFile, 'utf8')));
    expect(validate(report), JSON.stringify(validate.errors)).toBe(true);
    expect(report.schema).toBe('fnctl.load/v1');
    expect(report.classes.map((c) => `${c.target}/${c.start}`)).toEqual(['hello/warm', 'hello/restore', 'hello/none', 'bare node:http/baseline']);
    expect(report.classes[0]!.rps).toBe(25);
    expect(report.classes[1]!.startPhaseMs.restore!.p50).toBe(70);
    expect(report.counters).toEqual({ microvmsStarted: 1, evictions: null, coldStartRate: 1 / 51, timeToAllServedMs: null });
    expect(report.machine.loadavg).toHaveLength(3);
  });

  it('refuses a report that breaks the schema', () => {
    expect(() =>
      buildReport({ scenario: 'warm', startedAt: new Date(), durationMs: -1, url: 'u', options: { functions: [], connections: 1, durationS: 1 }, recorder: new Recorder(), timeline: [] }),
    ).toThrow();
  });
});

describe('ratio', () => {
  it('says whether the value meets a ≥ or ≤ goal', () => {
    expect(ratio('a', 0.6, '≥ 0.5')).toEqual({ name: 'a', value: 0.6, goal: '≥ 0.5', met: true });
    expect(ratio('a', 0.4, '>= 0.5').met).toBe(false);
    expect(ratio('b', 2.5, '≤ 2').met).toBe(false);
    expect(ratio('b', 1.1, '<= 1.15').met).toBe(true);
    expect(ratio('c', 3, 'as low as can be')).toEqual({ name: 'c', value: 3, goal: 'as low as can be' });
    expect(ratio('d', 1)).toEqual({ name: 'd', value: 1 });
  });
});

describe('metricSum', () => {
  const text = [
    '# HELP fnctl_microvm_starts_total microVMs started',
    '# TYPE fnctl_microvm_starts_total counter',
    'fnctl_microvm_starts_total{function="hello",start="restore"} 3',
    'fnctl_microvm_starts_total{function="hello",start="cold"} 1',
    'fnctl_microvm_starts_total{function="other",start="restore"} 7',
    '# TYPE fnctl_evictions_total counter',
    '',
  ].join('\n');

  it('sums the samples of the given functions', () => {
    expect(metricSum(text, 'fnctl_microvm_starts_total', new Set(['hello']))).toEqual({ sum: 4, samples: 2 });
    expect(metricSum(text, 'fnctl_microvm_starts_total', new Set(['hello', 'other']))).toEqual({ sum: 11, samples: 3 });
  });

  it('tells a counter without samples from a metric the platform does not have', () => {
    expect(metricSum(text, 'fnctl_evictions_total', new Set(['hello']))).toEqual({ sum: 0, samples: 0 });
    expect(metricSum(text, 'fnctl_nothing_total', new Set(['hello']))).toBeNull();
  });
});

describe('scenario helpers', () => {
  it('ramps 1 → N/4 → N/2 → N and back, merging repeats', () => {
    expect(rampSteps(100)).toEqual([1, 25, 50, 100, 50, 25, 1]);
    expect(rampSteps(8)).toEqual([1, 2, 4, 8, 4, 2, 1]);
    expect(rampSteps(2)).toEqual([1, 2, 1]);
    expect(rampSteps(1)).toEqual([1]);
  });

  it('names the copies of mixed mixed-00, mixed-01, …', () => {
    expect(mixedNames(3)).toEqual(['mixed-00', 'mixed-01', 'mixed-02']);
    expect(mixedNames(150).at(-1)).toBe('mixed-149');
    expect(mixedNames(150)[0]).toBe('mixed-000');
  });
});

describe('formatReport', () => {
  it('shows a row per class, ratios with their goals, counters and notes', () => {
    const text = formatReport(sampleReport());
    const lines = text.split('\n');
    expect(lines[0]).toBe('warm: hello · 4 connections · 3.0 s · http://127.0.0.1:8080');
    expect(lines.find((l) => l.startsWith('hello ') && l.includes('restore'))).toMatch(/restore 70\.0/);
    expect(lines.find((l) => l.includes('none'))).toMatch(/THROTTLED:1$/);
    expect(text).toContain('hello warm throughput / bare node:http: 0.42 (goal ≥ 0.5: not met)');
    expect(text).toContain('microVMs started 1 · cold-start rate 2.0 % · at most 1 microVMs');
    expect(text).toContain('note: a note');
  });
});
