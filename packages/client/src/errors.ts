import { errorCatalog, type ErrorCode, type WireError } from '@chat/protocol';

/**
 * Failures the SDK detects on its own side of the wire, next to the server's catalogued codes:
 * - `timeout`: no ack within `ackTimeoutMs`; the server may or may not have done the work (retryable).
 * - `disconnected`: the connection dropped before the ack arrived (retryable).
 * - `closed`: `close()` was called; nothing more will be sent (not retryable).
 */
export type ClientErrorCode = 'timeout' | 'disconnected' | 'closed';

const clientRetryable: Record<ClientErrorCode, boolean> = { timeout: true, disconnected: true, closed: false };

/** Every failure the SDK reports: a catalogued server error or one of {@link ClientErrorCode}. */
export class ChatError extends Error {
  override readonly name = 'ChatError';
  readonly code: ErrorCode | ClientErrorCode;
  /** Whether the same request can succeed later (after a back-off, a reconnect or a token refresh). */
  readonly retryable: boolean;
  /** Only for `rate_limited`: how long the server asks us to wait. */
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode | ClientErrorCode, message: string, options: { retryable?: boolean; retryAfterMs?: number | undefined; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? (code in clientRetryable ? clientRetryable[code as ClientErrorCode] : (errorCatalog[code as ErrorCode]?.retryable ?? false));
    this.retryAfterMs = options.retryAfterMs;
  }

  /** From the `error` of a failed ack or the `data` of a `connect_error`. */
  static fromWire(wire: WireError): ChatError {
    return new ChatError(wire.code, wire.message, { retryable: wire.retryable, retryAfterMs: wire.retryAfterMs });
  }

  /** Anything thrown inside the SDK, as a ChatError (unknown failures count as retryable `internal`). */
  static from(thrown: unknown): ChatError {
    if (thrown instanceof ChatError) return thrown;
    const data = (thrown as { data?: unknown } | null)?.data;
    if (isWireError(data)) return ChatError.fromWire(data);
    return new ChatError('internal', thrown instanceof Error ? thrown.message : String(thrown), { retryable: true, cause: thrown });
  }
}

function isWireError(value: unknown): value is WireError {
  return typeof value === 'object' && value !== null && typeof (value as WireError).code === 'string' && typeof (value as WireError).message === 'string';
}
