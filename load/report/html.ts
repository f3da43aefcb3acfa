// The HTML report of a load run: one self-contained file that opens in a browser with no network.
// Chart.js 4 is inlined, the report JSON is embedded (id "fnctl-report") beside the chart data
// derived from it (id "fnctl-charts"), and a Content-Security-Policy forbids every fetch. Tables and
// the header are rendered here, so they read without JavaScript; the charts are drawn in the page.
// A chart with nothing to draw (an empty timeline, classes without a 2xx response) says "no data".
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { ClassStats, LoadReport, Percentiles, StartKind, TimelinePoint } from './schema.js';

// ---------------------------------------------------------------------------------------------
// Formatting (exported: the test checks the tables against the same rules)

const en = (v: number, digits: number) =>
  v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** Milliseconds with the precision that their size deserves: 0.96, 7.57, 83.2, 1,204. */
export function formatMs(v: number | null | undefined): string {
  if (v === null || v === undefined) return '—';
  return en(v, v < 10 ? 2 : v < 100 ? 1 : 0);
}

export function formatCount(v: number): string {
  return en(v, 0);
}

export function formatRps(v: number): string {
  return en(v, v < 10 ? 1 : 0);
}

export function formatRatio(v: number): string {
  return Math.abs(v) < 10 ? en(v, 2) : en(v, 1);
}

function formatShare(v: number): string {
  const pct = v * 100;
  if (pct === 0 || pct === 100) return `${pct} %`;
  return `${pct < 0.1 ? Number(pct.toPrecision(2)) : en(pct, pct < 10 ? 2 : 1)} %`;
}

function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${en(s, 1)} s`;
  return `${Math.floor(s / 60)} min ${String(Math.round(s % 60)).padStart(2, '0')} s`;
}

function formatDate(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toISOString().slice(0, 10)} ${d.toISOString().slice(11, 19)} UTC`;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON that is safe inside a <script> element: no `<`, `>` or `&` (so no `</script>` or `<!--`), no line separators. */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

// ---------------------------------------------------------------------------------------------
// Colours: one hue per start kind, so a class reads the same in the table and in every chart.

export const START_COLORS: Record<StartKind, string> = {
  warm: '#16a34a',
  restore: '#2563eb',
  standby: '#9333ea',
  cold: '#ea580c',
  baseline: '#64748b',
  none: '#dc2626',
};
const DASHES: number[][] = [[], [7, 4], [2, 3], [12, 4, 2, 4]];
const STATE_COLORS = { starting: '#f59e0b', busy: '#2563eb', idle: '#14b8a6', paused: '#a855f7' } as const;
const QUEUE_COLOR = '#dc2626';

