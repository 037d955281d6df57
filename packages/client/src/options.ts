import type { BackoffPolicy, ClientPayload } from '@chat/protocol';
import { v4 as uuidv4 } from 'uuid';
import { type RetryOptions, retryPolicy } from './timers.ts';
import type { TypingTimings } from './typing.ts';

/** A token, or a function that returns a fresh one; the function is called on every (re)connect. */
export type TokenSource = string | (() => string | Promise<string>);

/** Returns a description of what is wrong with an outgoing message, or null when it may be sent. */
export type SendValidator = (payload: ClientPayload<'message:send'>) => string | null;

export interface ChatClientOptions {
  /** The server (or load balancer) origin, e.g. `https://chat.example.com`. */
  url: string;
  /**
   * The bearer token for the handshake. Pass a function to refresh it: it is called before every
   * connection attempt, so a reconnect after `token_expired` uses a new token.
   */
  token: TokenSource;
  /**
   * The Socket.IO endpoint path.
   * @default '/socket.io'
   */
  path?: string;
  /**
   * Transports in the order tried. WebSocket first: one TCP connection per client from the start
   * (no polling-then-upgrade round trips, which add up with thousands of clients); long-polling only
   * when WebSocket cannot connect (proxies that block it), kept on one node by the `sticky` id.
   * @default ['websocket', 'polling']
   */
  transports?: Array<'websocket' | 'polling'>;
  /**
   * How long `request()` (and each `message:send` attempt) waits for its ack.
   * @default 10000
   */
  ackTimeoutMs?: number;
  /** Back-off of message retries, of reconnects after a refused handshake, and of socket.io-client's own reconnects. */
  retry?: RetryOptions;
  /**
   * Report messages from others as delivered as soon as they arrive (live or by sync), coalesced
   * per conversation into one `receipt:mark` per `receiptDelayMs`.
   * @default true
   */
  autoDeliveredReceipts?: boolean;
  /**
   * The coalescing window of automatic delivered receipts.
   * @default 100
   */
  receiptDelayMs?: number;
  /**
   * While typing continues, `typing: true` is re-sent at most this often.
   * @default 3000
   */
  typingIntervalMs?: number;
  /**
   * Quiet time after the last keystroke before `typing: false` is sent.
   * @default 5000
   */
  typingIdleMs?: number;
  /**
   * How long another member's typing indicator holds without news (the server's typing TTL).
   * @default 6000
   */
  remoteTypingTtlMs?: number;
  /**
   * Sent as the `sticky` query parameter of every Socket.IO request; the load balancer hashes on it
   * so a long-polling session stays on one node while clients behind one IP spread out.
   * @default a random UUID per client
   */
  sticky?: string;
  /**
   * Message ids remembered per conversation for deduplication (and own messages watched for
   * delivered/read). Older ones are forgotten: an update to one is still reported, but as an update.
   * @default 500
   */
  maxTrackedMessages?: number;
  /**
   * Resync cursors saved from an earlier session (`cursors()`); with them the first connect resyncs
   * from there instead of starting from the current state.
   */
  since?: Array<{ conversationId: string; version: number }>;
  /**
   * Checks an outgoing message before anything is sent; a non-null result fails it at once with a
   * `validation` error (no attempt, no round trip). Unset, the server's check is the only one: an
   * invalid message fails with the same code after its first attempt. `validateSend` from
   * `@chat/client/validate` is the protocol's own zod schema; it is a separate entry point so that
   * apps that do not ask for it do not bundle zod.
   * @default undefined
   * @example import { validateSend } from '@chat/client/validate'; new ChatClient({ url, token, validate: validateSend })
   */
  validate?: SendValidator;
}

/** {@link ChatClientOptions} with every default applied: what the client's modules read. */
export interface ClientConfig {
  readonly url: string;
  readonly token: TokenSource;
  readonly path: string;
  readonly transports: Array<'websocket' | 'polling'>;
  readonly ackTimeoutMs: number;
  readonly retry: BackoffPolicy;
  readonly autoDelivered: boolean;
  readonly receiptDelayMs: number;
  readonly typing: TypingTimings;
  readonly sticky: string;
  readonly maxTrackedMessages: number;
  readonly since: ReadonlyArray<{ conversationId: string; version: number }>;
  readonly validate: SendValidator | undefined;
}

export function resolveOptions(options: ChatClientOptions): ClientConfig {
  return {
    url: options.url,
    token: options.token,
    path: options.path ?? '/socket.io',
    transports: options.transports ?? ['websocket', 'polling'],
    ackTimeoutMs: options.ackTimeoutMs ?? 10_000,
    retry: retryPolicy(options.retry),
    autoDelivered: options.autoDeliveredReceipts ?? true,
    receiptDelayMs: options.receiptDelayMs ?? 100,
    typing: { intervalMs: options.typingIntervalMs ?? 3000, idleMs: options.typingIdleMs ?? 5000, remoteTtlMs: options.remoteTypingTtlMs ?? 6000 },
    sticky: options.sticky ?? uuidv4(),
    maxTrackedMessages: options.maxTrackedMessages ?? 500,
    since: options.since ?? [],
    validate: options.validate,
  };
}
