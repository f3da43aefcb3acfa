// The snapshot format: a V8 startup blob plus a metadata file beside it, versioned the way
// Firecracker versions its snapshot files. The blob only loads into the node binary, V8 and heap
// flags that made it (V8 refuses others with exit code 14, or worse), so the metadata records
// them, and verifySnapshot() checks each against the running node before a microVM is restored.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import type { HandlerStyle } from '../core/protocol.js';
import { guestNodeFlags } from '../microvm/microvm.js';

export const SNAPSHOT_MAGIC = 'fnctl-snapshot';
/** Bump when the metadata or the guest's snapshot protocol changes: older snapshots are rebuilt. */
export const SNAPSHOT_FORMAT_VERSION = 1;

export interface SnapshotMeta {
  magic: typeof SNAPSHOT_MAGIC;
  formatVersion: number;
  /** process.version of the node that built it, e.g. "v20.20.2". */
  node: string;
  /** process.versions.v8 of that node. */
  v8: string;
  arch: string;
  platform: string;
  /** The node flags it was built with: exactly the microVM's (guestNodeFlags), which it must run with. */
  flags: string[];
  memoryMib: number;
  /** sha256 (hex) and size of the blob. */
  sha256: string;
  blobBytes: number;
  /** The function's module top level, as the guest measured it during the build. */
  initMs: number;
  /** The whole `node --build-snapshot` run, spawn to exit. */
  buildMs: number;
  /** ISO 8601. */
  createdAt: string;
  bundleSha256: string;
  style: HandlerStyle;
}

export type VerifyResult = { ok: true; meta: SnapshotMeta; hashed: boolean } | { ok: false; reason: string; meta?: SnapshotMeta };

/** The running node's half of the metadata: what a snapshot must have been built by to load here. */
export function runtimeIdentity(memoryMib: number): Pick<SnapshotMeta, 'node' | 'v8' | 'arch' | 'platform' | 'flags' | 'memoryMib'> {
  return { node: process.version, v8: process.versions.v8, arch: process.arch, platform: process.platform, flags: guestNodeFlags({ memoryMib }), memoryMib };
}

