// `fnctl load` end to end, as a user runs it: a platform in its own process, each scenario in a
// small configuration through the CLI, and every JSON report validated against
// load/report/schema.json with ajv, as a user's script would.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Ajv2020 from 'ajv/dist/2020.js';
import { PlatformProcess, repoRoot } from '../helpers/platform.js';
import type { LoadReport } from '../../load/report/schema.js';

const platform = new PlatformProcess();
const out = mkdtempSync(path.join(tmpdir(), 'fnctl-load-'));
const validate = new Ajv2020().compile(JSON.parse(readFileSync(path.join(repoRoot, 'load/report/schema.json'), 'utf8')));

beforeAll(async () => {
  await platform.start();
});

afterAll(async () => {
  await platform.cleanup();
  rmSync(out, { recursive: true, force: true });
});

/** Runs `fnctl load ARGS --json FILE`, checks the exit and the schema, and returns the report. */
async function load(name: string, args: string[]): Promise<{ report: LoadReport; stdout: string }> {
  const file = path.join(out, `${name}.json`);
  const r = await platform.fnctl(['load', ...args, '--json', file]);
  expect(r.stderr).not.toMatch(/error/i);
  expect(r.code).toBe(0);
  const report = JSON.parse(readFileSync(file, 'utf8')) as LoadReport;
  expect(validate(report), JSON.stringify(validate.errors)).toBe(true);
  expect(report.schema).toBe('fnctl.load/v1');
  expect(report.platform.url).toBe(platform.url);
  return { report, stdout: r.stdout };
}

const cls = (report: LoadReport, target: string, start: string) => report.classes.find((c) => c.target === target && c.start === start);

