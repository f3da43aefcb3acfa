// How every command but `up` reaches the platform: --url/--token, else FNCTL_URL/FNCTL_TOKEN, else
// DIR/gateway.json; then plain HTTP through undici, as any other client would.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { request, type Dispatcher } from 'undici';

export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

export interface Target {
  url: string;
  token: string;
}

export interface TargetOptions {
  url?: string;
  token?: string;
  data?: string;
}

export function gatewayFile(dataDir: string): string {
  return path.join(path.resolve(dataDir), 'gateway.json');
}

export function findTarget(opts: TargetOptions): Target {
  // Empty values count as unset, so FNCTL_URL= in an environment does not hide gateway.json.
  let url = opts.url || process.env.FNCTL_URL || undefined;
  let token = opts.token || process.env.FNCTL_TOKEN || undefined;
  if (!url || !token) {
    const file = gatewayFile(opts.data ?? '.fnctl');
    try {
      const saved = JSON.parse(readFileSync(file, 'utf8')) as Partial<Target>;
      url ??= saved.url || undefined;
      token ??= saved.token || undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
    }
  }
  if (!url) throw new CliError('no platform found: start one with `fnctl up`, or pass --url and --token (or set FNCTL_URL and FNCTL_TOKEN)');
  return { url: url.replace(/\/+$/, ''), token: token ?? '' };
}

export interface ApiResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One HTTP call to the platform; network failures become one clear line. */
export async function call(
  target: Target,
  method: Dispatcher.HttpMethod,
  pathname: string,
  options: { body?: string | Buffer; headers?: Record<string, string>; auth?: boolean } = {},
): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.auth !== false && target.token) headers.authorization = `Bearer ${target.token}`;
  try {
    const res = await request(target.url + pathname, {
      method,
      headers,
      ...(options.body !== undefined ? { body: options.body } : {}),
      headersTimeout: 15 * 60 * 1000,
      bodyTimeout: 15 * 60 * 1000,
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new CliError(`cannot reach the platform at ${target.url} (${code}): is \`fnctl up\` running?`);
  }
}

/** Call the control API and return its JSON, or throw the API's error message. */
export async function api<T = Record<string, unknown>>(
  target: Target,
  method: Dispatcher.HttpMethod,
  pathname: string,
  body?: unknown,
): Promise<T> {
  const res = await call(target, method, pathname, body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  const parsed = parseJson(res.body);
  if (res.status >= 400) throw new CliError(errorMessage(parsed, res));
  return parsed as T;
}

export function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

export function errorMessage(parsed: unknown, res: ApiResponse): string {
  const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
  if (error?.message) return `${error.message} (${error.code ?? res.status})`;
  return `the platform answered ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`;
}
