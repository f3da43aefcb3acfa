// The snapshots module's public face: build a function's V8 startup snapshot, store it content-
// addressed, verify it before a microVM is restored from it.
export { buildSnapshot, type BuildInput, type BuildNotSnapshotable, type BuildOk, type BuildResult, type NotSnapshotableKind, type SpawnSpec } from './builder.js';
export {
  SNAPSHOT_FORMAT_VERSION,
  SNAPSHOT_MAGIC,
  clearVerifyCache,
  hashFile,
  makeMeta,
  readMeta,
  snapshotKey,
  verifySnapshot,
  type SnapshotMeta,
  type VerifyResult,
} from './format.js';
export { SnapshotStore, type SnapshotStoreOptions, type StoreBuildResult, type StoredSnapshot } from './store.js';