describe('fnctl load', () => {
  it('without --fn and without hello deployed, says to pass --fn or deploy it', async () => {
    const r = await platform.fnctl(['load', 'warm']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/no --fn given and the hello example is not deployed.*pass --fn NAME, or deploy it/);
  });

  it('refuses an unknown scenario, bad numbers and unknown functions in one line each', async () => {
    expect((await platform.fnctl(['deploy', 'functions/examples/hello.js', '--max', '4'])).code).toBe(0);
    const cases: [string[], RegExp][] = [
      [['load', 'soak'], /unknown scenario "soak": must be one of warm, cold, burst, ramp, mixed/],
      [['load', 'burst', '--connections', '0'], /--connections = "0": must be a whole number of at least 1/],
      [['load', 'burst', '--duration', 'soon'], /--duration = "soon": must be a positive number/],
      [['load', 'cold', '--fn', 'nope'], /function "nope" is not deployed/],
      [['load', 'cold', '--rounds', '2'], /--rounds is not an option of cold/],
      [['load', 'cold', '--connections', '4'], /--connections is not an option of cold/],
      [['load', 'cold', '--duration', '2'], /--duration is not an option of cold/],
      [['load', 'burst', '--json', path.join(out, 'no-such-folder', 'r.json')], /--json .*no-such-folder\/r\.json: cannot be written/],
    ];
    const results = await Promise.all(cases.map(([args]) => platform.fnctl(args)));
    results.forEach((r, i) => {
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(cases[i]![1]);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    });
  });

  it('warm: the function warm against a bare node:http server and the same with a process hop, in the same run, with ratios', async () => {
    const { report, stdout } = await load('warm', ['warm', '--connections', '4', '--duration', '0.5', '--rounds', '2']);
    const bare = cls(report, 'bare node:http', 'baseline')!;
    const hop = cls(report, 'node:http + hop', 'baseline')!;
    const warm = cls(report, 'hello', 'warm')!;
    expect(bare.ok).toBeGreaterThan(0);
    expect(hop.ok).toBeGreaterThan(0);
    expect(hop.requests).toBe(hop.ok);
    expect(warm.ok).toBeGreaterThan(0);
    expect(warm.latencyMs!.p99).toBeGreaterThan(0);
    expect(report.ratios.map((r) => [r.name, r.goal])).toEqual([
      ['hello warm throughput / bare node:http', '≥ 0.5'],
      ['hello warm p99 / bare node:http p99', '≤ 2'],
      ['node:http + hop throughput / bare node:http (reference)', undefined],
      ['node:http + hop p99 / bare node:http p99 (reference)', undefined],
    ]);
    // Throughput is 2xx responses per second.
    const okRps = (c: typeof bare) => (c.rps * c.ok) / c.requests;
    expect(report.ratios[0]!.value).toBeCloseTo(okRps(warm) / okRps(bare), 10);
    expect(report.ratios[2]!.value).toBeCloseTo(okRps(hop) / okRps(bare), 10);
    expect(report.options).toMatchObject({ functions: ['hello'], connections: 4, durationS: 0.5, rounds: 2 });
    expect(report.timeline.length).toBeGreaterThan(2);
    expect(report.timeline.some((p) => p.connections === 4)).toBe(true);
    expect(stdout).toMatch(/^hello +warm +\d+/m);
    expect(stdout).toContain('hello warm throughput / bare node:http:');
  });

  it('cold: starts from zero microVMs against node -e 0, with the restore phase', async () => {
    const { report } = await load('cold', ['cold', '--samples', '3']);
    expect(cls(report, 'node -e 0', 'baseline')!.ok).toBe(3);
    const restore = cls(report, 'hello', 'restore')!;
    expect(restore.ok).toBe(3);
    expect(restore.startPhaseMs.restore!.p50).toBeGreaterThan(0);
    expect(restore.startPhaseMs.restore!.p50).toBeLessThanOrEqual(restore.latencyMs!.p50);
    expect(report.ratios[0]!.name).toBe('hello restore p50 / node -e 0 p50');
    expect(report.counters.coldStartRate).toBe(1);
    expect(report.counters.microvmsStarted).toBeGreaterThanOrEqual(3);
  });

  it('burst: time until every connection is served, microVMs started, statuses; and the HTML report', async () => {
    const html = path.join(out, 'burst.html');
    const { report, stdout } = await load('burst', ['burst', '--connections', '6', '--duration', '1', '--html', html]);
    expect(report.counters.timeToAllServedMs).toBeGreaterThan(0);
    expect(report.counters.timeToAllServedMs).toBeLessThan(report.durationMs);
    expect(report.counters.microvmsStarted).toBeGreaterThanOrEqual(1);
    expect(cls(report, 'hello', 'restore')!.ok).toBeGreaterThanOrEqual(1);
    expect(report.notes.some((n) => /^responses by status: 200: \d+/.test(n))).toBe(true);
    expect(report.timeline.some((p) => p.microvms && p.microvms.busy + p.microvms.idle + p.microvms.starting > 0)).toBe(true);
    expect(readFileSync(html, 'utf8')).toMatch(/^<!doctype html>/i);
    expect(stdout).toContain(`wrote ${html}`);
  });

  it('ramp: connections up in steps and down again, microVMs and queue over time', async () => {
    const { report } = await load('ramp', ['ramp', '--connections', '4', '--duration', '2']);
    expect(report.options.steps).toEqual([1, 2, 4, 2, 1]);
    const connections = report.timeline.map((p) => p.connections);
    expect(Math.max(...connections)).toBe(4);
    expect(connections[0]).toBe(1);
    expect(report.timeline.every((p) => p.queued !== null && p.microvms !== null)).toBe(true);
    expect(cls(report, 'hello', 'warm')!.ok).toBeGreaterThan(0);
  });

  it('mixed: copies of hello deployed, Zipf popularity, cold-start rate, latency by start type', async () => {
    const { report } = await load('mixed', ['mixed', '--functions', '4', '--connections', '4', '--duration', '1.5']);
    expect(report.options.functions).toEqual(['mixed-00', 'mixed-01', 'mixed-02', 'mixed-03']);
    expect(report.classes.every((c) => c.target === '4 functions')).toBe(true);
    expect(cls(report, '4 functions', 'restore')!.ok).toBeGreaterThanOrEqual(1);
    expect(report.counters.coldStartRate).toBeGreaterThan(0);
    expect(report.notes.find((n) => n.startsWith('requests sent by function'))).toMatch(/mixed-00 \d+\.\d%/);
    const ls = await platform.fnctl(['ls', '--json']);
    expect((JSON.parse(ls.stdout) as { name: string }[]).filter((f) => f.name.startsWith('mixed-'))).toHaveLength(4);
  });
});
