// How the CLI shows things to a person: aligned tables and one line per log record.

export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

export interface LogRecordLike {
  time: number;
  instance: string;
  stream: string;
  requestId?: string;
  level?: string;
  message: string;
}

export function formatLogRecord(r: LogRecordLike): string {
  const time = new Date(r.time).toISOString();
  const level = r.level ?? (r.stream === 'stderr' ? 'ERROR' : 'INFO');
  return `${time} ${r.instance} ${r.requestId ?? '-'} ${level} ${r.message}`;
}
