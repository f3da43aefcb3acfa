// The settings schema: defaults, overlays, and error messages that name the key, the value and the
// rule, whichever path (fnctl.json, flags, API) the settings came from.
import { describe, expect, it } from 'vitest';
import { FnError } from '../../core/errors.js';
import { safeEnv } from '../../core/env.js';
import {
  defaultSettings,
  parsePartialSettings,
  resolveSettings,
  validateName,
  type Settings,
} from '../../functions/settings.js';

function errorOf(fn: () => unknown): FnError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FnError);
    return err as FnError;
  }
  throw new Error('expected an error');
}

describe('resolveSettings', () => {
  it('gives the documented defaults', () => {
    expect(resolveSettings()).toEqual({
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
    });
  });

  it('applies overlays in order, later wins, undefined leaves a value alone, env merges', () => {
    const s = resolveSettings(
      { memory: 256, env: { A: '1', B: '2' } },
      { memory: 512, timeout: undefined, env: { B: 'two', C: '3' } },
    );
    expect(s.memory).toBe(512);
    expect(s.timeout).toBe(30);
    expect(s.env).toEqual({ A: '1', B: 'two', C: '3' });
  });

  it('does not share the defaults env object', () => {
    const s = resolveSettings({ env: { X: 'y' } });
    expect(s.env).toEqual({ X: 'y' });
    expect(defaultSettings.env).toEqual({});
  });

  it.each<[string, Partial<Settings> | Record<string, unknown>, RegExp]>([
    ['memory -5', { memory: -5 }, /memory = -5, must be an integer in \[64, 10240\]/],
    ['memory not an integer', { memory: 128.5 }, /memory = 128\.5, must be an integer/],
    ['memory as a string', { memory: '256' }, /memory = "256", must be an integer/],
    ['timeout 0', { timeout: 0 }, /timeout = 0, must be a number of seconds in \[0\.1, 900\]/],
    ['timeout too long', { timeout: 901 }, /timeout = 901, must be a number of seconds/],
    ['max 0', { max: 0 }, /max = 0, must be an integer in \[1, 1000\]/],
    ['min > max', { min: 5, max: 2 }, /min = 5, min must not exceed max/],
    ['standby > max', { standby: 4, max: 3 }, /standby = 4, standby must not exceed max/],
    ['concurrency 0', { concurrency: 0 }, /concurrency = 0, must be an integer in \[1, 1000\]/],
    ['idle 0', { idle: 0 }, /idle = 0, must be a number of seconds in \[1, 86400\]/],
    ['env bad key', { env: { '1BAD': 'x' } }, /env\.1BAD = "x", env names must match \[A-Za-z_\]\[A-Za-z0-9_\]\*/],
    ['env non-string value', { env: { GOOD: 1 } }, /env\.GOOD = 1, env values must be strings/],
    ['env not an object', { env: 'A=1' }, /env = "A=1", must be an object of NAME: "value" strings/],
    ['snapshot', { snapshot: 'sometimes' }, /snapshot = "sometimes", must be one of auto, required, off/],
    ['network', { network: 'public' }, /network = "public", must be one of none, host/],
    ['unknown key', { memroy: 256 }, /unknown setting: memroy/],
  ])('rejects %s naming key, value and rule', (_label, overlay, message) => {
    const err = errorOf(() => resolveSettings(overlay as Partial<Settings>));
    expect(err.code).toBe('INVALID_SETTING');
    expect(err.message).toMatch(/^invalid settings: /);
    expect(err.message).toMatch(message);
  });

  it('names every bad key at once', () => {
    const err = errorOf(() => resolveSettings({ memory: -5, timeout: 0 }));
    expect(err.message).toMatch(/memory = -5/);
    expect(err.message).toMatch(/timeout = 0/);
    expect(err.details?.problems).toHaveLength(2);
  });

  it('accepts the edges of each range', () => {
    expect(() => resolveSettings({ memory: 64, timeout: 0.1, idle: 1, min: 0, max: 1, concurrency: 1000 })).not.toThrow();
    expect(() => resolveSettings({ memory: 10240, timeout: 900, idle: 86400, min: 1000, max: 1000, standby: 100 })).not.toThrow();
  });
});

