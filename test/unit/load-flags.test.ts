// `fnctl load`'s flags: defaults per scenario, one-line errors for bad values, and options a
// scenario does not take refused by name rather than silently ignored.
import { describe, expect, it } from 'vitest';
import { loadSettings } from '../../bin/load.js';
import { CliError } from '../../bin/client.js';

describe('loadSettings', () => {
  it('gives each scenario its defaults', () => {
    expect(loadSettings('warm', {})).toMatchObject({ connections: 50, durationS: 10, rounds: 2 });
    expect(loadSettings('burst', { connections: '6', duration: '1.5' })).toMatchObject({ connections: 6, durationS: 1.5 });
    expect(loadSettings('cold', { samples: '3' })).toMatchObject({ samples: 3 });
  });

  it('refuses --connections and --duration for cold, naming the option', () => {
    expect(() => loadSettings('cold', { connections: '4' })).toThrow(new CliError('--connections is not an option of cold'));
    expect(() => loadSettings('cold', { duration: '2' })).toThrow(new CliError('--duration is not an option of cold'));
  });

  it('refuses options of other scenarios and bad values in one line', () => {
    expect(() => loadSettings('cold', { rounds: '2' })).toThrow('--rounds is not an option of cold');
    expect(() => loadSettings('warm', { zipf: '1' })).toThrow('--zipf is not an option of warm');
    expect(() => loadSettings('burst', { connections: '0' })).toThrow('--connections = "0": must be a whole number of at least 1');
    expect(() => loadSettings('burst', { json: '' })).toThrow('--json and --html need a file name');
  });
});
