// The registry: functions, their immutable versions and which version serves, in SQLite
// (`<dataDir>/registry.db`), with bundles content-addressed on disk (`<dataDir>/bundles/<sha256>.cjs`).
// It must survive restarts and crashes mid-deploy: a deploy is one transaction, and a bundle file
// is complete before any row names it.
//
// Durability: WAL with synchronous=FULL. NORMAL in WAL mode is crash-safe for the process but may
// lose the last commits on power loss; deploys are rare and off the invoke path, so one fsync per
// commit costs nothing that matters, and "deployed" then means deployed even after a power cut.
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, statSync,
  unlinkSync, writeSync,
} from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { FnError } from '../core/errors.js';
import { resolveSettings, validateName, type Settings } from './settings.js';
import type { HandlerStyle } from '../core/protocol.js';

export interface VersionInfo {
  style: HandlerStyle;
  /** Module top-level time at deploy, ms. */
  initMs: number;
  /** Snapshot metadata (JSON), filled in by the snapshot builder. */
  snapshot?: unknown;
  notes?: string;
}

export interface VersionRecord {
  name: string;
  version: number;
  /** sha256 over the bundle's sha256 and the canonical JSON of the settings. */
  hash: string;
  bundleSha256: string;
  bundlePath: string;
  bundleBytes: number;
  settings: Settings;
  info: VersionInfo;
  createdAt: number;
}

export interface FunctionRecord {
  name: string;
  currentVersion: number;
  createdAt: number;
  updatedAt: number;
}

/**
 * Scaling set with `fnctl scale`: per function, not per version (versions are immutable), applied
 * over the current version's settings until a deploy sets min, max or standby itself.
 */
export interface ScalingOverride {
  min: number;
  max: number;
  standby: number;
  updatedAt: number;
}

export interface StoredBundle {
  sha256: string;
  path: string;
  bytes: number;
}

export interface RegistryOptions {
  now?: () => number;
  /** Unreferenced bundles younger than this are kept: a deploy may be about to publish them. */
  bundleGraceMs?: number;
}

/** Bump with a migration in migrate() whenever the schema changes. */
export const SCHEMA_VERSION = 2;
const DEFAULT_GRACE_MS = 60 * 60 * 1000;

const SCHEMA_V1 = `
  CREATE TABLE functions (
    name TEXT PRIMARY KEY,
    current_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    hash TEXT NOT NULL,
    bundle_sha256 TEXT NOT NULL,
    bundle_bytes INTEGER NOT NULL,
    settings TEXT NOT NULL,
    info TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
  ) WITHOUT ROWID;
  CREATE INDEX versions_by_bundle ON versions (bundle_sha256);
  -- The last version number given out per name. Kept after rm, so NAME@3 of a removed function
  -- never comes back as different code (pinned URLs, logs and snapshots name versions).
  CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    last_version INTEGER NOT NULL
  );
`;

// v2: scaling overrides (fnctl scale), one row per function.
const SCHEMA_V2 = `
  CREATE TABLE scaling (
    name TEXT PRIMARY KEY,
    min INTEGER NOT NULL,
    max INTEGER NOT NULL,
    standby INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
`;

interface VersionRow {
  name: string;
  version: number;
  hash: string;
  bundle_sha256: string;
  bundle_bytes: number;
  settings: string;
  info: string;
  created_at: number;
}

interface FunctionRow {
  name: string;
  current_version: number;
  created_at: number;
  updated_at: number;
}

/** The hash that identifies a version's content: same bundle and same settings, same hash. */
export function versionHash(bundleSha256: string, settings: Settings): string {
  return createHash('sha256').update(`${bundleSha256}\n${canonicalJson(settings)}`).digest('hex');
}