describe('reserved env names', () => {
  it('refuses names that change how the host-side programs starting a guest load code, naming them', () => {
    for (const name of ['LD_PRELOAD', 'LD_LIBRARY_PATH', 'LD_AUDIT', 'GLIBC_TUNABLES', 'GCONV_PATH', 'MALLOC_CHECK_', 'BASH_ENV', 'ENV', 'IFS']) {
      expect(() => resolveSettings({ env: { [name]: 'x' } })).toThrow(new RegExp(`env\\.${name} = "x", ${name} is reserved`));
    }
    expect(resolveSettings({ env: { TZ: 'UTC', LDAP_URL: 'ldap://x', PATH: '/usr/bin', TMPDIR: '/tmp' } }).env).toEqual({ TZ: 'UTC', LDAP_URL: 'ldap://x', PATH: '/usr/bin', TMPDIR: '/tmp' });
  });

  it('are dropped from the env of a version deployed before they were refused', () => {
    expect(safeEnv({ LD_PRELOAD: '/fn/evil.so', GLIBC_TUNABLES: 'x', GREETING: 'hi' })).toEqual({ GREETING: 'hi' });
  });
});

describe('parsePartialSettings', () => {
  it('keeps only what was given', () => {
    expect(parsePartialSettings({ memory: 256, env: { A: 'b' } }, 'fnctl.json')).toEqual({ memory: 256, env: { A: 'b' } });
    expect(parsePartialSettings(undefined, 'fnctl.json')).toEqual({});
  });

  it('checks each value on its own, prefixed with where it came from', () => {
    const err = errorOf(() => parsePartialSettings({ memory: 'lots' }, 'fn/fnctl.json'));
    expect(err.code).toBe('INVALID_SETTING');
    expect(err.message).toBe('fn/fnctl.json: memory = "lots", must be an integer in [64, 10240]');
  });

  it('rejects unknown keys naming them and the file', () => {
    const err = errorOf(() => parsePartialSettings({ memory: 128, memroy: 256 }, 'fn/fnctl.json'));
    expect(err.message).toBe('fn/fnctl.json: unknown setting: memroy');
  });

  it('rejects min > max when both are given, and lets a later overlay decide otherwise', () => {
    expect(() => parsePartialSettings({ min: 5, max: 2 }, 'x')).toThrow(/min must not exceed max/);
    expect(parsePartialSettings({ min: 20 }, 'x')).toEqual({ min: 20 });
  });

  it('rejects something that is not an object', () => {
    expect(() => parsePartialSettings([1, 2], 'x')).toThrow(/^x: /);
    expect(() => parsePartialSettings('memory=1', 'x')).toThrow(/^x: /);
  });
});

describe('validateName', () => {
  it.each(['hello', 'a', 'hono-app', 'fn_2', '0day', 'a'.repeat(63)])('accepts %s', (name) => {
    expect(validateName(name)).toBe(name);
  });

  it.each(['', 'Hello', '-lead', '_lead', 'has space', 'dots.not', 'a'.repeat(64), 'ü', '../etc'])('rejects %j', (name) => {
    const err = errorOf(() => validateName(name));
    expect(err.code).toBe('INVALID_NAME');
    expect(err.message).toBe(`name = ${JSON.stringify(name)}, must be 1-63 characters of a-z, 0-9, "-" or "_", starting with a letter or digit`);
  });

  it('rejects non-strings', () => {
    expect(errorOf(() => validateName(undefined)).message).toMatch(/^name = "", /);
    expect(errorOf(() => validateName(42)).message).toMatch(/^name = 42, /);
  });
});
