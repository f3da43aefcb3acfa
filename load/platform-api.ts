// What the benchmarks ask of a running platform, over its HTTP control API like any client:
// deploy an example, stop a function's microVMs so the next request starts from zero.
import path from 'node:path';
import { request } from 'undici';
import { packageFunction } from '../functions/package.js';
import { repoRoot } from './processes.js';

export interface PlatformTarget {
  url: string;
  token: string;
}

async function call(target: PlatformTarget, method: 'POST' | 'DELETE', pathname: string, body?: unknown): Promise<unknown> {
  const res = await request(`${target.url}${pathname}`, {
    method,
    headers: { authorization: `Bearer ${target.token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${pathname} failed (${res.statusCode}): ${text}`);
  return JSON.parse(text);
}

/** Deploy FILE (relative to the repo root) as NAME with these settings. */
export async function deployExample(target: PlatformTarget, name: string, file: string, settings: Record<string, unknown>): Promise<{ snapshot: { status: string } }> {
  const pkg = await packageFunction(path.join(repoRoot, file));
  return (await call(target, 'POST', `/api/functions/${name}/versions`, { bundle: pkg.bundle.toString('base64'), settings })) as { snapshot: { status: string } };
}

/** Stop every microVM of NAME; resolves once they are gone. */
export async function stopInstances(target: PlatformTarget, name: string): Promise<void> {
  await call(target, 'DELETE', `/api/functions/${name}/instances`);
}
