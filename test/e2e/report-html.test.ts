// The HTML load report, opened from a file in headless Chromium (Debian's chromium, through
// playwright-core) as a user would open it: it must run without errors and without any network
// request, draw every chart that has data (read back from the canvas pixels, not only from
// Chart.js's state), say "no data" where there is none, and show the report's figures.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatCount, formatMs, formatRatio, formatRps, renderHtmlReport } from '../../load/report/html.js';
import { LoadReportSchema, SCENARIOS, type LoadReport } from '../../load/report/schema.js';
import { CHROMIUM_MISSING, hasChromium, launchChromium, type Browser } from '../../scripts/chromium.js';
import { repoRoot } from '../helpers/platform.js';

/** The reports of a folder by name, each validated against the schema. */
function reportsIn(dir: string): Record<string, LoadReport> {
  return Object.fromEntries(
    readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => [f.slice(0, -5), LoadReportSchema.parse(JSON.parse(readFileSync(path.join(dir, f), 'utf8')))]),
  );
}
const fixtureDir = path.join(repoRoot, 'load/report/fixtures');
/** Sample reports of each scenario: realistic figures, made up. */
const fixtures = reportsIn(fixtureDir);
/** Reports of each scenario as `fnctl load` wrote them, from small runs on this machine. */
const measured = reportsIn(path.join(fixtureDir, 'measured'));

/** A report with nothing to draw but the load: only errors (null latency, no histogram), no microVM counts, no ratios. */
const onlyErrors: LoadReport = LoadReportSchema.parse({
  ...fixtures.burst,
  scenario: 'burst',
  classes: [
    {
      target: 'broken </script><script>window.injected = 1</script>',
      start: 'none',
      requests: 40,
      ok: 0,
      rps: 4,
      latencyMs: null,
      errors: { FUNCTION_CRASHED: 30, TRANSPORT: 10 },
      startPhaseMs: { init: null, restore: null },
      histogram: [],
    },
  ],
  ratios: [],
  timeline: [0, 1000, 2000].map((tMs) => ({ tMs, connections: 4, rps: 4, p50Ms: null, p99Ms: null, errors: 4, microvms: null, queued: null })),
  notes: ['<b>not bold</b> & </script> stays text'],
});
/** A report with nothing at all. */
const empty: LoadReport = { ...onlyErrors, scenario: 'cold', classes: [], timeline: [], counters: { microvmsStarted: null, evictions: null, coldStartRate: null, timeToAllServedMs: null }, notes: [] };

type ChartState =
  | { id: string; noData: string }
  | { id: string; noData: null; chart: boolean; datasets: number; points: number; area: number; inked: number; colourPixels: number[] };

interface PageState {
  charts: string | undefined;
  chartStates: ChartState[];
  injected: unknown;
  scenario: string | null;
  notes: string[];
  options: Record<string, string>;
  counters: Record<string, string>;
  ratios: { name: string; value: string; v: number; goal: string }[];
  rows: { cells: Record<string, { text: string; v: string | null }>; errors: Record<string, number> }[];
}

/** What the page shows, read in the page: each chart's Chart.js state and its canvas pixels, the tables. */
function readPage(page: Page): Promise<PageState> {
  return page.evaluate(() => {
    const text = (el: Element | null) => (el?.textContent ?? '').replace(/\s+/g, ' ').trim();
    const facts = (id: string) =>
      Object.fromEntries([...document.querySelectorAll(`#${id} dl > div`)].map((d) => [text(d.querySelector('dt')), text(d.querySelector('dd'))]));
    const Chart = (window as unknown as { Chart: { getChart(c: HTMLCanvasElement): { data: { datasets: { data: { y: number | null }[]; borderColor: string }[] } } | undefined } }).Chart;
    const chartStates = [...document.querySelectorAll('[data-chart]')].map((host) => {
      const id = host.getAttribute('data-chart')!;
      const canvas = host.querySelector('canvas');
      if (!canvas) return { id, noData: host.classList.contains('no-data') ? text(host) : '(neither canvas nor no-data)' };
      const chart = Chart.getChart(canvas);
      const datasets = chart?.data.datasets ?? [];
      const { width, height } = canvas;
      const px = canvas.getContext('2d')!.getImageData(0, 0, width, height).data;
      const colours = datasets.map((d) => {
        const n = parseInt(String(d.borderColor).slice(1), 16);
        return [(n >> 16) & 255, (n >> 8) & 255, n & 255] as const;
      });
      const colourPixels = colours.map(() => 0);
      let inked = 0;
      for (let i = 0; i < px.length; i += 4) {
        if (px[i + 3]! === 0) continue;
        inked++;
        if (px[i + 3]! < 200) continue;
        colours.forEach(([r, g, b], k) => {
          if (Math.abs(px[i]! - r) + Math.abs(px[i + 1]! - g) + Math.abs(px[i + 2]! - b) < 30) colourPixels[k]!++;
        });
      }
      return {
        id,
        noData: null,
        chart: chart !== undefined,
        datasets: datasets.length,
        points: datasets.reduce((a, d) => a + d.data.filter((p) => p.y !== null).length, 0),
        area: width * height,
        inked,
        colourPixels,
      };
    });
    return {
      charts: document.documentElement.dataset.charts,
      chartStates,
      injected: (window as unknown as { injected?: unknown }).injected,
      scenario: document.getElementById('scenario')?.textContent ?? null,
      notes: [...document.querySelectorAll('#notes li')].map((li) => li.textContent ?? ''),
      options: facts('options'),
      counters: facts('counters'),
      ratios: [...document.querySelectorAll('[data-ratio]')].map((r) => ({
        name: text(r.querySelector('.ratio-name')),
        value: text(r.querySelector('.ratio-value')),
        v: Number(r.querySelector('.ratio-value')?.getAttribute('data-v')),
        goal: text(r.querySelector('.ratio-goal')),
      })),
      rows: [...document.querySelectorAll('#class-table tbody tr')].map((tr) => ({
        cells: Object.fromEntries(
          [...tr.querySelectorAll('td')].map((td) => [td.getAttribute('data-k')!, { text: text(td), v: td.getAttribute('data-v') }]),
        ),
        errors: Object.fromEntries([...tr.querySelectorAll('.err')].map((e) => [e.getAttribute('data-code')!, Number(e.getAttribute('data-v'))])),
      })),
    };
  });
}

