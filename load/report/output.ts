// Where a report goes besides the terminal: JSON (checked against the schema before it is
// written; `-` is stdout) and the HTML report. Both paths are checked before the run, so a typo
// fails at once rather than after minutes of load, and each is written on its own, so one that
// fails does not lose the other.
import { closeSync, existsSync, openSync, unlinkSync, writeFileSync } from 'node:fs';
import { LoadReportSchema, type LoadReport } from './schema.js';

export interface OutputOptions {
  json?: string;
  html?: string;
}

function outputs(opts: OutputOptions): { option: '--json' | '--html'; file: string }[] {
  const out: { option: '--json' | '--html'; file: string }[] = [];
  if (opts.json !== undefined && opts.json !== '-') out.push({ option: '--json', file: opts.json });
  if (opts.html !== undefined) out.push({ option: '--html', file: opts.html });
  return out;
}

/**
 * Before the run: throws, naming the option, when a file cannot be written. Each file is opened
 * for appending (so an existing one is neither truncated nor changed), and one that did not
 * exist is removed again.
 */
export function checkOutputs(opts: OutputOptions): void {
  for (const { option, file } of outputs(opts)) {
    const existed = existsSync(file);
    try {
      closeSync(openSync(file, 'a'));
      if (!existed) unlinkSync(file);
    } catch (err) {
      throw new Error(`${option} ${file}: cannot be written (${(err as Error).message})`);
    }
  }
}

/** Writes each output; one that fails does not stop the other. Returns the files written and the failures, one line each. */
export async function writeOutputs(report: LoadReport, opts: OutputOptions): Promise<{ written: string[]; errors: string[] }> {
  const written: string[] = [];
  const errors: string[] = [];
  const attempt = async (option: string, file: string, write: () => void | Promise<void>) => {
    try {
      await write();
      if (file !== '-') written.push(file);
    } catch (err) {
      errors.push(`${option} ${file}: not written (${(err as Error).message.split('\n')[0]})`);
    }
  };
  if (opts.json !== undefined) {
    const file = opts.json;
    await attempt('--json', file, () => {
      const text = JSON.stringify(LoadReportSchema.parse(report), null, 2) + '\n';
      if (file === '-') process.stdout.write(text);
      else writeFileSync(file, text);
    });
  }
  if (opts.html !== undefined) {
    const file = opts.html;
    await attempt('--html', file, async () => {
      const { renderHtmlReport } = await import('./html.js');
      writeFileSync(file, renderHtmlReport(report));
    });
  }
  return { written, errors };
}
