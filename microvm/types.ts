// The shapes shared by the microVM engine, its pools and the gateway. A microVM's config is in
// Firecracker's terms (vcpus, memory, network, a read-only root holding the bundle).
import type { FlatHeaders, HandlerStyle } from '../core/protocol.js';

export type NetworkMode = 'none' | 'host';

export interface MicroVmConfig {
  /** Unique id of this microVM, e.g. "vm-hello-3-k2j4". */
  id: string;
  functionName: string;
  version: number;
  vcpus: number;
  memoryMib: number;
  network: NetworkMode;
  /** Read-only root: the single-file bundle (guest runtime + function). */
  rootfs: { bundlePath: string };
  /** The function's configured env, as process.env sees it at invocation. */
  env: Record<string, string>;
  /** Per-invocation time limit, ms. */
  timeoutMs: number;
  /** How long the guest may take to become ready (init), ms. */
  initTimeoutMs: number;
  /** Requests served at once. */
  concurrency: number;
}

export type MicroVmState =
  | 'created'
  | 'booting'
  | 'restoring'
  | 'idle'
  | 'busy'
  | 'paused'
  | 'stopping'
  | 'stopped'
  | 'failed';

/** How the microVM that served a request came to be (the x-fn-start header). */
export type StartKind = 'cold' | 'restore' | 'standby' | 'warm';

export interface InvokeRequest {
  requestId: string;
  method: string;
  path: string;
  query: string;
  headers: FlatHeaders;
  body: Buffer;
  sourceIp: string;
}

export interface InvokeResult {
  status: number;
  headers: FlatHeaders;
  body: Buffer;
  /** Handler duration measured in the guest, ms. */
  handlerMs: number;
  /** Guest resident memory after the handler, bytes. */
  rssBytes: number;
}

export interface BootInfo {
  pid: number;
  style: HandlerStyle;
  /** Module top-level time, ms (Lambda's Init Duration). */
  initMs: number;
  /** Spawn to ready as the host measured it, ms. */
  bootMs: number;
  restored: boolean;
  /**
   * The guest reads INVOKEs in the channel's fields form (it said so in READY). Every guest of
   * this runtime does; false only for bundles built before it, which get JSON.
   */
  fields: boolean;
}

/** Where a microVM's console goes: one call per console record (a line of stdout or stderr). */
export interface ConsoleSink {
  record(entry: ConsoleRecord): void;
  /**
   * A record given as its JSON line (exactly JSON.stringify of the record, ASCII only), for the
   * REPORT record of every invocation; `entry` makes the record object, should anyone need it.
   */
  recordLine?(functionName: string, line: string, entry: () => ConsoleRecord): void;
}

export interface ConsoleRecord {
  /** ms since epoch, as received by the host. */
  time: number;
  functionName: string;
  version: number;
  instance: string;
  stream: 'stdout' | 'stderr';
  /** Request id when the record was written during an invocation (from the guest's tag). */
  requestId?: string;
  level?: string;
  message: string;
}

/** A snapshot of one microVM for listings. */
export interface InstanceInfo {
  id: string;
  functionName: string;
  version: number;
  state: MicroVmState;
  start: StartKind;
  pid: number | undefined;
  createdAt: number;
  lastUsedAt: number;
  inflight: number;
  invocations: number;
  rssBytes: number;
}
