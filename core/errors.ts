// The one error type of fnctl. Every failure that a user can see carries a stable code; the
// gateway alone maps codes to HTTP statuses (gateway/errors.ts). Errors cross the guest boundary
// as plain {code, message} objects, so codes are strings, never classes.

export const ErrorCodes = [
  'FUNCTION_NOT_FOUND',
  'VERSION_NOT_FOUND',
  'PAYLOAD_TOO_LARGE',
  'THROTTLED',
  'FUNCTION_ERROR',
  'FUNCTION_CRASHED',
  'OUT_OF_MEMORY',
  'FUNCTION_TIMEOUT',
  'UNAVAILABLE',
  'UNAUTHORIZED',
  'INVALID_NAME',
  'INVALID_SETTING',
  'INVALID_REQUEST',
  'INVALID_BUNDLE',
  'INIT_FAILED',
  'INIT_TIMEOUT',
  'SNAPSHOT_FAILED',
  'NOT_ALLOWED_IN_STATE',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ErrorCodes)[number];

export interface ErrorPayload {
  code: ErrorCode;
  message: string;
  stack?: string;
  details?: Record<string, unknown>;
}

export class FnError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FnError';
    this.code = code;
    this.details = options?.details;
  }

  toPayload(): ErrorPayload {
    const payload: ErrorPayload = { code: this.code, message: this.message };
    if (this.details) payload.details = this.details;
    return payload;
  }

  static fromPayload(p: ErrorPayload): FnError {
    const err = new FnError(isErrorCode(p.code) ? p.code : 'INTERNAL', p.message, p.details ? { details: p.details } : undefined);
    if (p.stack) err.stack = p.stack;
    return err;
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ErrorCodes as readonly string[]).includes(value);
}

/** Any thrown value as an FnError; unknown errors become INTERNAL with the original as cause. */
export function toFnError(err: unknown): FnError {
  if (err instanceof FnError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new FnError('INTERNAL', message, { cause: err });
}
