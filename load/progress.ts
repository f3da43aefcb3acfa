// The progress bar of a running scenario (cli-progress), with the latest interval's figures:
// what runs, responses per second, p99 and microVMs. Only on a terminal.
import cliProgress from 'cli-progress';
import type { Progress } from './scenarios/session.js';

export interface ProgressDisplay {
  onProgress: (p: Progress) => void;
  stop(): void;
}

/** Live figures of a timeline point, e.g. "1,234 req/s · p99 5.1 ms · 3 microVMs · 2 queued". */
export function liveFigures(p: Progress): string {
  const point = p.point;
  if (!point) return '';
  const parts = [`${Math.round(point.rps).toLocaleString('en-US')} req/s`];
  if (point.p99Ms !== null) parts.push(`p99 ${point.p99Ms.toFixed(1)} ms`);
  if (point.microvms) parts.push(`${point.microvms.starting + point.microvms.idle + point.microvms.busy + point.microvms.paused} microVMs`);
  if (point.queued) parts.push(`${point.queued} queued`);
  if (point.errors) parts.push(`${point.errors} errors`);
  return parts.join(' · ');
}

/** A bar on STREAM when it is a terminal; otherwise nothing is shown. */
export function progressDisplay(stream: NodeJS.WriteStream = process.stdout): ProgressDisplay {
  if (!stream.isTTY) return { onProgress: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    { stream, format: '{bar} {percentage}% | {phase} | {figures}', hideCursor: true, clearOnComplete: true, fps: 5 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(1000, 0, { phase: 'starting', figures: '' });
  // Ctrl-C: give the terminal its cursor back before leaving.
  const interrupted = () => {
    bar.stop();
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  return {
    onProgress: (p) => bar.update(Math.round(p.fraction * 1000), { phase: p.phase, figures: liveFigures(p) }),
    stop: () => {
      process.off('SIGINT', interrupted);
      bar.stop();
    },
  };
}
