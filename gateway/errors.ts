// The one table that maps error codes to HTTP statuses, and the error body of the contract:
// {"error": {"code", "message", "requestId"}}. Nothing else in fnctl knows about HTTP statuses.
import type { ServerResponse } from 'node:http';
import { FnError, toFnError, type ErrorCode } from '../core/errors.js';

export const httpStatusByCode: Record<ErrorCode, number> = {
  FUNCTION_NOT_FOUND: 404,
  VERSION_NOT_FOUND: 404,
  PAYLOAD_TOO_LARGE: 413,
  THROTTLED: 429,
  FUNCTION_ERROR: 502,
  FUNCTION_CRASHED: 502,
  OUT_OF_MEMORY: 502,
  INIT_FAILED: 502,
  FUNCTION_TIMEOUT: 504,
  INIT_TIMEOUT: 504,
  UNAVAILABLE: 503,
  UNAUTHORIZED: 401,
  INVALID_NAME: 400,
  INVALID_SETTING: 400,
  INVALID_REQUEST: 400,
  INVALID_BUNDLE: 400,
  SNAPSHOT_FAILED: 400,
  NOT_ALLOWED_IN_STATE: 409,
  INTERNAL: 500,
};

export function errorBody(err: FnError, requestId: string | undefined): string {
  const error: Record<string, unknown> = { code: err.code, message: err.message };
  if (requestId) error.requestId = requestId;
  const details = err.details;
  if (details && err.code !== 'INTERNAL') {
    for (const key of ['problems', 'stack', 'limitMib', 'timeoutSeconds'] as const) {
      if (details[key] !== undefined) error[key] = details[key];
    }
  }
  return JSON.stringify({ error });
}

/** Write an error response, unless one was already started (then the connection is cut). */
export function sendError(res: ServerResponse, error: unknown, requestId?: string, extraHeaders: string[] = []): void {
  const err = toFnError(error);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(err, requestId);
  const headers = ['content-type', 'application/json', 'content-length', String(Buffer.byteLength(body)), ...extraHeaders];
  if (requestId) headers.push('x-fn-request-id', requestId);
  if (err.code === 'THROTTLED') headers.push('retry-after', String(err.details?.retryAfterSeconds ?? 1));
  res.writeHead(httpStatusByCode[err.code], headers);
  res.end(body);
}
