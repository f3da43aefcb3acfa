// The snapshot store: content-addressed files under `<dataDir>/snapshots/`, `<key>.blob` and its
// metadata `<key>.json`, where the key hashes the bundle with the node, V8, arch and node flags
// that a blob depends on (format.ts snapshotKey). A node upgrade therefore looks up a new key and
// finds nothing: the caller rebuilds, with no version check of its own. A blob is written under a
// temp name, fsync'd and renamed; its metadata goes last and is the commit record, so a crash at
// any point leaves either a complete snapshot or one that get() discards.
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { chmod, mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FnError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { buildSnapshot, type BuildInput, type BuildNotSnapshotable, type BuildOk } from './builder.js';
import { fileIdentity, hashFile, makeMeta, noteVerified, snapshotKey, verifySnapshot, type SnapshotMeta } from './format.js';

export interface StoredSnapshot {
  key: string;
  blobPath: string;
  metaPath: string;
  meta: SnapshotMeta;
}

export type StoreBuildResult = { status: 'ok'; snapshot: StoredSnapshot; build: BuildOk } | BuildNotSnapshotable;

/** A builder's command wrapped in a jail, with what must run before the spawn and after the exit. */
export interface JailedBuild {
  command: string;
  args: string[];
  prepare(): void;
  cleanup(): Promise<unknown>;
}

export interface SnapshotStoreOptions {
  log?: Logger;
  /** Wraps the builder's command (a plain wrapper, without setup or cleanup). */
  spawnArgs?: BuildInput['spawnArgs'];
  /** Builds inside the microVMs' jail: snapshots are taken under the same isolation they run in. */
  jail?: (plain: { command: string; args: string[] }, input: { bundlePath: string; outPath: string; memoryMib: number }) => JailedBuild;
  serializeTimeoutMs?: number;
}

const TMP_PREFIX = '.tmp-';

export class SnapshotStore {
  private readonly building = new Map<string, Promise<StoreBuildResult>>();
  private readonly verifying = new Map<string, Promise<StoredSnapshot | undefined>>();
  /**
   * Snapshots that passed check(), with the identity of their two files as they were checked.
   * get() hands one out again after two stats while neither file changed: a pool made for a
   * start from zero then waits for no reads (the full check cost ~0.7 ms before each such start).
   */
  private readonly good = new Map<string, { snapshot: StoredSnapshot; files: string | undefined }>();

  private constructor(
    readonly dir: string,
    private readonly options: SnapshotStoreOptions,
  ) {}

  static async open(dataDir: string, options: SnapshotStoreOptions = {}): Promise<SnapshotStore> {
    const dir = join(dataDir, 'snapshots');
    await mkdir(dir, { recursive: true });
    // Leftovers of builds that a crash interrupted: never visible under a key, safe to drop.
    for (const name of await readdir(dir)) {
      if (name.startsWith(TMP_PREFIX)) await rm(join(dir, name), { force: true });
    }
    return new SnapshotStore(dir, options);
  }

  key(bundleSha256: string, memoryMib: number): string {
    return snapshotKey(bundleSha256, memoryMib);
  }

  paths(key: string): { blobPath: string; metaPath: string } {
    return { blobPath: join(this.dir, `${key}.blob`), metaPath: join(this.dir, `${key}.json`) };
  }

  /**
   * The verified snapshot of this bundle for this node and memory size, or undefined. A snapshot
   * that fails verification is logged, deleted, and reported as absent, so the caller rebuilds it
   * and no microVM is ever restored from it.
   */
  get(bundleSha256: string, memoryMib: number): Promise<StoredSnapshot | undefined> {
    const key = this.key(bundleSha256, memoryMib);
    const known = this.good.get(key);
    if (known?.files !== undefined && known.files === filesIdentity(known.snapshot)) return Promise.resolve(known.snapshot);
    let p = this.verifying.get(key);
    if (!p) {
      p = this.check(key, bundleSha256, memoryMib).finally(() => this.verifying.delete(key));
      this.verifying.set(key, p);
    }
    return p;
  }

  private async check(key: string, bundleSha256: string, memoryMib: number): Promise<StoredSnapshot | undefined> {
    const { blobPath, metaPath } = this.paths(key);
    const [blob, meta] = await Promise.all([exists(blobPath), exists(metaPath)]);
    if (!blob && !meta) return undefined;
    // Taken before the check: a file changed while it ran is checked again next time.
    const files = filesIdentity({ blobPath, metaPath });
    const result = await verifySnapshot(metaPath, blobPath, { memoryMib, bundleSha256 });
    if (result.ok) {
      // Handed out again to every caller: frozen, so that none can change it for the others.
      const snapshot = Object.freeze({ key, blobPath, metaPath, meta: Object.freeze(result.meta) });
      this.good.set(key, { snapshot, files });
      return snapshot;
    }
    this.options.log?.warn({ key, blob: blobPath, reason: result.reason }, 'snapshot failed verification: deleted, it will be rebuilt');
    await this.delete(key);
    return undefined;
  }

  /** get(), else build(): what a pool calls before restoring a version's first microVM. */
  async ensure(bundlePath: string, bundleSha256: string, memoryMib: number, initTimeoutMs: number): Promise<StoreBuildResult> {
    const found = await this.get(bundleSha256, memoryMib);
    if (found) return { status: 'ok', snapshot: found, build: builtFrom(found) };
    return this.build(bundlePath, bundleSha256, memoryMib, initTimeoutMs);
  }

  /**
   * Build the snapshot of a bundle and store it. Concurrent builds of one key share one run.
   * Throws as buildSnapshot does (INIT_FAILED, INVALID_BUNDLE, SNAPSHOT_FAILED).
   */
  build(bundlePath: string, bundleSha256: string, memoryMib: number, initTimeoutMs: number): Promise<StoreBuildResult> {
    const key = this.key(bundleSha256, memoryMib);
    let p = this.building.get(key);
    if (!p) {
      p = this.buildNow(key, bundlePath, bundleSha256, memoryMib, initTimeoutMs).finally(() => this.building.delete(key));
      this.building.set(key, p);
    }
    return p;
  }

  private async buildNow(key: string, bundlePath: string, bundleSha256: string, memoryMib: number, initTimeoutMs: number): Promise<StoreBuildResult> {
    const bundle = await hashFile(bundlePath);
    if (bundle.sha256 !== bundleSha256) {
      throw new FnError('INTERNAL', `bundle ${bundlePath} has sha256 ${bundle.sha256}, not ${bundleSha256}: a snapshot is stored under its bundle's hash`);
    }
    const { blobPath, metaPath } = this.paths(key);
    const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
    const tmpBlob = join(this.dir, `${TMP_PREFIX}${key}-${tag}.blob`);
    const tmpMeta = join(this.dir, `${TMP_PREFIX}${key}-${tag}.json`);
    let jailed: JailedBuild | undefined;
    try {
      const { spawnArgs, serializeTimeoutMs, jail } = this.options;
      const wrap = jail
        ? (plain: { command: string; args: string[] }) => {
            jailed = jail(plain, { bundlePath, outPath: tmpBlob, memoryMib });
            jailed.prepare();
            return jailed;
          }
        : spawnArgs;
      const result = await buildSnapshot({
        bundlePath, outPath: tmpBlob, memoryMib, initTimeoutMs,
        ...(wrap ? { spawnArgs: wrap } : {}),
        ...(serializeTimeoutMs !== undefined ? { serializeTimeoutMs } : {}),
      });
      await jailed?.cleanup();
      jailed = undefined;
      if (result.status !== 'ok') return result;
      // The jail writes the blob as its own uid; the stored blob is read-only for everyone.
      await chmod(tmpBlob, 0o444);
      await fsyncFile(tmpBlob);
      const { sha256, bytes } = await hashFile(tmpBlob);
      const meta = makeMeta({ memoryMib, sha256, blobBytes: bytes, initMs: result.initMs, buildMs: result.buildMs, bundleSha256, style: result.style });
      await rename(tmpBlob, blobPath);
      await writeFile(tmpMeta, `${JSON.stringify(meta, null, 2)}\n`);
      await fsyncFile(tmpMeta);
      await rename(tmpMeta, metaPath);
      await fsyncFile(this.dir);
      // Just hashed: the first restore need not hash it again.
      await noteVerified(blobPath, sha256);
      this.options.log?.info({ key, blobBytes: bytes, initMs: result.initMs, buildMs: Math.round(result.buildMs) }, 'snapshot built');
      return { status: 'ok', snapshot: { key, blobPath, metaPath, meta }, build: { ...result, blobPath } };
    } finally {
      await jailed?.cleanup();
      await Promise.all([rm(tmpBlob, { force: true }), rm(tmpMeta, { force: true })]);
    }
  }

  /**
   * Delete every snapshot but those of `keep` for this node: after a node upgrade the old keys are
   * never looked up again. Returns the keys deleted.
   */
  async prune(keep: Iterable<{ bundleSha256: string; memoryMib: number }>): Promise<string[]> {
    const live = new Set<string>();
    for (const k of keep) live.add(this.key(k.bundleSha256, k.memoryMib));
    const dead = new Set<string>();
    for (const name of await readdir(this.dir)) {
      const m = /^([0-9a-f]{64})\.(blob|json)$/.exec(name);
      if (m && !live.has(m[1]!) && !this.building.has(m[1]!)) dead.add(m[1]!);
    }
    for (const key of dead) await this.delete(key);
    return [...dead];
  }

  /** Delete the snapshot of a bundle (e.g. when its last version is removed). */
  async remove(bundleSha256: string, memoryMib: number): Promise<void> {
    await this.delete(this.key(bundleSha256, memoryMib));
  }

  private async delete(key: string): Promise<void> {
    const { blobPath, metaPath } = this.paths(key);
    this.good.delete(key);
    // Metadata first: without it the blob is never used, whatever happens next.
    await rm(metaPath, { force: true });
    await rm(blobPath, { force: true });
  }
}

/** The identity of a snapshot's blob and metadata files on disk (see fileIdentity), undefined when either is gone. */
function filesIdentity(s: { blobPath: string; metaPath: string }): string | undefined {
  try {
    return `${fileIdentity(statSync(s.blobPath))}|${fileIdentity(statSync(s.metaPath))}`;
  } catch {
    return undefined;
  }
}

/** A BuildOk describing a snapshot found in the store (no build ran now). */
function builtFrom(s: StoredSnapshot): BuildOk {
  const { meta } = s;
  return {
    status: 'ok', blobPath: s.blobPath, blobBytes: meta.blobBytes, initMs: meta.initMs, style: meta.style, flags: meta.flags,
    buildMs: meta.buildMs, pid: undefined, warnings: [], logs: [],
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
