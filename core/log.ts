// Platform logs (not function logs): structured JSON through pino, to stderr so that stdout stays
// for what a command prints for its user.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino(
    { name: options.name ?? 'fnctl', level: options.level ?? process.env.FNCTL_LOG_LEVEL ?? 'info' },
    pino.destination({ dest: 2, sync: false }),
  );
}

/** A logger that drops everything, for tests and embedded use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