/** The store's content address: a new node, V8, arch, flag set or format gives a new key. */
export function snapshotKey(bundleSha256: string, memoryMib: number): string {
  const id = runtimeIdentity(memoryMib);
  const parts = [SNAPSHOT_FORMAT_VERSION, bundleSha256, id.node, id.v8, id.arch, id.platform, id.flags];
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

export function makeMeta(input: {
  memoryMib: number;
  sha256: string;
  blobBytes: number;
  initMs: number;
  buildMs: number;
  bundleSha256: string;
  style: HandlerStyle;
  createdAt?: Date;
}): SnapshotMeta {
  const { memoryMib, sha256, blobBytes, initMs, buildMs, bundleSha256, style } = input;
  return {
    magic: SNAPSHOT_MAGIC,
    formatVersion: SNAPSHOT_FORMAT_VERSION,
    ...runtimeIdentity(memoryMib),
    sha256,
    blobBytes,
    initMs: round(initMs),
    buildMs: round(buildMs),
    createdAt: (input.createdAt ?? new Date()).toISOString(),
    bundleSha256,
    style,
  };
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** sha256 and size of a file, streamed: a 20 MB blob must not block the gateway's event loop in one piece. */
export async function hashFile(path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** Read and shape-check a metadata file; throws an Error whose message names the file. */
export async function readMeta(metaPath: string): Promise<SnapshotMeta> {
  let text: string;
  try {
    text = await readFile(metaPath, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `snapshot metadata ${metaPath} is missing` : `snapshot metadata ${metaPath} cannot be read: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`snapshot metadata ${metaPath} is not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`snapshot metadata ${metaPath} is not a JSON object`);
  return value as SnapshotMeta;
}

// Blobs whose sha256 matched, by identity of the file on disk. Any write to the file changes its
// ctime (which, unlike mtime, cannot be set back), so a flipped byte is always hashed again.
const verified = new Map<string, string>();

export function fileIdentity(s: { ino: number; size: number; mtimeMs: number; ctimeMs: number }): string {
  return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
}

/** Record that `blobPath` as it is now has `sha256` (its writer just hashed it). */
export async function noteVerified(blobPath: string, sha256: string): Promise<void> {
  verified.set(blobPath, `${fileIdentity(await stat(blobPath))}|${sha256}`);
}

/** Forget cached hash checks (tests; or after replacing files by hand). */
export function clearVerifyCache(): void {
  verified.clear();
}

/**
 * Check that `blobPath` can be restored by this node: magic, format version, node and V8 version,
 * arch and platform, the node flags the microVM runs with for `memoryMib` (default: the meta's),
 * the bundle when `bundleSha256` is given, then size and sha256 of the blob. Never throws: every
 * mismatch comes back as its own reason naming the file.
 *
 * The metadata checks are cheap and run every time. Hashing costs ~1-2.5 ms per MB (25-60 ms for a 23 MB blob here), so a blob whose
 * hash matched is not hashed again while its (inode, size, mtime, ctime) stay the same: callers
 * verify when a version's pool first uses a snapshot, and repeat calls are nearly free.
 */
export async function verifySnapshot(
  metaOrPath: SnapshotMeta | string,
  blobPath: string,
  options: { memoryMib?: number; bundleSha256?: string } = {},
): Promise<VerifyResult> {
  let meta: SnapshotMeta;
  try {
    meta = typeof metaOrPath === 'string' ? await readMeta(metaOrPath) : metaOrPath;
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  const fail = (reason: string): VerifyResult => ({ ok: false, reason, meta });
  const what = `snapshot ${blobPath}`;
  if (meta.magic !== SNAPSHOT_MAGIC) {
    const where = typeof metaOrPath === 'string' ? metaOrPath : blobPath;
    return fail(`${where} is not fnctl snapshot metadata (magic ${JSON.stringify(meta.magic)}, expected ${JSON.stringify(SNAPSHOT_MAGIC)})`);
  }
  if (meta.formatVersion !== SNAPSHOT_FORMAT_VERSION) {
    return fail(`${what} has format version ${String(meta.formatVersion)}, this fnctl reads version ${SNAPSHOT_FORMAT_VERSION}`);
  }
  if (meta.node !== process.version) return fail(`${what} was built by node ${String(meta.node)}, this is ${process.version}`);
  if (meta.v8 !== process.versions.v8) return fail(`${what} was built by V8 ${String(meta.v8)}, this node has V8 ${process.versions.v8}`);
  if (meta.arch !== process.arch || meta.platform !== process.platform) {
    return fail(`${what} was built for ${String(meta.platform)}-${String(meta.arch)}, this is ${process.platform}-${process.arch}`);
  }
  const memoryMib = options.memoryMib ?? meta.memoryMib;
  if (typeof memoryMib !== 'number' || !Number.isFinite(memoryMib)) return fail(`${what}: its metadata has no memory size`);
  const flags = guestNodeFlags({ memoryMib });
  if (!Array.isArray(meta.flags) || meta.flags.join(' ') !== flags.join(' ')) {
    return fail(`${what} was built with node flags [${Array.isArray(meta.flags) ? meta.flags.join(' ') : String(meta.flags)}], a microVM of ${memoryMib} MiB runs with [${flags.join(' ')}]`);
  }
  if (options.bundleSha256 !== undefined && meta.bundleSha256 !== options.bundleSha256) {
    return fail(`${what} was built from bundle ${String(meta.bundleSha256)}, expected ${options.bundleSha256}`);
  }
  let s;
  try {
    s = await stat(blobPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return fail(code === 'ENOENT' ? `${what} is missing` : `${what} cannot be read: ${(err as Error).message}`);
  }
  if (s.size !== meta.blobBytes) return fail(`${what} is ${s.size} bytes, its metadata says ${String(meta.blobBytes)} (truncated or replaced)`);
  const id = `${fileIdentity(s)}|${meta.sha256}`;
  if (verified.get(blobPath) === id) return { ok: true, meta, hashed: false };
  let sha256: string;
  try {
    ({ sha256 } = await hashFile(blobPath));
  } catch (err) {
    return fail(`${what} cannot be read: ${(err as Error).message}`);
  }
  if (sha256 !== meta.sha256) return fail(`${what} does not match its sha256 (corrupt): expected ${String(meta.sha256)}, got ${sha256}`);
  verified.set(blobPath, id);
  return { ok: true, meta, hashed: true };
}
