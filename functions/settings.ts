// The function model: its name and settings, with Lambda's and Knative's meanings. One schema
// validates fnctl.json, CLI flags and the control API alike, so every path gives the same errors.
import { z } from 'zod';
import { FnError } from '../core/errors.js';
import { intInRange, validate } from '../core/config.js';
import { unsafeEnvName } from '../core/env.js';

export const NAME_RULE = 'must be 1-63 characters of a-z, 0-9, "-" or "_", starting with a letter or digit';
const NAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export function validateName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new FnError('INVALID_NAME', `name = ${JSON.stringify(name ?? '')}, ${NAME_RULE}`);
  }
  return name;
}

const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENV_KEY_RULE = 'env names must match [A-Za-z_][A-Za-z0-9_]*';

function secondsInRange(min: number, max: number) {
  const rule = `must be a number of seconds in [${min}, ${max}]`;
  return z.number({ error: rule }).min(min, { error: rule }).max(max, { error: rule });
}

// One shape for both schemas, so a partial overlay (fnctl.json, API input) is checked by exactly the
// rules the resolved settings are.
const settingsShape = {
  /** MiB of memory of each microVM (Lambda's memory size). */
  memory: intInRange(64, 10240),
  /** Seconds an invocation may run before the microVM is killed. */
  timeout: secondsInRange(0.1, 900),
  /** Requests one microVM serves at once (Knative's containerConcurrency). */
  concurrency: intInRange(1, 1000),
  /** microVMs kept running even with no traffic. */
  min: intInRange(0, 1000),
  /** microVMs at most. */
  max: intInRange(1, 1000),
  /** Pre-restored, paused microVMs kept ready beside the active ones. */
  standby: intInRange(0, 100),
  /** Seconds an unused microVM is kept before it is reaped. */
  idle: secondsInRange(1, 86400),
  env: z.record(
    z
      .string()
      .regex(ENV_KEY_RE, { error: ENV_KEY_RULE })
      .superRefine((name, ctx) => {
        const why = unsafeEnvName(name);
        if (why) ctx.addIssue({ code: 'custom', message: why });
      }),
    z.string({ error: 'env values must be strings' }),
    {
      // zod reports a bad key as a generic "Invalid key in record": state the rule (or why the
      // name is reserved) instead.
      error: (issue) =>
        issue.code === 'invalid_key' ? (issue.issues.find((i) => i.code === 'custom')?.message ?? ENV_KEY_RULE)
        : issue.code === 'invalid_type' ? 'must be an object of NAME: "value" strings'
        : undefined,
    },
  ),
  snapshot: z.enum(['auto', 'required', 'off'], { error: 'must be one of auto, required, off' }),
  network: z.enum(['none', 'host'], { error: 'must be one of none, host' }),
};

export const SettingsSchema = z
  .object(settingsShape)
  .strict()
  .refine((s) => s.min <= s.max, { error: 'min must not exceed max', path: ['min'] })
  .refine((s) => s.standby <= s.max, { error: 'standby must not exceed max', path: ['standby'] });

export type Settings = z.output<typeof SettingsSchema>;

export const defaultSettings: Settings = {
  memory: 128,
  timeout: 30,
  concurrency: 1,
  min: 0,
  max: 10,
  standby: 0,
  idle: 60,
  env: {},
  snapshot: 'auto',
  network: 'host',
};

/** defaults, then each overlay in order (later wins), then validation. */
export function resolveSettings(...overlays: (Partial<Settings> | undefined)[]): Settings {
  const merged: Record<string, unknown> = { ...defaultSettings, env: { ...defaultSettings.env } };
  for (const overlay of overlays) {
    if (!overlay) continue;
    for (const [k, v] of Object.entries(overlay)) {
      if (v === undefined) continue;
      if (k === 'env' && v && typeof v === 'object' && !Array.isArray(v)) {
        merged.env = { ...(merged.env as Record<string, string>), ...(v as Record<string, string>) };
      } else {
        merged[k] = v;
      }
    }
  }
  return validate(SettingsSchema, merged, { what: 'invalid settings' });
}

/** A partial settings object (fnctl.json, API input): known keys only, each checked on its own. */
export const PartialSettingsSchema = z
  .object(settingsShape)
  .partial()
  .strict()
  .refine((s) => s.min === undefined || s.max === undefined || s.min <= s.max, {
    error: 'min must not exceed max',
    path: ['min'],
  });

export function parsePartialSettings(value: unknown, what: string): Partial<Settings> {
  return validate(PartialSettingsSchema, value ?? {}, { what });
}
