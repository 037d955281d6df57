import { errorCatalog, wireError, type ErrorCode, type WireError } from '@chat/protocol';
import { ZodError, type z } from 'zod';

/**
 * The one error type domain and transport code throws on purpose. Its code comes from the protocol's
 * catalog; transports turn it into an ack, a REST body or a `connect_error` without inspecting it.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options?: { retryAfterMs?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs;
  }

  get status(): number {
    return errorCatalog[this.code].status;
  }

  toWire(): WireError {
    return wireError(this.code, this.message, this.retryAfterMs === undefined ? undefined : { retryAfterMs: this.retryAfterMs });
  }
}

/** Summarises zod issues into one line a client developer can act on. */
export function describeZodError(error: ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    .join('; ');
}

/**
 * Maps anything thrown to a catalogued error. Unknown errors become `internal` with a generic message:
 * internals stay in the log, never on the wire.
 */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof ZodError) return new AppError('validation', describeZodError(error));
  return new AppError('internal', 'Internal error', { cause: error });
}

/** Parses a value with its zod schema; a mismatch is a `validation` error naming the fields. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new AppError('validation', describeZodError(parsed.error));
  return parsed.data;
}
