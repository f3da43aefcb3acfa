// Where a report goes besides the terminal: JSON (checked against the schema before it is
// written; `-` is stdout) and the HTML report.
import { writeFileSync } from 'node:fs';
import { LoadReportSchema, type LoadReport } from './schema.js';

export interface OutputOptions {
  json?: string;
  html?: string;
}

export async function writeOutputs(report: LoadReport, opts: OutputOptions): Promise<void> {
  if (opts.json !== undefined) {
    const text = JSON.stringify(LoadReportSchema.parse(report), null, 2) + '\n';
    if (opts.json === '-') process.stdout.write(text);
    else writeFileSync(opts.json, text);
  }
  if (opts.html !== undefined) {
    const { renderHtmlReport } = await import('./html.js');
    writeFileSync(opts.html, renderHtmlReport(report));
  }
}
