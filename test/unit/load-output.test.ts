// --json and --html: checked before the run (a bad path fails at once, nothing is left behind and
// an existing file is not touched), and written each on its own after it.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkOutputs, writeOutputs } from '../../load/report/output.js';
import { buildReport } from '../../load/report/build.js';
import { Recorder } from '../../load/recorder.js';

const dir = mkdtempSync(path.join(tmpdir(), 'fnctl-output-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function report() {
  const recorder = new Recorder();
  recorder.classOf('hello', 'warm').success(1);
  recorder.addLoadedTime('hello', 1000);
  return buildReport({ scenario: 'burst', startedAt: new Date(), durationMs: 1000, url: 'http://127.0.0.1:1', options: { functions: ['hello'], connections: 1, durationS: 1 }, recorder, timeline: [] });
}

describe('checkOutputs', () => {
  it('refuses a path in a missing folder, or a folder, naming the option', () => {
    expect(() => checkOutputs({ json: path.join(dir, 'nope', 'r.json') })).toThrow(/^--json .*nope\/r\.json: cannot be written \(ENOENT/);
    mkdirSync(path.join(dir, 'sub'));
    expect(() => checkOutputs({ json: path.join(dir, 'ok.json'), html: path.join(dir, 'sub') })).toThrow(/^--html .*sub: cannot be written \(EISDIR/);
  });

  it('leaves no file behind, and an existing one as it was', () => {
    const fresh = path.join(dir, 'fresh.json');
    const old = path.join(dir, 'old.html');
    writeFileSync(old, 'previous run');
    checkOutputs({ json: fresh, html: old });
    expect(existsSync(fresh)).toBe(false);
    expect(readFileSync(old, 'utf8')).toBe('previous run');
    checkOutputs({ json: '-' });
  });
});

describe('writeOutputs', () => {
  it('writes the HTML even when the JSON cannot be written, and says which failed', async () => {
    const html = path.join(dir, 'r.html');
    const json = path.join(dir, 'gone', 'r.json');
    const { written, errors } = await writeOutputs(report(), { json, html });
    expect(written).toEqual([html]);
    expect(readFileSync(html, 'utf8')).toMatch(/^<!doctype html>/i);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^--json .*gone\/r\.json: not written \(ENOENT/);
  });

  it('writes both', async () => {
    const r = await writeOutputs(report(), { json: path.join(dir, 'b.json'), html: path.join(dir, 'b.html') });
    expect(r).toEqual({ written: [path.join(dir, 'b.json'), path.join(dir, 'b.html')], errors: [] });
    expect(JSON.parse(readFileSync(path.join(dir, 'b.json'), 'utf8')).scenario).toBe('burst');
  });
});
