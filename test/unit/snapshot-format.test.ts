// Unit tests of the snapshot format: metadata, content-address keys and verifySnapshot, with one
// test per mismatch (each has its own message naming the file). The blob is any bytes here.
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { guestNodeFlags } from '../../microvm/microvm.js';
import { SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC, clearVerifyCache, hashFile, makeMeta, snapshotKey, verifySnapshot, type SnapshotMeta } from '../../snapshots/format.js';

let dir: string;
let blobPath: string;
let metaPath: string;
let meta: SnapshotMeta;
const BUNDLE = 'b'.repeat(64);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fnctl-format-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  clearVerifyCache();
  blobPath = join(dir, 'x.blob');
  metaPath = join(dir, 'x.json');
  await writeFile(blobPath, randomBytes(64 * 1024));
  const { sha256, bytes } = await hashFile(blobPath);
  meta = makeMeta({ memoryMib: 128, sha256, blobBytes: bytes, initMs: 312.345, buildMs: 900, bundleSha256: BUNDLE, style: 'fetch', createdAt: new Date('2026-01-02T03:04:05Z') });
  await writeFile(metaPath, JSON.stringify(meta));
});

async function reason(m: SnapshotMeta | string, options?: { memoryMib?: number; bundleSha256?: string }): Promise<string> {
  const r = await verifySnapshot(m, blobPath, options);
  if (r.ok) throw new Error('verified');
  return r.reason;
}

describe('makeMeta and snapshotKey', () => {
  it('records the running node, V8, arch, platform and the microVM flags', () => {
    expect(meta).toEqual({
      magic: SNAPSHOT_MAGIC,
      formatVersion: SNAPSHOT_FORMAT_VERSION,
      node: process.version,
      v8: process.versions.v8,
      arch: process.arch,
      platform: process.platform,
      flags: guestNodeFlags({ memoryMib: 128 }),
      memoryMib: 128,
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
      blobBytes: 64 * 1024,
      initMs: 312.3,
      buildMs: 900,
      createdAt: '2026-01-02T03:04:05.000Z',
      bundleSha256: BUNDLE,
      style: 'fetch',
    });
  });

  it('gives a key per bundle and per flag set, stable across calls', () => {
    const k = snapshotKey(BUNDLE, 128);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(snapshotKey(BUNDLE, 128)).toBe(k);
    expect(snapshotKey('c'.repeat(64), 128)).not.toBe(k);
    expect(snapshotKey(BUNDLE, 256)).not.toBe(k);
  });
});

describe('verifySnapshot', () => {
  it('accepts a good snapshot from its metadata file or object, and hashes it once', async () => {
    const first = await verifySnapshot(metaPath, blobPath);
    expect(first).toEqual({ ok: true, meta, hashed: true });
    expect(await verifySnapshot(meta, blobPath, { memoryMib: 128, bundleSha256: BUNDLE })).toEqual({ ok: true, meta, hashed: false });
  });

  it('rejects missing, unreadable and foreign metadata', async () => {
    expect(await reason(join(dir, 'none.json'))).toBe(`snapshot metadata ${join(dir, 'none.json')} is missing`);
    await writeFile(metaPath, '{"magic": ');
    expect(await reason(metaPath)).toMatch(new RegExp(`^snapshot metadata ${metaPath} is not valid JSON: `));
    await writeFile(metaPath, '[1]');
    expect(await reason(metaPath)).toBe(`snapshot metadata ${metaPath} is not a JSON object`);
    await writeFile(metaPath, JSON.stringify({ ...meta, magic: 'firecracker' }));
    expect(await reason(metaPath)).toBe(`${metaPath} is not fnctl snapshot metadata (magic "firecracker", expected "fnctl-snapshot")`);
  });

  it('rejects another format version', async () => {
    expect(await reason({ ...meta, formatVersion: 2 })).toBe(`snapshot ${blobPath} has format version 2, this fnctl reads version 1`);
  });

  it('rejects another node, V8, arch or platform', async () => {
    expect(await reason({ ...meta, node: 'v20.1.0' })).toBe(`snapshot ${blobPath} was built by node v20.1.0, this is ${process.version}`);
    expect(await reason({ ...meta, v8: '9.9.9' })).toBe(`snapshot ${blobPath} was built by V8 9.9.9, this node has V8 ${process.versions.v8}`);
    const other = process.arch === 'arm64' ? 'x64' : 'arm64';
    expect(await reason({ ...meta, arch: other })).toBe(`snapshot ${blobPath} was built for ${process.platform}-${other}, this is ${process.platform}-${process.arch}`);
    expect(await reason({ ...meta, platform: 'darwin' })).toBe(`snapshot ${blobPath} was built for darwin-${process.arch}, this is ${process.platform}-${process.arch}`);
  });

  it('rejects heap flags other than the microVM’s', async () => {
    const flags = guestNodeFlags({ memoryMib: 128 }).join(' ');
    expect(await reason({ ...meta, flags: ['--max-old-space-size=64'] })).toBe(
      `snapshot ${blobPath} was built with node flags [--max-old-space-size=64], a microVM of 128 MiB runs with [${flags}]`,
    );
    // Built for 128 MiB, asked for a 256 MiB microVM.
    expect(await reason(meta, { memoryMib: 256 })).toBe(
      `snapshot ${blobPath} was built with node flags [${flags}], a microVM of 256 MiB runs with [${guestNodeFlags({ memoryMib: 256 }).join(' ')}]`,
    );
  });

  it('rejects a snapshot of another bundle', async () => {
    expect(await reason(meta, { bundleSha256: 'c'.repeat(64) })).toBe(`snapshot ${blobPath} was built from bundle ${BUNDLE}, expected ${'c'.repeat(64)}`);
  });

  it('rejects a missing or truncated blob', async () => {
    await writeFile(blobPath, randomBytes(100));
    expect(await reason(meta)).toBe(`snapshot ${blobPath} is 100 bytes, its metadata says 65536 (truncated or replaced)`);
    await rm(blobPath);
    expect(await reason(meta)).toBe(`snapshot ${blobPath} is missing`);
  });

  it('rejects a flipped byte, also after an earlier check passed', async () => {
    expect((await verifySnapshot(meta, blobPath)).ok).toBe(true);
    // File timestamps are coarse: let the clock move on, as it does between a check and corruption.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const fh = await open(blobPath, 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 1000);
    b[0] = b[0]! ^ 0x01;
    await fh.write(b, 0, 1, 1000);
    await fh.close();
    expect(await reason(meta)).toMatch(new RegExp(`^snapshot ${blobPath} does not match its sha256 \\(corrupt\\): expected ${meta.sha256}, got [0-9a-f]{64}$`));
  });
});