function alpha(hex: string, a: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

// ---------------------------------------------------------------------------------------------
// Chart specs: plain JSON, turned into Chart.js configs by the page's script.

type Unit = 'ms' | 's' | 'share' | 'count' | 'rps';
interface Axis {
  title: string;
  unit: Unit;
  log?: boolean;
  min?: number;
  max?: number;
  stacked?: boolean;
}
interface Series {
  label: string;
  color: string;
  data: { x: number; y: number | null }[];
  fill?: string | false;
  background?: string;
  stepped?: boolean;
  dash?: number[];
  axis?: 'y' | 'y2';
  width?: number;
}
export interface ChartSpec {
  id: string;
  x: Axis;
  y: Axis;
  y2?: Axis;
  series: Series[];
}
interface ChartSlot {
  id: string;
  title: string;
  caption: string;
  spec: ChartSpec | null;
  /** why there is no chart, when spec is null */
  empty: string;
  wide?: boolean;
}

/** Above this many classes, the distribution charts sum the histograms of each start kind. */
const MAX_CLASS_SERIES = 10;

interface Distribution {
  label: string;
  start: StartKind;
  dash: number[];
  buckets: { leMs: number; count: number }[];
}

interface KindGroup {
  start: StartKind;
  targets: Set<string>;
  classes: ClassStats[];
  /** the classes' histograms summed by bucket bound */
  buckets: { leMs: number; count: number }[];
}

/** The classes of each start kind, in order of first appearance, with their histograms summed. */
function byStartKind(classes: ClassStats[]): KindGroup[] {
  const groups = new Map<StartKind, KindGroup & { counts: Map<number, number> }>();
  for (const c of classes) {
    let g = groups.get(c.start);
    if (!g) groups.set(c.start, (g = { start: c.start, targets: new Set(), classes: [], buckets: [], counts: new Map() }));
    g.targets.add(c.target);
    g.classes.push(c);
    for (const b of c.histogram) g.counts.set(b.leMs, (g.counts.get(b.leMs) ?? 0) + b.count);
  }
  return [...groups.values()].map(({ counts, ...g }) => ({
    ...g,
    buckets: [...counts].sort((a, b) => a[0] - b[0]).map(([leMs, count]) => ({ leMs, count })),
  }));
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function distributions(classes: ClassStats[]): { list: Distribution[]; merged: boolean } {
  const withData = classes.filter((c) => c.histogram.some((b) => b.count > 0));
  if (withData.length <= MAX_CLASS_SERIES) {
    const seen = new Map<StartKind, number>();
    const list = withData.map((c) => {
      const k = seen.get(c.start) ?? 0;
      seen.set(c.start, k + 1);
      return { label: `${c.target} · ${c.start}`, start: c.start, dash: DASHES[k % DASHES.length]!, buckets: c.histogram };
    });
    return { list, merged: false };
  }
  const list = byStartKind(withData).map((g) => ({
    label: `${g.start} (${plural(g.targets.size, 'target')})`,
    start: g.start,
    dash: [],
    buckets: g.buckets,
  }));
  return { list, merged: true };
}

/** Nearest-rank percentile Q (0..1) of a histogram: the upper bound of the bucket that holds it. */
function histogramPercentile(buckets: { leMs: number; count: number }[], q: number): number | null {
  const n = buckets.reduce((a, b) => a + b.count, 0);
  if (n === 0) return null;
  const rank = Math.max(1, Math.ceil(q * n));
  let seen = 0;
  for (const b of buckets) if ((seen += b.count) >= rank) return b.leMs;
  return buckets[buckets.length - 1]!.leMs;
}

/** The lower bound of the first bucket: one bucket width (on the log scale) below its upper bound. */
function lowerBound(buckets: { leMs: number }[]): number {
  const [a, b] = buckets;
  if (!a) return 0;
  return b && b.leMs > a.leMs ? (a.leMs * a.leMs) / b.leMs : a.leMs / 2;
}

function latencyCharts(report: LoadReport): ChartSlot[] {
  const { list, merged } = distributions(report.classes);
  const note = merged
    ? `${report.classes.length} classes: the histograms of each start kind are summed over its targets. `
    : '';
  const empty = 'no data: no class has a successful (2xx) response';
  const x: Axis = { title: 'latency (ms, log scale)', unit: 'ms', log: true };
  const hist: Series[] = [];
  const cdf: Series[] = [];
  for (const d of list) {
    const total = d.buckets.reduce((a, b) => a + b.count, 0);
    const lo = lowerBound(d.buckets);
    const last = d.buckets[d.buckets.length - 1]!.leMs;
    const ratio = d.buckets.length > 1 ? last / d.buckets[d.buckets.length - 2]!.leMs : 2;
    const color = START_COLORS[d.start];
    // A line stepped "after" through each bucket's upper bound draws bars: it rises at the
    // previous bound, so the bucket's share holds over (previous bound, this bound].
    hist.push({
      label: d.label,
      color,
      dash: d.dash,
      stepped: true,
      fill: 'origin',
      background: alpha(color, 0.1),
      data: [{ x: lo, y: 0 }, ...d.buckets.map((b) => ({ x: b.leMs, y: b.count / total })), { x: last * ratio, y: 0 }],
    });
    let sum = 0;
    cdf.push({
      label: d.label,
      color,
      dash: d.dash,
      data: [{ x: lo, y: 0 }, ...d.buckets.map((b) => ({ x: b.leMs, y: (sum += b.count) / total }))],
    });
  }
  const ok = list.length > 0;
  return [
    {
      id: 'latency-histogram',
      title: 'Latency distribution',
      caption: `${note}Share of each class's 2xx responses per log-spaced bucket; start kinds are never mixed.`,
      spec: ok ? { id: 'latency-histogram', x, y: { title: 'share of responses', unit: 'share', min: 0 }, series: hist } : null,
      empty,
    },
    {
      id: 'latency-cdf',
      title: 'Latency CDF',
      caption: `${note}Share of each class's 2xx responses at or below a latency.`,
      spec: ok ? { id: 'latency-cdf', x, y: { title: 'responses at or below', unit: 'share', min: 0, max: 1 }, series: cdf } : null,
      empty,
    },
  ];
}

function timelineCharts(timeline: TimelinePoint[]): ChartSlot[] {
  const end = timeline.reduce((a, p) => Math.max(a, p.tMs), 0) / 1000;
  const x: Axis = { title: 'time since start (s)', unit: 's', min: 0, ...(end > 0 ? { max: end } : {}) };
  const at = (p: TimelinePoint) => p.tMs / 1000;
  const noTimeline = 'no data: this run recorded no timeline';

  const hasVms = timeline.some((p) => p.microvms !== null);
  const hasQueue = timeline.some((p) => p.queued !== null && p.queued > 0);
  const states = ['busy', 'idle', 'starting', 'paused'] as const;
  const vmSeries: Series[] = hasVms
    ? states
        .filter((s) => s === 'busy' || s === 'idle' || timeline.some((p) => (p.microvms?.[s] ?? 0) > 0))
        .map((s, i) => ({
          label: `${s}`,
          color: STATE_COLORS[s],
          fill: i === 0 ? 'origin' : '-1',
          background: alpha(STATE_COLORS[s], 0.45),
          width: 1.5,
          data: timeline.map((p) => ({ x: at(p), y: p.microvms ? p.microvms[s] : null })),
        }))
    : [];
  if (hasQueue)
    vmSeries.push({
      label: 'queued requests',
      color: QUEUE_COLOR,
      dash: [6, 3],
      axis: 'y2',
      data: timeline.map((p) => ({ x: at(p), y: p.queued })),
    });

  const intervals = timeline.map((p, i) => (i === 0 ? p.tMs : p.tMs - timeline[i - 1]!.tMs));
  const loadSeries: Series[] = [
    { label: 'connections', color: '#334155', stepped: true, data: timeline.map((p) => ({ x: at(p), y: p.connections })) },
    { label: 'responses/s', color: '#0891b2', axis: 'y2', fill: 'origin', background: alpha('#0891b2', 0.08), data: timeline.map((p) => ({ x: at(p), y: p.rps })) },
  ];
  if (timeline.some((p) => p.errors > 0))
    loadSeries.push({
      label: 'errors/s',
      color: '#dc2626',
      axis: 'y2',
      data: timeline.map((p, i) => ({ x: at(p), y: intervals[i]! > 0 ? (p.errors * 1000) / intervals[i]! : p.errors })),
    });

  const lat = timeline.flatMap((p) => [p.p50Ms, p.p99Ms]).filter((v): v is number => v !== null && v > 0);
  const logLatency = lat.length > 0 && Math.max(...lat) / Math.min(...lat) > 30;
  const latSeries: Series[] = [
    { label: 'p50', color: '#2563eb', data: timeline.map((p) => ({ x: at(p), y: p.p50Ms })) },
    { label: 'p99', color: '#ea580c', data: timeline.map((p) => ({ x: at(p), y: p.p99Ms })) },
  ];
  const empty = timeline.length === 0;
  return [
    {
      id: 'microvms',
      title: hasQueue ? 'MicroVMs and queue' : 'MicroVMs',
      caption: `The target functions' microVMs by state, stacked${hasQueue ? '; requests waiting for one, on the right axis' : ''}.`,
      spec:
        !empty && hasVms
          ? {
              id: 'microvms',
              x,
              y: { title: 'microVMs', unit: 'count', min: 0, stacked: true },
              ...(hasQueue ? { y2: { title: 'queued requests', unit: 'count' as const, min: 0 } } : {}),
              series: vmSeries,
            }
          : null,
      empty: empty ? noTimeline : 'no data: microVM counts were not readable from the control API',
      wide: true,
    },
    {
      id: 'load',
      title: 'Load',
      caption: 'Connections held open by the load generator, and responses per second.',
      spec: empty
        ? null
        : { id: 'load', x, y: { title: 'connections', unit: 'count', min: 0 }, y2: { title: 'per second', unit: 'rps', min: 0 }, series: loadSeries },
      empty: noTimeline,
    },
    {
      id: 'latency-time',
      title: 'Latency over time',
      caption: `p50 and p99 of the 2xx responses of each interval${logLatency ? ' (log scale)' : ''}.`,
      spec:
        !empty && lat.length > 0
          ? { id: 'latency-time', x, y: { title: 'latency (ms)', unit: 'ms', log: logLatency, ...(logLatency ? {} : { min: 0 }) }, series: latSeries }
          : null,
      empty: empty ? noTimeline : 'no data: no interval had a successful response',
    },
  ];
}

/** The charts of a report, in page order; those with nothing to draw have spec null. */
export function chartSlots(report: LoadReport): ChartSlot[] {
  return [...latencyCharts(report), ...timelineCharts(report.timeline)];
}

// ---------------------------------------------------------------------------------------------
// HTML

function pill(start: StartKind): string {
  return `<span class="pill" style="--c:${START_COLORS[start]}">${esc(start)}</span>`;
}

function optionValue(v: unknown): string {
  if (Array.isArray(v)) {
    const items = v.map(String);
    return items.length > 8 ? `${items.slice(0, 6).join(', ')}, … (${items.length})` : items.join(', ');
  }
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'number') return Number.isInteger(v) ? formatCount(v) : String(Number(v.toFixed(3)));
  return String(v);
}

function header(r: LoadReport): string {
  const { functions, connections, durationS, ...rest } = r.options;
  const options: [string, string][] = [
    ['functions', optionValue(functions)],
    ['connections', formatCount(connections)],
    ['duration', `${optionValue(durationS)} s`],
    ...Object.entries(rest).map(([k, v]): [string, string] => [k, optionValue(v)]),
  ];
  const c = r.counters;
  const counters: [string, string][] = [];
  if (c.microvmsStarted !== null) counters.push(['microVMs started', formatCount(c.microvmsStarted)]);
  if (c.evictions !== null) counters.push(['evictions', formatCount(c.evictions)]);
  if (c.coldStartRate !== null) counters.push(['cold-start rate', formatShare(c.coldStartRate)]);
  if (c.timeToAllServedMs !== null) counters.push(['all connections served in', `${formatMs(c.timeToAllServedMs)} ms`]);
  const m = r.machine;
  const machine: [string, string][] = [
    ['CPUs', String(m.cpus)],
    ['arch', m.arch],
    ['node', m.node],
    ['load average', m.loadavg.map((v) => v.toFixed(2)).join(' ')],
  ];
  const dl = (title: string, id: string, rows: [string, string][]) =>
    `<div class="facts" id="${id}"><h2>${title}</h2><dl>${rows
      .map(([k, v]) => `<div><dt>${esc(k)}</dt><dd>${esc(v)}</dd></div>`)
      .join('')}</dl></div>`;
  return `<header>
  <div class="brand">fnctl load report</div>
  <h1><span id="scenario">${esc(r.scenario)}</span></h1>
  <p class="sub"><span id="started">${esc(formatDate(r.startedAt))}</span> · ran ${esc(formatDuration(r.durationMs))} · against <code>${esc(r.platform.url)}</code> · <span class="schema">${esc(r.schema)}</span></p>
</header>
<section class="meta">
  ${dl('Options', 'options', options)}
  ${dl('Machine', 'machine', machine)}
  ${counters.length > 0 ? dl('Counters', 'counters', counters) : ''}
</section>
${
  r.notes.length > 0
    ? `<section class="notes" id="notes"><ul>${r.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul></section>`
    : ''
}`;
}

function ratios(r: LoadReport): string {
  const body =
    r.ratios.length === 0
      ? '<p class="muted">No ratios in this report: nothing in this run was compared with a baseline.</p>'
      : `<div class="ratios">${r.ratios
          .map((q, i) => {
            const status = q.met === undefined ? 'none' : q.met ? 'met' : 'missed';
            const badge = q.met === undefined ? '' : `<span class="badge ${status}">${q.met ? '✓ met' : '✗ not met'}</span>`;
            return `<div class="ratio ${status}" data-ratio="${i}">
  <div class="ratio-name">${esc(q.name)}</div>
  <div class="ratio-value" data-v="${q.value}">${formatRatio(q.value)}</div>
  <div class="ratio-goal">${q.goal !== undefined ? `goal <b>${esc(q.goal)}</b>` : 'no goal'} ${badge}</div>
</div>`;
          })
          .join('')}</div>`;
  return `<section id="ratios"><h2>Ratios to the baseline</h2>${body}</section>`;
}

function cell(key: string, value: number | null, text: string, cls = 'num'): string {
  return `<td class="${cls}" data-k="${key}"${value === null ? '' : ` data-v="${value}"`}>${text}</td>`;
}

function errorsCell(errors: Record<string, number>): string {
  const entries = Object.entries(errors).filter(([, n]) => n > 0);
  if (entries.length === 0) return '<td class="errs" data-k="errors"><span class="muted">—</span></td>';
  return `<td class="errs" data-k="errors">${entries
    .map(([code, n]) => `<span class="err" data-code="${esc(code)}" data-v="${n}">${esc(code)} <b>${formatCount(n)}</b></span>`)
    .join(' ')}</td>`;
}

const P_KEYS = ['p50', 'p90', 'p99', 'p999', 'max'] as const satisfies readonly (keyof Percentiles)[];

/** Above this many classes, a summary per start kind comes first and the full table is folded. */
const SUMMARY_OVER = 20;

function kindSummary(r: LoadReport): string {
  const rows = byStartKind(r.classes)
    .map((g) => {
      const sum = (f: (c: ClassStats) => number) => g.classes.reduce((a, c) => a + f(c), 0);
      const errors: Record<string, number> = {};
      for (const c of g.classes) for (const [code, n] of Object.entries(c.errors)) errors[code] = (errors[code] ?? 0) + n;
      const maxes = g.classes.flatMap((c) => (c.latencyMs ? [c.latencyMs.max] : []));
      const pq = (q: number) => {
        const v = histogramPercentile(g.buckets, q);
        return cell(`p${q * 100}`, v, v === null ? '—' : `≤ ${formatMs(v)}`);
      };
      return `<tr data-kind="${g.start}"><td data-k="start">${pill(g.start)}</td>${cell('targets', g.targets.size, formatCount(g.targets.size))}
${cell('requests', sum((c) => c.requests), formatCount(sum((c) => c.requests)))}${cell('ok', sum((c) => c.ok), formatCount(sum((c) => c.ok)))}${cell('rps', sum((c) => c.rps), formatRps(sum((c) => c.rps)))}
${pq(0.5)}${pq(0.9)}${pq(0.99)}${maxes.length > 0 ? cell('max', Math.max(...maxes), formatMs(Math.max(...maxes))) : cell('max', null, '—')}
${errorsCell(errors)}</tr>`;
    })
    .join('\n');
  return `<p class="caption">${r.classes.length} classes: first summed by start kind. Percentiles here are read from the summed histograms (the upper bound of the bucket, hence ≤); the table of every class follows.</p>
<div class="table-wrap"><table id="kinds">
<thead><tr><th>start</th><th class="num">targets</th><th class="num">requests</th><th class="num">2xx</th><th class="num">req/s</th><th class="num">p50</th><th class="num">p90</th><th class="num">p99</th><th class="num">max</th><th>errors</th></tr></thead>
<tbody>
${rows}
</tbody></table></div>`;
}

function classTable(r: LoadReport): string {
  if (r.classes.length === 0) return `<section id="classes"><h2>Results by class</h2><p class="muted">No responses were recorded.</p></section>`;
  const rows = r.classes
    .map((c, i) => {
      const l = c.latencyMs;
      return `<tr data-class="${i}">
<td data-k="target">${esc(c.target)}</td><td data-k="start">${pill(c.start)}</td>
${cell('requests', c.requests, formatCount(c.requests))}${cell('ok', c.ok, formatCount(c.ok))}${cell('rps', c.rps, formatRps(c.rps))}
${P_KEYS.map((k) => cell(k, l ? l[k] : null, formatMs(l?.[k]))).join('')}
${errorsCell(c.errors)}
${cell('init', c.startPhaseMs.init?.p50 ?? null, formatMs(c.startPhaseMs.init?.p50))}${cell('restore', c.startPhaseMs.restore?.p50 ?? null, formatMs(c.startPhaseMs.restore?.p50))}
</tr>`;
    })
    .join('\n');
  const many = r.classes.length > SUMMARY_OVER;
  return `<section id="classes">
<h2>Results by class</h2>
<p class="caption">One row per target and start kind (<code>x-fn-start</code>); latency is of the 2xx responses, in ms. Init and restore are the <code>server-timing</code> phases, as Lambda's Init Duration and Restore Duration.</p>
${many ? `${kindSummary(r)}<details><summary>Every class (${r.classes.length})</summary>` : ''}
<div class="table-wrap"><table id="class-table">
<thead><tr><th>target</th><th>start</th><th class="num">requests</th><th class="num">2xx</th><th class="num">req/s</th><th class="num">p50</th><th class="num">p90</th><th class="num">p99</th><th class="num">p99.9</th><th class="num">max</th><th>errors</th><th class="num">init p50</th><th class="num">restore p50</th></tr></thead>
<tbody>
${rows}
</tbody></table></div>${many ? '</details>' : ''}
</section>`;
}

function figure(slot: ChartSlot): string {
  const plot = slot.spec
    ? `<div class="plot" data-chart="${slot.id}"><canvas role="img" aria-label="${esc(slot.title)}"></canvas></div>`
    : `<div class="plot no-data" data-chart="${slot.id}"><p>${esc(slot.empty)}</p></div>`;
  return `<figure class="chart${slot.wide ? ' wide' : ''}" id="chart-${slot.id}"><figcaption><h3>${esc(slot.title)}</h3><p>${esc(slot.caption)}</p></figcaption>${plot}</figure>`;
}

const STYLE = `
:root { --fg: #0f172a; --muted: #64748b; --line: #e2e8f0; --card: #ffffff; --bg: #f8fafc; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 28px 40px; }
header { margin-bottom: 18px; }
.brand { font-size: 12px; letter-spacing: .08em; text-transform: uppercase; color: var(--muted); font-weight: 600; }
h1 { margin: 2px 0 4px; font-size: 30px; letter-spacing: -.01em; }
h2 { font-size: 16px; margin: 0 0 10px; }
h3 { font-size: 14px; margin: 0; }
.sub { margin: 0; color: var(--muted); }
code { font: 12.5px ui-monospace, "DejaVu Sans Mono", monospace; background: #f1f5f9; padding: 1px 5px; border-radius: 4px; }
.schema { font-size: 12px; }
section { margin: 0 0 22px; }
.meta { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 14px; }
.facts, .ratio, .chart, .table-wrap, .notes { background: var(--card); border: 1px solid var(--line); border-radius: 10px; }
.facts { padding: 14px 16px; }
.facts h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); margin-bottom: 6px; }
dl { margin: 0; }
dl div { display: flex; justify-content: space-between; gap: 12px; padding: 3px 0; border-bottom: 1px dashed var(--line); }
dl div:last-child { border-bottom: 0; }
dt { color: var(--muted); }
dd { margin: 0; font-weight: 600; text-align: right; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.notes { padding: 10px 16px; background: #fffbeb; border-color: #fde68a; }
.notes ul { margin: 0; padding-left: 18px; }
.muted { color: var(--muted); }
.caption, figcaption p { color: var(--muted); margin: -4px 0 10px; font-size: 13px; }
.ratios { display: grid; grid-template-columns: repeat(auto-fill, minmax(270px, 1fr)); gap: 14px; }
.ratio { padding: 14px 16px; border-left: 4px solid #94a3b8; }
.ratio.met { border-left-color: #16a34a; }
.ratio.missed { border-left-color: #dc2626; }
.ratio-name { color: var(--muted); font-size: 13px; }
.ratio-value { font-size: 28px; font-weight: 700; font-variant-numeric: tabular-nums; margin: 2px 0; }
.ratio-goal { font-size: 13px; }
.badge { display: inline-block; margin-left: 6px; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; }
.badge.met { background: #dcfce7; color: #166534; }
.badge.missed { background: #fee2e2; color: #991b1b; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; text-align: left; }
th { background: #f1f5f9; font-weight: 600; color: #334155; font-size: 12px; }
tbody tr:last-child td { border-bottom: 0; }
tbody tr:nth-child(even) td { background: #fbfdff; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.pill { display: inline-block; padding: 0 8px 0 7px; border-radius: 999px; font-size: 12px; font-weight: 600; color: var(--c); background: color-mix(in srgb, var(--c) 12%, white); border: 1px solid color-mix(in srgb, var(--c) 35%, white); }
details { margin-top: 12px; }
summary { cursor: pointer; font-weight: 600; margin-bottom: 8px; }
.err { display: inline-block; padding: 0 6px; border-radius: 4px; background: #fef2f2; color: #991b1b; font-size: 12px; }
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px; }
.chart { margin: 0; padding: 14px 16px 10px; }
.chart.wide { grid-column: 1 / -1; }
.plot { position: relative; height: 270px; }
.no-data { display: flex; align-items: center; justify-content: center; background: repeating-linear-gradient(-45deg, #f8fafc, #f8fafc 8px, #f1f5f9 8px, #f1f5f9 16px); border-radius: 8px; color: var(--muted); }
.no-data p { margin: 0; font-weight: 600; padding: 0 16px; text-align: center; }
.no-data.short { height: 90px; border: 1px solid var(--line); }
footer { color: var(--muted); font-size: 12px; margin-top: 26px; }
@media (max-width: 760px) { .charts { grid-template-columns: 1fr; } }
`;

// The page's script: reads the chart specs and draws them. Plain ES2017, no template literals.
const CLIENT = String.raw`
(function () {
  'use strict';
  var root = document.documentElement;
  try {
    var specs = JSON.parse(document.getElementById('fnctl-charts').textContent);
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.font.size = 12;
    Chart.defaults.color = '#475569';
    Chart.defaults.borderColor = '#e2e8f0';
    Chart.defaults.animation = false;
    var en = function (v, d) { return v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }); };
    var fmt = function (unit, v) {
      if (v === null || v === undefined) return '—';
      if (unit === 'ms') return (Number.isInteger(v) ? en(v, 0) : v < 1 ? String(Number(v.toPrecision(2))) : en(v, v < 10 ? 1 : 0)) + ' ms';
      if (unit === 's') return en(v, v < 10 && v % 1 ? 1 : 0) + ' s';
      if (unit === 'share') return en(v * 100, v > 0 && v < 0.1 ? 1 : 0) + ' %';
      if (unit === 'rps') return en(v, 0);
      return en(v, v % 1 ? 1 : 0);
    };
    // Log axes: powers of ten are labelled, and 2 and 5 too when a decade is long enough for them.
    var mantissa = function (v) { return v / Math.pow(10, Math.floor(Math.log10(v) + 1e-9)); };
    var near = function (m, k) { return Math.abs(m - k) < 1e-6; };
    var logTick = function (scale, v) {
      var m = mantissa(v);
      if (near(m, 1)) return true;
      var across = scale.isHorizontal() ? scale.width : scale.height;
      var perDecade = across / Math.max(Math.log10(scale.max / scale.min), 1e-9);
      return perDecade >= (scale.isHorizontal() ? 180 : 80) && (near(m, 2) || near(m, 5));
    };
    var axis = function (a, position, grid) {
      return {
        type: a.log ? 'logarithmic' : 'linear',
        position: position,
        stacked: !!a.stacked,
        min: a.min, max: a.max,
        beginAtZero: a.min === 0,
        title: { display: true, text: a.title, font: { weight: '600' } },
        grid: { display: grid, color: a.log ? function (c) { return c.tick && near(mantissa(c.tick.value), 1) ? '#e2e8f0' : '#f3f6fa'; } : '#eef2f7' },
        ticks: {
          autoSkip: !a.log, maxRotation: 0, includeBounds: a.unit !== 's',
          maxTicksLimit: a.log ? undefined : 8,
          precision: a.unit === 'count' ? 0 : undefined,
          callback: function (v) { return a.log && !logTick(this, v) ? '' : fmt(a.unit, v); },
        },
      };
    };
    var drawn = 0;
    specs.forEach(function (s) {
      var canvas = document.querySelector('[data-chart="' + s.id + '"] canvas');
      if (!canvas) return;
      var scales = { x: axis(s.x, 'bottom', true), y: axis(s.y, 'left', true) };
      if (s.y2) scales.y2 = axis(s.y2, 'right', false);
      new Chart(canvas, {
        type: 'line',
        data: {
          datasets: s.series.map(function (d) {
            return {
              label: d.label, data: d.data, yAxisID: d.axis || 'y',
              borderColor: d.color, backgroundColor: d.background || d.color,
              borderWidth: d.width || 2, borderDash: d.dash || [],
              fill: d.fill || false, stepped: d.stepped ? 'after' : false,
              pointRadius: d.data.length === 1 ? 3 : 0, pointHoverRadius: 3, tension: 0, spanGaps: false,
            };
          }),
        },
        options: {
          responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
          interaction: { mode: 'nearest', axis: 'x', intersect: false },
          scales: scales,
          plugins: {
            legend: { position: 'top', align: 'start', labels: { boxWidth: 14, boxHeight: 3, padding: 12 } },
            tooltip: { callbacks: { label: function (c) {
              var unit = (c.dataset.yAxisID === 'y2' && s.y2 ? s.y2 : s.y).unit;
              return c.dataset.label + ': ' + fmt(unit, c.parsed.y) + ' at ' + fmt(s.x.unit, c.parsed.x);
            } } },
          },
        },
      });
      drawn++;
    });
    root.setAttribute('data-charts', 'ready');
    root.setAttribute('data-charts-drawn', String(drawn));
  } catch (e) {
    root.setAttribute('data-charts', 'failed');
    console.error('fnctl report: charts failed: ' + (e && e.stack || e));
    Array.prototype.forEach.call(document.querySelectorAll('.plot canvas'), function (c) {
      var p = document.createElement('p'); p.textContent = 'could not draw this chart: ' + e;
      c.parentNode.classList.add('no-data'); c.parentNode.replaceChild(p, c);
    });
  }
})();
`;

let chartJs: string | undefined;

/** Chart.js's UMD build, made safe to inline: no `</script`, no source map reference, no URLs in its banners. */
function chartJsSource(): string {
  if (chartJs === undefined) {
    const require = createRequire(import.meta.url);
    const file = path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.min.js');
    chartJs = readFileSync(file, 'utf8')
      .replace(/^\/\/# sourceMappingURL=.*$/gm, '')
      .replace(/^( \* )https?:\/\//gm, '$1')
      .replace(/<\/(script)/gi, '<\\/$1');
    if (/https?:\/\//.test(chartJs)) throw new Error(`${file}: a URL is left in the inlined Chart.js`);
  }
  return chartJs;
}

const CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

/** The report as one self-contained HTML page: opens from a file, with no network. */
export function renderHtmlReport(report: LoadReport): string {
  const slots = chartSlots(report);
  const specs = slots.flatMap((s) => (s.spec ? [s.spec] : []));
  const [distA, distB, ...time] = slots;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="fnctl load">
<title>fnctl load · ${esc(report.scenario)} · ${esc(formatDate(report.startedAt))}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${header(report)}
${ratios(report)}
${classTable(report)}
<section id="distribution"><h2>Latency by start kind</h2><div class="charts">${figure(distA!)}${figure(distB!)}</div></section>
<section id="timeline"><h2>Over time</h2>${
    report.timeline.length > 0
      ? `<div class="charts">${time.map(figure).join('')}</div>`
      : `<div class="plot no-data short" data-chart="timeline"><p>no data: this run recorded no timeline, so there are no microVM, load or latency charts</p></div>`
  }</section>
<footer>Generated by <code>fnctl load</code>. The report's JSON (schema <code>${esc(report.schema)}</code>) is embedded in this file: <code>document.getElementById('fnctl-report')</code>.</footer>
</main>
<script type="application/json" id="fnctl-report">${scriptJson(report)}</script>
<script type="application/json" id="fnctl-charts">${scriptJson(specs)}</script>
<script>${chartJsSource()}</script>
<script>${CLIENT}</script>
</body>
</html>
`;
}
