// Restore hooks, like Lambda SnapStart's: work that must not be frozen into the snapshot.
// `fnctl.beforeSnapshot(fn)` runs once, just before the snapshot is taken (close connections,
// drop secrets); `fnctl.afterRestore(fn)` runs in every microVM restored from it, before its
// first request (reconnect, refresh a token, reseed state of your own). Both may be async.
import { randomUUID } from 'node:crypto';

const state = { bootId: randomUUID(), restoredAt: null, connection: 'open' };

globalThis.fnctl?.beforeSnapshot(() => {
  state.connection = 'closed for the snapshot';
});

globalThis.fnctl?.afterRestore(async () => {
  state.connection = 'reopened';
  state.restoredAt = new Date().toISOString();
  // Each restored microVM gets its own id: randomness is reseeded on restore.
  state.instanceId = randomUUID();
});

export default {
  fetch() {
    return Response.json(state);
  },
};