/** Which charts a report must draw, from the report alone. */
function expectedCharts(r: LoadReport): Record<string, boolean> {
  const latency = r.classes.some((c) => c.histogram.some((b) => b.count > 0));
  if (r.timeline.length === 0) return { 'latency-histogram': latency, 'latency-cdf': latency, timeline: false };
  return {
    'latency-histogram': latency,
    'latency-cdf': latency,
    microvms: r.timeline.some((p) => p.microvms !== null),
    load: true,
    'latency-time': r.timeline.some((p) => p.p50Ms !== null || p.p99Ms !== null),
  };
}

describe('sample reports', () => {
  it('cover every scenario and validate against the schema', () => {
    expect(Object.keys(fixtures).sort()).toEqual([...SCENARIOS].sort());
    expect(Object.keys(measured).sort()).toEqual([...SCENARIOS].sort());
    for (const [name, r] of [...Object.entries(fixtures), ...Object.entries(measured)]) {
      expect(r.scenario).toBe(name);
      for (const c of r.classes) {
        expect(c.histogram.reduce((a, b) => a + b.count, 0), `${name} ${c.target}/${c.start}`).toBe(c.ok);
        expect(c.latencyMs === null).toBe(c.ok === 0);
      }
    }
  });
});

describe('the HTML file', () => {
  it('is self-contained: no URL but the platform it ran against, nothing to load, the JSON embedded intact', () => {
    for (const r of [...Object.values(fixtures), ...Object.values(measured), onlyErrors]) {
      const html = renderHtmlReport(r);
      // (matches are compared, not the page, so that a failure does not print 300 KB)
      const markup = html.replace(/<script[^>]*>[^]*?<\/script>/g, '');
      expect(markup.match(/<[^>]*\s(src|href|srcset|action|poster|data)\s*=[^>]*>/gi)).toBeNull();
      expect(/<style>([^<]*)<\/style>/.exec(html)?.[1]?.match(/url\(|@import/gi) ?? null).toBeNull();
      expect((html.match(/[a-z][a-z0-9+.-]*:\/\/[^\s"'<>)]*/gi) ?? []).filter((u) => u !== r.platform.url)).toEqual([]);
      expect(html.match(/<\/script/gi)).toHaveLength(4);
      expect(html.includes(`content="default-src 'none'; script-src 'unsafe-inline'`)).toBe(true);
      const json = /<script type="application\/json" id="fnctl-report">([^<]*)<\/script>/.exec(html)?.[1];
      expect(LoadReportSchema.parse(JSON.parse(json!)), r.scenario).toEqual(r);
    }
  });
});

const chromiumThere = hasChromium();
if (!chromiumThere) console.warn(`report-html: skipped: ${CHROMIUM_MISSING}`);

describe.skipIf(!chromiumThere)('the HTML report in headless Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  }, 30_000);
  afterAll(async () => {
    await browser?.close();
  });

  /** Opens the report and fails on any page error, console error or request other than the page itself. */
  async function open(r: LoadReport, name: string) {
    const problems: string[] = [];
    const page = await browser.open(renderHtmlReport(r), name, async (p) => {
      p.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      p.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
      });
      p.on('request', (req) => {
        if (req.url() !== p.url() && !req.url().endsWith(`/${name}.html`)) problems.push(`request: ${req.url()}`);
      });
      await p.route('**/*', (route) => {
        if (route.request().url().endsWith(`/${name}.html`)) return route.continue();
        problems.push(`request: ${route.request().url()}`);
        return route.abort();
      });
    });
    const state = await readPage(page);
    await page.close();
    return { state, problems };
  }

  function checkCharts(r: LoadReport, state: PageState) {
    expect(state.charts).toBe('ready');
    const expected = expectedCharts(r);
    expect(Object.fromEntries(state.chartStates.map((c) => [c.id, c.noData === null]))).toEqual(expected);
    for (const c of state.chartStates) {
      if (c.noData !== null) {
        expect(c.noData, c.id).toMatch(/^no data/);
        continue;
      }
      expect(c.chart, c.id).toBe(true);
      expect(c.datasets, c.id).toBeGreaterThan(0);
      expect(c.points, c.id).toBeGreaterThan(0);
      // Drawn: a fair part of the canvas is inked (axes, grid, labels and data), and the data's own
      // colours are there: every class in the latency charts, at least one series elsewhere.
      expect(c.inked / c.area, `${c.id}: inked share`).toBeGreaterThan(0.02);
      const seen = c.colourPixels.filter((n) => n >= 15).length;
      if (c.id.startsWith('latency-') && c.id !== 'latency-time') expect(seen, `${c.id}: ${c.colourPixels.join(' ')}`).toBe(c.datasets);
      else expect(seen, `${c.id}: ${c.colourPixels.join(' ')}`).toBeGreaterThan(0);
    }
  }

  function checkFigures(r: LoadReport, state: PageState) {
    expect(state.scenario).toBe(r.scenario);
    expect(state.options.connections).toBe(formatCount(r.options.connections));
    expect(state.options.duration).toBe(`${Number(r.options.durationS.toFixed(3))} s`);
    if (r.counters.microvmsStarted !== null) expect(state.counters['microVMs started']).toBe(formatCount(r.counters.microvmsStarted));
    expect(state.notes).toEqual(r.notes);
    expect(state.ratios).toHaveLength(r.ratios.length);
    r.ratios.forEach((q, i) => {
      const shown = state.ratios[i]!;
      expect(shown.name).toBe(q.name);
      expect(shown.v).toBe(q.value);
      expect(shown.value).toBe(formatRatio(q.value));
      if (q.goal !== undefined) expect(shown.goal).toContain(q.goal);
      if (q.met !== undefined) expect(shown.goal).toContain(q.met ? 'met' : 'not met');
    });
    expect(state.rows).toHaveLength(r.classes.length);
    r.classes.forEach((c, i) => {
      const { cells, errors } = state.rows[i]!;
      const where = `${r.scenario} row ${i}`;
      expect(cells.target!.text, where).toBe(c.target);
      expect(cells.start!.text, where).toBe(c.start);
      expect([cells.requests!.text, Number(cells.requests!.v)], where).toEqual([formatCount(c.requests), c.requests]);
      expect([cells.ok!.text, Number(cells.ok!.v)], where).toEqual([formatCount(c.ok), c.ok]);
      expect([cells.rps!.text, Number(cells.rps!.v)], where).toEqual([formatRps(c.rps), c.rps]);
      for (const k of ['p50', 'p90', 'p99', 'p999', 'max'] as const) {
        expect(cells[k]!.text, `${where} ${k}`).toBe(formatMs(c.latencyMs?.[k]));
        expect(cells[k]!.v === null ? null : Number(cells[k]!.v), `${where} ${k}`).toBe(c.latencyMs?.[k] ?? null);
      }
      expect(cells.init!.text, where).toBe(formatMs(c.startPhaseMs.init?.p50));
      expect(cells.restore!.text, where).toBe(formatMs(c.startPhaseMs.restore?.p50));
      expect(errors, where).toEqual(Object.fromEntries(Object.entries(c.errors).filter(([, n]) => n > 0)));
    });
  }

  it.each(SCENARIOS.flatMap((s) => [['sample', s] as const, ['measured', s] as const]))(
    '%s %s report: opens offline without errors, draws its charts and shows its figures',
    async (kind, scenario) => {
      const r = (kind === 'sample' ? fixtures : measured)[scenario]!;
      const { state, problems } = await open(r, `${kind}-${scenario}`);
      expect(problems).toEqual([]);
      checkCharts(r, state);
      checkFigures(r, state);
    },
  );

  it('says "no data" for charts without data, and keeps hostile text as text', async () => {
    const { state, problems } = await open(onlyErrors, 'only-errors');
    expect(problems).toEqual([]);
    expect(state.injected).toBeUndefined();
    checkCharts(onlyErrors, state);
    checkFigures(onlyErrors, state);
    expect(state.chartStates.filter((c) => c.noData !== null).map((c) => c.id)).toEqual(['latency-histogram', 'latency-cdf', 'microvms', 'latency-time']);
  });

  it('renders a report with no classes and no timeline', async () => {
    const { state, problems } = await open(empty, 'empty');
    expect(problems).toEqual([]);
    checkCharts(empty, state);
    expect(state.chartStates.every((c) => c.noData !== null)).toBe(true);
    expect(state.rows).toEqual([]);
  });
});
