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
  if (isDatabaseUnavailable(error)) return new AppError('unavailable', 'The database is unreachable right now; retry shortly', { cause: error });
  if (isRedisUnavailable(error)) return new AppError('unavailable', 'Cluster state (Redis) is unreachable right now; retry shortly', { cause: error });
  return new AppError('internal', 'Internal error', { cause: error });
}

/** ioredis' own errors for "no answer": retries exhausted, connection gone, no slot map. */
const REDIS_CLIENT_UNAVAILABLE = new Set(['MaxRetriesPerRequestError', 'ClusterAllFailedError']);

/**
 * True when `error` says Redis (or a Redis Cluster shard) could not serve the command now, not that
 * the command was wrong: unreachable, closed, retries exhausted, or a cluster between a master's
 * death and its replica's promotion (CLUSTERDOWN, TRYAGAIN, MASTERDOWN, a node still LOADING, a
 * former master now READONLY, redirections that never settle).
 */
export function isRedisUnavailable(error: unknown): boolean {
  if (!error || typeof error !== 'object') return false;
  const e = error as { name?: unknown; message?: unknown };
  if (typeof e.name === 'string' && REDIS_CLIENT_UNAVAILABLE.has(e.name)) return true;
  const message = typeof e.message === 'string' ? e.message : '';
  return /^(CLUSTERDOWN|TRYAGAIN|MASTERDOWN|LOADING|READONLY)\b|^Connection is closed|^Too many Cluster redirections|^Reached the max retries per request limit/.test(message);
}

/** Prisma's codes for "could not reach / lost / timed out waiting for" the database server. */
const PRISMA_UNAVAILABLE = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2024', 'P2037']);
/** Driver adapter error kinds that say the same (@prisma/driver-adapter-utils). */
const ADAPTER_UNAVAILABLE = new Set(['DatabaseNotReachable', 'ConnectionClosed', 'SocketTimeout', 'TooManyConnections']);
const SOCKET_UNAVAILABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND']);

/**
 * True when `error` says the database could not be reached or dropped the connection, not that the
 * query was wrong: a retry can succeed, so the client gets `unavailable` (retryable) instead of
 * `internal`. Covers Prisma's wrapped errors, the driver adapter's kinds, PostgreSQL's connection
 * SQLSTATEs (class 08, admin/crash shutdown 57P01/57P02, starting up or shutting down 57P03, too many
 * connections 53300; PgBouncer's own errors are 08P01), a transaction that found no connection to
 * begin on in time, and node-postgres' own socket errors, anywhere along the `cause` chain.
 * An ambiguous failure (the connection died around COMMIT) is safe to retry because sends are
 * idempotent per clientMsgId.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current && typeof current === 'object' && depth < 8; depth++) {
    const e = current as { code?: unknown; kind?: unknown; message?: unknown; meta?: { driverAdapterError?: { cause?: unknown } }; cause?: unknown };
    const code = typeof e.code === 'string' ? e.code : '';
    if (PRISMA_UNAVAILABLE.has(code) || SOCKET_UNAVAILABLE.has(code)) return true;
    // A transaction that could not begin within Prisma's maxWait (2 s): every pooled connection busy, or,
    // behind PgBouncer, its BEGIN queued for a server connection (PgBouncer's own wait ends later, at 3 s).
    if (code === 'P2028' && typeof e.message === 'string' && e.message.includes('Unable to start a transaction in the given time')) return true;
    if (/^(08...|57P0[123]|53300)$/.test(code)) return true;
    if (typeof e.kind === 'string' && ADAPTER_UNAVAILABLE.has(e.kind)) return true;
    if (typeof e.message === 'string' && /^(Connection terminated|timeout exceeded when trying to connect)/.test(e.message)) return true;
    current = e.meta?.driverAdapterError?.cause ?? e.meta?.driverAdapterError ?? e.cause;
  }
  return false;
}

/** Parses a value with its zod schema; a mismatch is a `validation` error naming the fields. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new AppError('validation', describeZodError(parsed.error));
  return parsed.data;
}
