// A LoadReport as a person reads it in a terminal: one row per class, then ratios to the
// baseline with their goals, the counters and the notes.
import type { ClassStats, LoadReport } from './schema.js';

function fmt(n: number, digits = 2): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** Aligned columns: the first left-aligned, the rest (figures) right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

function phase(c: ClassStats): string {
  const p = c.startPhaseMs.restore ?? c.startPhaseMs.init;
  if (!p) return '-';
  return `${c.startPhaseMs.restore ? 'restore' : 'init'} ${fmt(p.p50, 1)}`;
}

export function classTable(classes: ClassStats[]): string {
  const rows = classes.map((c) => {
    const l = c.latencyMs;
    const ms = (v: number | undefined) => (v === undefined ? '-' : fmt(v));
    return [
      c.target,
      c.start,
      String(c.requests),
      fmt(c.rps, c.rps >= 100 ? 0 : 1),
      ms(l?.p50),
      ms(l?.p90),
      ms(l?.p99),
      ms(l?.p999),
      ms(l?.max),
      phase(c),
      Object.entries(c.errors)
        .map(([code, n]) => `${code}:${n}`)
        .join(' ') || '-',
    ];
  });
  return table(['target', 'start', 'requests', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'phase p50 ms', 'errors'], rows);
}

export function formatReport(report: LoadReport): string {
  const o = report.options;
  const functions = o.functions.length > 4 ? `${o.functions[0]} … ${o.functions.at(-1)} (${o.functions.length} functions)` : o.functions.join(', ');
  const lines = [
    `${report.scenario}: ${functions} · ${o.connections} connection${o.connections === 1 ? '' : 's'} · ${fmt(report.durationMs / 1000, 1)} s · ${report.platform.url}`,
    '',
    classTable(report.classes),
  ];
  if (report.ratios.length > 0) {
    lines.push('');
    for (const r of report.ratios) {
      const goal = r.goal ? ` (goal ${r.goal}${r.met === undefined ? '' : r.met ? ': met' : ': not met'})` : '';
      lines.push(`${r.name}: ${fmt(r.value)}${goal}`);
    }
  }
  const c = report.counters;
  const counters = [
    c.microvmsStarted === null ? undefined : `microVMs started ${c.microvmsStarted}`,
    c.evictions === null ? undefined : `evictions ${c.evictions}`,
    c.coldStartRate === null ? undefined : `cold-start rate ${fmt(100 * c.coldStartRate, 1)} %`,
    c.timeToAllServedMs === null ? undefined : `every connection served after ${fmt(c.timeToAllServedMs, 0)} ms`,
  ].filter((s) => s !== undefined);
  const peak = Math.max(0, ...report.timeline.map((p) => (p.microvms ? p.microvms.starting + p.microvms.idle + p.microvms.busy + p.microvms.paused : 0)));
  if (report.timeline.some((p) => p.microvms)) counters.push(`at most ${peak} microVMs`);
  const queued = Math.max(0, ...report.timeline.map((p) => p.queued ?? 0));
  if (queued > 0) counters.push(`at most ${queued} queued`);
  if (counters.length > 0) lines.push('', counters.join(' · '));
  for (const n of report.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}