/** JSON with object keys sorted at every level, so equal values give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const obj = v as Record<string, unknown>;
    return Object.fromEntries(Object.keys(obj).sort().map((k) => [k, obj[k]]));
  });
}

export class Registry {
  readonly dataDir: string;
  readonly bundlesDir: string;
  private readonly db: Database.Database;
  private readonly now: () => number;
  private readonly graceMs: number;
  /** Bundles stored by this process and when: remove() leaves them for the deploy in flight. */
  private readonly recentlyStored = new Map<string, number>();
  private readonly statements = new Map<string, Database.Statement>();

  static open(dataDir: string, options: RegistryOptions = {}): Registry {
    return new Registry(dataDir, options);
  }

  private constructor(dataDir: string, options: RegistryOptions) {
    this.dataDir = path.resolve(dataDir);
    this.bundlesDir = path.join(this.dataDir, 'bundles');
    this.now = options.now ?? Date.now;
    this.graceMs = options.bundleGraceMs ?? DEFAULT_GRACE_MS;
    mkdirSync(this.bundlesDir, { recursive: true, mode: 0o700 });
    this.db = new Database(path.join(this.dataDir, 'registry.db'));
    try {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('foreign_keys = ON');
      // Another process (a second `fnctl up`, a test) may hold the write lock for a moment.
      this.db.pragma('busy_timeout = 5000');
      this.migrate();
    } catch (err) {
      this.db.close();
      throw err;
    }
    this.sweepBundles();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    if (current > SCHEMA_VERSION) {
      throw new FnError(
        'INTERNAL',
        `${path.join(this.dataDir, 'registry.db')} has schema version ${current}, newer than this fnctl supports (${SCHEMA_VERSION})`,
      );
    }
    if (current === SCHEMA_VERSION) return;
    this.db.transaction(() => {
      if (current < 1) this.db.exec(SCHEMA_V1);
      if (current < 2) this.db.exec(SCHEMA_V2);
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    }).immediate();
  }

  /** Write a bundle under its sha256: temp file, fsync, rename, so no reader sees half a file. */
  storeBundle(bundle: Buffer): StoredBundle {
    const sha256 = createHash('sha256').update(bundle).digest('hex');
    const file = this.bundlePath(sha256);
    this.recentlyStored.set(sha256, this.now());
    if (existsSync(file) && statSync(file).size === bundle.length) return { sha256, path: file, bytes: bundle.length };

    const tmp = path.join(this.bundlesDir, `.${sha256}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      let off = 0;
      while (off < bundle.length) off += writeSync(fd, bundle, off, bundle.length - off);
      fsyncSync(fd);
    } catch (err) {
      closeSync(fd);
      unlinkSync(tmp);
      throw err;
    }
    closeSync(fd);
    chmodSync(tmp, 0o444);
    renameSync(tmp, file);
    fsyncDir(this.bundlesDir);
    return { sha256, path: file, bytes: bundle.length };
  }

  bundlePath(sha256: string): string {
    return path.join(this.bundlesDir, `${sha256}.cjs`);
  }

  /**
   * Create the function if new, give out the next version number, insert the version and make it
   * current, all in one transaction. The same bundle and settings as the current version create
   * nothing: that version comes back with unchanged: true.
   */
  publish(
    name: string,
    input: { bundleSha256: string; settings: Settings; info: VersionInfo },
  ): { version: VersionRecord; unchanged: boolean } {
    validateName(name);
    const settings = resolveSettings(input.settings);
    const file = this.bundlePath(input.bundleSha256);
    if (!/^[0-9a-f]{64}$/.test(input.bundleSha256) || !existsSync(file)) {
      throw new FnError('INVALID_BUNDLE', `bundle ${input.bundleSha256} is not stored: call storeBundle first`);
    }
    const bytes = statSync(file).size;
    const hash = versionHash(input.bundleSha256, settings);
    const info = JSON.stringify(input.info);

    return this.db.transaction(() => {
      const now = this.now();
      const fn = this.sql('SELECT * FROM functions WHERE name = ?').get(name) as FunctionRow | undefined;
      if (fn) {
        const current = this.versionRow(name, fn.current_version);
        if (current?.hash === hash) return { version: this.toVersion(current), unchanged: true };
      }
      const counter = this.sql('SELECT last_version FROM counters WHERE name = ?').get(name) as
        | { last_version: number }
        | undefined;
      const version = (counter?.last_version ?? 0) + 1;
      this.sql(
        `INSERT INTO counters (name, last_version) VALUES (?, ?)
         ON CONFLICT (name) DO UPDATE SET last_version = excluded.last_version`,
      ).run(name, version);
      this.sql(
        `INSERT INTO versions (name, version, hash, bundle_sha256, bundle_bytes, settings, info, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(name, version, hash, input.bundleSha256, bytes, JSON.stringify(settings), info, now);
      if (fn) {
        this.sql('UPDATE functions SET current_version = ?, updated_at = ? WHERE name = ?').run(version, now, name);
      } else {
        this.sql('INSERT INTO functions (name, current_version, created_at, updated_at) VALUES (?, ?, ?, ?)').run(
          name, version, now, now,
        );
      }
      return { version: this.toVersion(this.versionRow(name, version)!), unchanged: false };
    }).immediate();
  }

  getFunction(name: string): FunctionRecord | undefined {
    const row = this.sql('SELECT * FROM functions WHERE name = ?').get(name) as FunctionRow | undefined;
    return row && toFunction(row);
  }

  listFunctions(): FunctionRecord[] {
    return (this.sql('SELECT * FROM functions ORDER BY name').all() as FunctionRow[]).map(toFunction);
  }

  getVersion(name: string, version: number): VersionRecord | undefined {
    const row = this.versionRow(name, version);
    return row && this.toVersion(row);
  }

  currentVersion(name: string): VersionRecord | undefined {
    const row = this.sql(
      `SELECT v.* FROM versions v JOIN functions f ON f.name = v.name AND f.current_version = v.version
       WHERE f.name = ?`,
    ).get(name) as VersionRow | undefined;
    return row && this.toVersion(row);
  }

  /** Every version of NAME, oldest first. */
  listVersions(name: string): VersionRecord[] {
    const rows = this.sql('SELECT * FROM versions WHERE name = ? ORDER BY version').all(name) as VersionRow[];
    return rows.map((r) => this.toVersion(r));
  }

  /** The highest version below the current one: where `fnctl rollback NAME` goes. */
  previousVersion(name: string): VersionRecord | undefined {
    const row = this.sql(
      `SELECT v.* FROM versions v JOIN functions f ON f.name = v.name
       WHERE v.name = ? AND v.version < f.current_version ORDER BY v.version DESC LIMIT 1`,
    ).get(name) as VersionRow | undefined;
    return row && this.toVersion(row);
  }

  /** Point NAME at an existing VERSION (rollback, or forward again). */
  setCurrent(name: string, version: number): VersionRecord {
    return this.db.transaction(() => {
      this.requireFunction(name);
      const row = this.versionRow(name, version);
      if (!row) throw new FnError('VERSION_NOT_FOUND', `function ${name} has no version ${version}`);
      this.sql('UPDATE functions SET current_version = ?, updated_at = ? WHERE name = ?').run(version, this.now(), name);
      return this.toVersion(row);
    }).immediate();
  }

  /** Merge INFO into a version's metadata (e.g. the snapshot built after publish). */
  updateVersionInfo(name: string, version: number, info: Partial<VersionInfo>): VersionRecord {
    return this.db.transaction(() => {
      const row = this.versionRow(name, version);
      if (!row) {
        this.requireFunction(name);
        throw new FnError('VERSION_NOT_FOUND', `function ${name} has no version ${version}`);
      }
      const merged = { ...(JSON.parse(row.info) as VersionInfo), ...info };
      this.sql('UPDATE versions SET info = ? WHERE name = ? AND version = ?').run(JSON.stringify(merged), name, version);
      return this.toVersion({ ...row, info: JSON.stringify(merged) });
    }).immediate();
  }

  /** The scaling override of NAME, if `fnctl scale` set one. */
  getScaling(name: string): ScalingOverride | undefined {
    const row = this.sql('SELECT min, max, standby, updated_at FROM scaling WHERE name = ?').get(name) as
      | { min: number; max: number; standby: number; updated_at: number }
      | undefined;
    return row && { min: row.min, max: row.max, standby: row.standby, updatedAt: row.updated_at };
  }

  /** Set NAME's scaling override (the caller has validated it against the current version). */
  setScaling(name: string, scaling: Omit<ScalingOverride, 'updatedAt'>): ScalingOverride {
    const updatedAt = this.now();
    this.db.transaction(() => {
      this.requireFunction(name);
      this.sql(
        `INSERT INTO scaling (name, min, max, standby, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET min = excluded.min, max = excluded.max, standby = excluded.standby, updated_at = excluded.updated_at`,
      ).run(name, scaling.min, scaling.max, scaling.standby, updatedAt);
    }).immediate();
    return { ...scaling, updatedAt };
  }

  /** Drop NAME's scaling override; true when there was one. */
  clearScaling(name: string): boolean {
    return this.sql('DELETE FROM scaling WHERE name = ?').run(name).changes > 0;
  }

  /** Delete NAME and its versions; then delete the bundles nothing references any more. */
  remove(name: string): void {
    const shas = this.db.transaction(() => {
      this.requireFunction(name);
      const rows = this.sql('SELECT DISTINCT bundle_sha256 AS sha FROM versions WHERE name = ?').all(name) as { sha: string }[];
      this.sql('DELETE FROM versions WHERE name = ?').run(name);
      this.sql('DELETE FROM functions WHERE name = ?').run(name);
      this.sql('DELETE FROM scaling WHERE name = ?').run(name);
      return rows.map((r) => r.sha);
    }).immediate();
    // After the commit: a crash in between leaves an unreferenced file, swept at the next open.
    for (const sha of shas) this.deleteBundleIfUnused(sha);
  }

  /**
   * Remove temp files left by a crash in storeBundle, and bundles no version references (a deploy
   * that crashed before publish) once they are older than the grace period.
   */
  sweepBundles(): { removed: string[] } {
    const removed: string[] = [];
    const cutoff = this.now() - this.graceMs;
    for (const entry of readdirSync(this.bundlesDir)) {
      const file = path.join(this.bundlesDir, entry);
      if (entry.endsWith('.tmp')) {
        if (unlinkQuietly(file)) removed.push(entry);
        continue;
      }
      const m = /^([0-9a-f]{64})\.cjs$/.exec(entry);
      if (!m) continue;
      let mtime: number;
      try {
        mtime = statSync(file).mtimeMs;
      } catch {
        continue;
      }
      if (mtime <= cutoff && this.deleteBundleIfUnused(m[1]!)) removed.push(entry);
    }
    return { removed };
  }

  private deleteBundleIfUnused(sha: string): boolean {
    const stored = this.recentlyStored.get(sha);
    if (stored !== undefined && this.now() - stored < this.graceMs) return false;
    const used = this.sql('SELECT 1 FROM versions WHERE bundle_sha256 = ? LIMIT 1').get(sha);
    if (used) return false;
    this.recentlyStored.delete(sha);
    return unlinkQuietly(this.bundlePath(sha));
  }

  /** Prepared once per SQL text: lookups sit on the gateway's routing path. */
  private sql(text: string): Database.Statement {
    let stmt = this.statements.get(text);
    if (!stmt) {
      stmt = this.db.prepare(text);
      this.statements.set(text, stmt);
    }
    return stmt;
  }

  private requireFunction(name: string): FunctionRow {
    const row = this.sql('SELECT * FROM functions WHERE name = ?').get(name) as FunctionRow | undefined;
    if (!row) throw new FnError('FUNCTION_NOT_FOUND', `function ${name} does not exist`);
    return row;
  }

  private versionRow(name: string, version: number): VersionRow | undefined {
    return this.sql('SELECT * FROM versions WHERE name = ? AND version = ?').get(name, version) as VersionRow | undefined;
  }

  private toVersion(row: VersionRow): VersionRecord {
    return {
      name: row.name,
      version: row.version,
      hash: row.hash,
      bundleSha256: row.bundle_sha256,
      bundlePath: this.bundlePath(row.bundle_sha256),
      bundleBytes: row.bundle_bytes,
      settings: JSON.parse(row.settings) as Settings,
      info: JSON.parse(row.info) as VersionInfo,
      createdAt: row.created_at,
    };
  }
}

function toFunction(row: FunctionRow): FunctionRecord {
  return { name: row.name, currentVersion: row.current_version, createdAt: row.created_at, updatedAt: row.updated_at };
}

/** Make a rename durable: the directory entry must reach the disk, not only the file's data. */
function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; the file's own fsync is the best they allow.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function unlinkQuietly(file: string): boolean {
  try {
    unlinkSync(file);
    return true;
  } catch {
    return false;
  }
}
