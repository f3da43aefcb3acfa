// The registry store: versions, rollback, removal, content-addressed bundles, and durability across
// reopen and crashes (a child process SIGKILLed in the middle of a transaction).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FnError } from '../../core/errors.js';
import { canonicalJson, Registry, SCHEMA_VERSION, versionHash, type VersionInfo } from '../../functions/registry.js';
import { resolveSettings } from '../../functions/settings.js';

const info: VersionInfo = { style: 'fetch', initMs: 12 };
let dir: string;
let reg: Registry;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'fnctl-registry-'));
  reg = Registry.open(dir);
});
afterEach(() => {
  reg.close();
  rmSync(dir, { recursive: true, force: true });
});

function deploy(r: Registry, name: string, code: string, settings = resolveSettings()) {
  const stored = r.storeBundle(Buffer.from(code));
  return r.publish(name, { bundleSha256: stored.sha256, settings, info });
}

function codeOf(err: unknown): string {
  expect(err).toBeInstanceOf(FnError);
  return (err as FnError).code;
}

describe('bundles', () => {
  it('are stored under their sha256, read-only, idempotently', () => {
    const a = reg.storeBundle(Buffer.from('module.exports = 1;'));
    expect(a.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(a.path).toBe(path.join(dir, 'bundles', `${a.sha256}.cjs`));
    expect(a.bytes).toBe(19);
    expect(readFileSync(a.path, 'utf8')).toBe('module.exports = 1;');
    expect(statSync(a.path).mode & 0o777).toBe(0o444);
    expect(reg.storeBundle(Buffer.from('module.exports = 1;'))).toEqual(a);
    expect(readdirSync(path.join(dir, 'bundles'))).toEqual([`${a.sha256}.cjs`]);
  });
});

describe('publish', () => {
  it('creates the function and numbers versions 1, 2, 3', () => {
    const v1 = deploy(reg, 'hello', 'one');
    expect(v1.unchanged).toBe(false);
    expect(v1.version).toMatchObject({ name: 'hello', version: 1, bundleBytes: 3, info });
    expect(v1.version.settings).toEqual(resolveSettings());
    expect(deploy(reg, 'hello', 'two').version.version).toBe(2);
    expect(deploy(reg, 'hello', 'three').version.version).toBe(3);
    expect(reg.getFunction('hello')).toMatchObject({ name: 'hello', currentVersion: 3 });
    expect(reg.currentVersion('hello')?.bundlePath).toBe(reg.bundlePath(reg.currentVersion('hello')!.bundleSha256));
    expect(reg.listVersions('hello').map((v) => v.version)).toEqual([1, 2, 3]);
  });

  it('the same bundle and settings as the current version create nothing', () => {
    const v1 = deploy(reg, 'hello', 'one');
    const again = deploy(reg, 'hello', 'one');
    expect(again.unchanged).toBe(true);
    expect(again.version).toEqual(v1.version);
    expect(reg.listVersions('hello')).toHaveLength(1);
  });

  it('different settings make a new version, and hash = sha256(bundle sha + canonical settings)', () => {
    const v1 = deploy(reg, 'hello', 'one');
    const v2 = deploy(reg, 'hello', 'one', resolveSettings({ memory: 256 }));
    expect(v2.unchanged).toBe(false);
    expect(v2.version.version).toBe(2);
    expect(v2.version.hash).not.toBe(v1.version.hash);
    expect(v2.version.hash).toBe(versionHash(v2.version.bundleSha256, resolveSettings({ memory: 256 })));
    // key order does not matter
    const reordered = Object.fromEntries(Object.entries(resolveSettings({ memory: 256 })).reverse());
    expect(versionHash(v2.version.bundleSha256, reordered as never)).toBe(v2.version.hash);
    expect(canonicalJson({ b: 1, a: { d: 2, c: [3, { f: 1, e: 2 }] } })).toBe('{"a":{"c":[3,{"e":2,"f":1}],"d":2},"b":1}');
  });

  it('after a rollback, deploying the newer code again makes a new version', () => {
    deploy(reg, 'hello', 'one');
    deploy(reg, 'hello', 'two');
    reg.setCurrent('hello', 1);
    const again = deploy(reg, 'hello', 'two');
    expect(again).toMatchObject({ unchanged: false, version: { version: 3 } });
  });

  it('validates the name and the settings, and needs the bundle stored first', () => {
    expect(() => deploy(reg, 'Bad Name', 'x')).toThrow(/name = "Bad Name"/);
    const stored = reg.storeBundle(Buffer.from('x'));
    expect(() => reg.publish('ok', { bundleSha256: stored.sha256, settings: { ...resolveSettings(), memory: 1 }, info })).toThrow(
      /memory = 1/,
    );
    expect(() => reg.publish('ok', { bundleSha256: 'f'.repeat(64), settings: resolveSettings(), info })).toThrow(/not stored/);
    expect(reg.listFunctions()).toEqual([]);
  });
});

describe('lookups, rollback and removal', () => {
  it('lists functions by name', () => {
    deploy(reg, 'zeta', 'z');
    deploy(reg, 'alpha', 'a');
    expect(reg.listFunctions().map((f) => f.name)).toEqual(['alpha', 'zeta']);
    expect(reg.getFunction('nope')).toBeUndefined();
    expect(reg.currentVersion('nope')).toBeUndefined();
    expect(reg.getVersion('alpha', 9)).toBeUndefined();
    expect(reg.listVersions('nope')).toEqual([]);
  });

  it('setCurrent and previousVersion', () => {
    deploy(reg, 'hello', 'one');
    deploy(reg, 'hello', 'two');
    deploy(reg, 'hello', 'three');
    expect(reg.previousVersion('hello')?.version).toBe(2);
    expect(reg.setCurrent('hello', 1).version).toBe(1);
    expect(reg.currentVersion('hello')?.version).toBe(1);
    expect(reg.previousVersion('hello')).toBeUndefined();
    expect(reg.setCurrent('hello', 3).version).toBe(3);
    try {
      reg.setCurrent('hello', 7);
      expect.unreachable();
    } catch (err) {
      expect(codeOf(err)).toBe('VERSION_NOT_FOUND');
      expect((err as Error).message).toBe('function hello has no version 7');
    }
    expect(() => reg.setCurrent('nope', 1)).toThrow(/function nope does not exist/);
    try {
      reg.setCurrent('nope', 1);
    } catch (err) {
      expect(codeOf(err)).toBe('FUNCTION_NOT_FOUND');
    }
  });

  it('updateVersionInfo merges metadata into one version', () => {
    deploy(reg, 'hello', 'one');
    const updated = reg.updateVersionInfo('hello', 1, { snapshot: { status: 'ready', bytes: 123 } });
    expect(updated.info).toEqual({ ...info, snapshot: { status: 'ready', bytes: 123 } });
    expect(reg.getVersion('hello', 1)?.info.snapshot).toEqual({ status: 'ready', bytes: 123 });
    expect(() => reg.updateVersionInfo('hello', 5, {})).toThrow(/has no version 5/);
    expect(() => reg.updateVersionInfo('nope', 1, {})).toThrow(/does not exist/);
  });

  it('remove deletes the function, its versions and its unshared bundles; numbers are not reused', () => {
    const shortGrace = Registry.open(dir, { bundleGraceMs: 0 });
    try {
      const a = deploy(shortGrace, 'a', 'shared');
      deploy(shortGrace, 'a', 'only-a');
      const b = deploy(shortGrace, 'b', 'shared');
      const onlyA = shortGrace.getVersion('a', 2)!;
      shortGrace.remove('a');
      expect(shortGrace.getFunction('a')).toBeUndefined();
      expect(shortGrace.listVersions('a')).toEqual([]);
      expect(shortGrace.listFunctions().map((f) => f.name)).toEqual(['b']);
      expect(existsSync(onlyA.bundlePath)).toBe(false);
      expect(existsSync(a.version.bundlePath)).toBe(true); // still b's
      expect(b.version.bundlePath).toBe(a.version.bundlePath);
      expect(deploy(shortGrace, 'a', 'again').version.version).toBe(3);
      expect(() => shortGrace.remove('nope')).toThrow(/function nope does not exist/);
    } finally {
      shortGrace.close();
    }
  });

  it('remove keeps a bundle that a deploy in flight just stored', () => {
    deploy(reg, 'a', 'code');
    const stored = reg.storeBundle(Buffer.from('code')); // another function's deploy, not yet published
    reg.remove('a');
    expect(existsSync(stored.path)).toBe(true);
    expect(reg.publish('b', { bundleSha256: stored.sha256, settings: resolveSettings(), info }).version.version).toBe(1);
  });
});

describe('durability', () => {
  it('reopening gives the same data, and the schema version is recorded', () => {
    deploy(reg, 'hello', 'one');
    deploy(reg, 'hello', 'two', resolveSettings({ env: { A: 'b' } }));
    reg.setCurrent('hello', 1);
    const before = { fns: reg.listFunctions(), versions: reg.listVersions('hello') };
    reg.close();
    reg = Registry.open(dir);
    expect({ fns: reg.listFunctions(), versions: reg.listVersions('hello') }).toEqual(before);
    expect(reg.currentVersion('hello')?.version).toBe(1);
    const Database = createRequire(import.meta.url)('better-sqlite3');
    const raw = new Database(path.join(dir, 'registry.db'), { readonly: true });
    expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    raw.close();
  });

  it('refuses a database from a newer fnctl', () => {
    reg.close();
    const Database = createRequire(import.meta.url)('better-sqlite3');
    const raw = new Database(path.join(dir, 'registry.db'));
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    expect(() => Registry.open(dir)).toThrow(/newer than this fnctl supports/);
    const again = new Database(path.join(dir, 'registry.db'));
    again.pragma(`user_version = ${SCHEMA_VERSION}`);
    again.close();
    reg = Registry.open(dir);
  });

  it('a deploy that crashed after storing its bundle leaves the previous version, and its bundle is swept', () => {
    deploy(reg, 'hello', 'one');
    const orphan = reg.storeBundle(Buffer.from('never published'));
    writeFileSync(path.join(dir, 'bundles', `.${'a'.repeat(64)}.123.beef.tmp`), 'half a bund');
    reg.close();
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    utimesSync(orphan.path, old, old);

    reg = Registry.open(dir);
    expect(reg.currentVersion('hello')?.version).toBe(1);
    expect(existsSync(orphan.path)).toBe(false);
    expect(readdirSync(path.join(dir, 'bundles'))).toEqual([`${reg.currentVersion('hello')!.bundleSha256}.cjs`]);
  });

  it('a young unreferenced bundle survives the sweep (a deploy may be about to publish it)', () => {
    const young = reg.storeBundle(Buffer.from('in flight elsewhere'));
    reg.close();
    reg = Registry.open(dir);
    expect(existsSync(young.path)).toBe(true);
  });

  it('a process killed in the middle of a publish transaction changes nothing', async () => {
    deploy(reg, 'hello', 'one');
    const next = reg.storeBundle(Buffer.from('two'));
    reg.close();

    // The child does what publish does, in one open transaction, with enough data that pages spill
    // to the WAL before commit; then it waits to be killed.
    const child = spawn(
      process.execPath,
      [
        '-e',
        `
        const Database = require('better-sqlite3');
        const db = new Database(process.argv[1]);
        db.pragma('synchronous = FULL');
        db.pragma('cache_size = 2');
        db.exec('BEGIN IMMEDIATE');
        const ins = db.prepare("INSERT INTO versions (name, version, hash, bundle_sha256, bundle_bytes, settings, info, created_at) VALUES ('hello', ?, 'h', ?, 3, '{}', '{}', 0)");
        for (let v = 2; v < 3000; v++) ins.run(v, process.argv[2] + 'x'.repeat(2000));
        db.prepare("UPDATE functions SET current_version = 2 WHERE name = 'hello'").run();
        db.prepare("INSERT INTO counters (name, last_version) VALUES ('hello', 2999) ON CONFLICT (name) DO UPDATE SET last_version = 2999").run();
        process.stdout.write('in-transaction\\n');
        setInterval(() => {}, 1000);
        `,
        path.join(dir, 'registry.db'),
        next.sha256,
      ],
      { cwd: path.resolve('.'), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('in-transaction') && resolve());
      child.on('exit', (code) => reject(new Error(`child exited early with ${code}`)));
    });
    expect(statSync(path.join(dir, 'registry.db-wal')).size).toBeGreaterThan(100_000); // it did write
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('exit', resolve));

    reg = Registry.open(dir);
    expect(reg.currentVersion('hello')?.version).toBe(1);
    expect(reg.listVersions('hello').map((v) => v.version)).toEqual([1]);
    expect(deploy(reg, 'hello', 'two').version.version).toBe(2);
  });
});
