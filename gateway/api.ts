// The control API (hono): deploy, list, inspect, scale, roll back and remove functions, read their logs.
// It turns HTTP into calls on the Platform and never touches microVM state itself.
import { Hono, type Context } from 'hono';
import { createHash, timingSafeEqual } from 'node:crypto';
import { streamText } from 'hono/streaming';
import { FnError, toFnError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { parsePartialSettings, type Settings } from '../functions/settings.js';
import type { ConsoleRecord } from '../microvm/types.js';
import type { Platform } from './platform.js';
import { errorBody, httpStatusByCode } from './errors.js';

export interface ApiOptions {
  platform: Platform;
  token: string;
  log: Logger;
  /** The gateway's own URL, for the function URLs in responses. */
  baseUrl: () => string;
}

export function createApi({ platform, token, log, baseUrl }: ApiOptions): Hono {
  const app = new Hono();

  app.onError((err, c) => {
    const e = toFnError(err);
    if (e.code === 'INTERNAL') log.error({ err }, 'control API error');
    return c.body(errorBody(e, undefined), httpStatusByCode[e.code] as 500, { 'content-type': 'application/json' });
  });
  app.notFound((c) => fail(c, new FnError('INVALID_REQUEST', `no route ${c.req.method} ${c.req.path}`), 404));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/metrics', async (c) => c.body(await platform.metrics.text(), 200, { 'content-type': platform.metrics.contentType }));

  app.use('/api/*', async (c, next) => {
    const header = c.req.header('authorization');
    if (!header) throw new FnError('UNAUTHORIZED', 'missing bearer token: pass --token or set FNCTL_TOKEN (see gateway.json)');
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match || !tokenMatches(match[1]!, token)) throw new FnError('UNAUTHORIZED', 'invalid bearer token');
    await next();
  });

  const urlOf = (name: string) => `${baseUrl()}/fn/${name}`;

  app.get('/api/functions', (c) => c.json({ functions: platform.list().map((f) => ({ ...f, url: urlOf(f.name) })) }));

  app.get('/api/functions/:name', (c) => {
    const name = c.req.param('name');
    const summary = platform.describe(name);
    const versions = platform.versions(name).map(({ version, hash, bundleBytes, createdAt, settings, info }) => ({
      version,
      hash,
      bundleBytes,
      createdAt,
      settings,
      info,
      current: version === summary.version,
    }));
    return c.json({ function: { ...summary, url: urlOf(name) }, versions });
  });

  app.post('/api/functions/:name/versions', async (c) => {
    const name = c.req.param('name');
    const body = await readJson(c);
    if (typeof body.bundle !== 'string' || body.bundle.length === 0) {
      throw new FnError('INVALID_REQUEST', 'deploy body needs "bundle": the bundled function, base64');
    }
    const settings = parsePartialSettings(body.settings, 'invalid settings');
    const result = await platform.deploy({ name, bundle: Buffer.from(body.bundle, 'base64'), settings });
    return c.json({ ...result, url: urlOf(name) }, result.unchanged ? 200 : 201);
  });

  // fnctl scale: {min?, max?, standby?}, each checked by the deploy settings' rules.
  app.patch('/api/functions/:name/scaling', async (c) => {
    const name = c.req.param('name');
    const change = parseScalingChange(await readJson(c));
    return c.json(await platform.scale(name, change));
  });

  app.post('/api/functions/:name/rollback', async (c) => {
    const name = c.req.param('name');
    const body = await readJson(c, true);
    const version = body.version;
    if (version !== undefined && (typeof version !== 'number' || !Number.isInteger(version) || version < 1)) {
      throw new FnError('INVALID_REQUEST', `version = ${JSON.stringify(version)}, must be a version number like 3`);
    }
    const record = await platform.rollback(name, version as number | undefined);
    return c.json({ name, version: record.version, hash: record.hash, url: urlOf(name) });
  });

  app.delete('/api/functions/:name', async (c) => {
    await platform.remove(c.req.param('name'));
    return c.json({ removed: c.req.param('name') });
  });

  app.get('/api/functions/:name/instances', (c) => {
    const name = c.req.param('name');
    const now = Date.now();
    const instances = platform.instances(name).map((i) => ({
      id: i.id,
      version: i.version,
      state: i.state,
      start: i.start,
      pid: i.pid,
      ageMs: now - i.createdAt,
      idleMs: i.inflight > 0 ? 0 : now - i.lastUsedAt,
      inflight: i.inflight,
      invocations: i.invocations,
      memoryBytes: i.rssBytes,
    }));
    return c.json({ name, instances });
  });

  app.delete('/api/functions/:name/instances', async (c) => {
    const name = c.req.param('name');
    return c.json({ name, stopped: await platform.stopInstances(name) });
  });

  app.get('/api/functions/:name/logs', (c) => {
    const name = c.req.param('name');
    platform.describe(name);
    const limit = Number(c.req.query('limit') ?? 200);
    const requestId = c.req.query('requestId');
    const follow = c.req.query('follow') === '1' || c.req.query('follow') === 'true';
    const recent = platform.logs.recent(name, { limit: Number.isFinite(limit) && limit > 0 ? limit : 200, ...(requestId ? { requestId } : {}) });
    c.header('content-type', 'application/x-ndjson');
    if (!follow) return c.body(recent.map((r) => JSON.stringify(r) + '\n').join(''));
    return streamText(c, async (stream) => {
      for (const r of recent) await stream.write(JSON.stringify(r) + '\n');
      await new Promise<void>((resolve) => {
        const unsubscribe = platform.logs.follow(name, (r: ConsoleRecord) => {
          if (!requestId || r.requestId === requestId) void stream.write(JSON.stringify(r) + '\n');
        });
        stream.onAbort(() => {
          unsubscribe();
          resolve();
        });
      });
    });
  });

  return app;
}

const SCALING_KEYS = ['min', 'max', 'standby'] as const;

/** A scaling change: some of min, max and standby, by the settings schema's rules, and nothing else. */
export function parseScalingChange(body: Record<string, unknown>): Partial<Pick<Settings, (typeof SCALING_KEYS)[number]>> {
  const parsed = parsePartialSettings(body, 'invalid scaling');
  const other = Object.keys(parsed).filter((k) => !(SCALING_KEYS as readonly string[]).includes(k));
  if (other.length > 0) {
    throw new FnError('INVALID_SETTING', `invalid scaling: ${other.join(', ')} cannot be changed by scale, only min, max and standby: deploy a new version for the rest`);
  }
  if (Object.keys(parsed).length === 0) throw new FnError('INVALID_SETTING', 'invalid scaling: nothing to change: give min, max or standby');
  const change: Partial<Pick<Settings, (typeof SCALING_KEYS)[number]>> = {};
  for (const k of SCALING_KEYS) if (parsed[k] !== undefined) change[k] = parsed[k];
  return change;
}

function tokenMatches(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function fail(c: Context, err: FnError, status?: number) {
  return c.body(errorBody(err, undefined), (status ?? httpStatusByCode[err.code]) as 500, { 'content-type': 'application/json' });
}

async function readJson(c: Context, optional = false): Promise<Record<string, unknown>> {
  const text = await c.req.text();
  if (!text && optional) return {};
  try {
    const value: unknown = JSON.parse(text);
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // fall through to the error below
  }
  throw new FnError('INVALID_REQUEST', 'request body must be a JSON object');
}
