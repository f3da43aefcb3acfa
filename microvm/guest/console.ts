// Console capture in the guest, in the format of Lambda's Node.js runtime, and its parser on the
// host. Each console call becomes one record on one line:
//
//   <ISO time>\t<request id or "undefined">\t<LEVEL>\t<message with "\n" written as "\r">
//
// so that a multi-line stack trace stays one record on the line-oriented serial console. The host
// imports parseConsoleLine from here, so importing this module must have no side effects.
import type { Readable } from 'node:stream';
import { format } from 'node:util';

export type ConsoleLevel = 'INFO' | 'DEBUG' | 'TRACE' | 'WARN' | 'ERROR';

export interface ParsedConsoleLine {
  requestId?: string;
  level?: string;
  message: string;
}

const LEVELS: ReadonlySet<string> = new Set(['INFO', 'DEBUG', 'TRACE', 'WARN', 'ERROR', 'FATAL']);
const NEWLINES = /\r\n|\n/g;
const CRS = /\r/g;
// Cheap shape check of the time field before we trust a line to be ours: "2026-11-27T03:04:05.678Z".
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

/** One console record as the guest writes it (with the trailing newline). */
export function formatConsoleLine(time: Date, requestId: string | undefined, level: ConsoleLevel, message: string): string {
  return `${time.toISOString()}\t${requestId ?? 'undefined'}\t${level}\t${message.replace(NEWLINES, '\r')}\n`;
}

/**
 * Parse one line of a guest's stdout or stderr (without its newline). Lines that the capture did
 * not write (process.stdout.write, native fatal errors) come back as {message: line}.
 */
export function parseConsoleLine(line: string): ParsedConsoleLine {
  const t1 = line.indexOf('\t');
  if (t1 < 20 || t1 > 35) return { message: line };
  const t2 = line.indexOf('\t', t1 + 1);
  if (t2 < 0) return { message: line };
  const t3 = line.indexOf('\t', t2 + 1);
  if (t3 < 0) return { message: line };
  const level = line.slice(t2 + 1, t3);
  if (!LEVELS.has(level) || !ISO_TIME.test(line.slice(0, t1))) return { message: line };
  const requestId = line.slice(t1 + 1, t2);
  const message = line.slice(t3 + 1).replace(CRS, '\n');
  return requestId === 'undefined' || requestId === '' ? { level, message } : { requestId, level, message };
}

type Method = 'log' | 'info' | 'debug' | 'trace' | 'warn' | 'error';

const ROUTES: readonly [Method, ConsoleLevel, 'stdout' | 'stderr'][] = [
  ['log', 'INFO', 'stdout'],
  ['info', 'INFO', 'stdout'],
  ['debug', 'DEBUG', 'stdout'],
  ['trace', 'TRACE', 'stdout'],
  ['warn', 'WARN', 'stderr'],
  ['error', 'ERROR', 'stderr'],
];

/**
 * Replace console.log/info/debug/trace/warn/error with writers of one tagged line each.
 * `currentRequestId` is asked at every call (the runtime answers from its AsyncLocalStorage).
 * The stream is looked up at every call, not captured, so the capture survives a V8 startup
 * snapshot (the restored process has new stdout/stderr objects).
 */
export function installConsoleCapture(currentRequestId: () => string | undefined): void {
  for (const [method, level, stream] of ROUTES) {
    const write =
      method === 'trace'
        ? function trace(...args: unknown[]): void {
            // Like node's console.trace: the message, then where it was called from.
            const where = { name: 'Trace', message: format(...args) } as Error;
            Error.captureStackTrace(where, trace);
            process.stdout.write(formatConsoleLine(new Date(), currentRequestId(), level, where.stack ?? where.message));
          }
        : (...args: unknown[]): void => {
            process[stream].write(formatConsoleLine(new Date(), currentRequestId(), level, format(...args)));
          };
    Object.defineProperty(console, method, { value: write, writable: true, configurable: true, enumerable: true });
  }
}

const MAX_LINE = 256 * 1024;

/** Host side: call `onLine` with each line of a guest's stdout or stderr (without the newline). */
export function readLines(stream: Readable, onLine: (line: string) => void): void {
  stream.setEncoding('utf8');
  let partial = '';
  stream.on('data', (s: string) => {
    let start = 0;
    let nl: number;
    while ((nl = s.indexOf('\n', start)) !== -1) {
      onLine(partial ? partial + s.slice(start, nl) : s.slice(start, nl));
      partial = '';
      start = nl + 1;
    }
    if (start < s.length) partial += s.slice(start);
    // A function writing megabytes without a newline must not grow this forever.
    if (partial.length > MAX_LINE) {
      onLine(partial);
      partial = '';
    }
  });
  stream.on('end', () => {
    if (partial) onLine(partial);
    partial = '';
  });
  stream.on('error', () => {});
}
