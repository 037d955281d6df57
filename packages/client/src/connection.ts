import { type BackoffPolicy, backoffDelay, type ClientToServerEvents, disconnectCatalog, type ServerToClientEvents, type SessionEnding } from '@chat/protocol';
import { io, type Socket } from 'socket.io-client';
import type { Changes } from './changes.ts';
import { type ClientContext, closedError } from './context.ts';
import { ChatError } from './errors.ts';
import type { Receipts } from './receipts.ts';
import { SETTLE_MS } from './state.ts';
import type { Sync } from './sync.ts';
import type { Timer } from './timers.ts';

export type ChatSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** Back-off of a connection's set-up (identity, resync) after a retryable failure. */
const SETUP_RETRY: BackoffPolicy = { initialMs: 250, maxMs: 10_000 };

interface Waiter {
  resolve: () => void;
  reject: (error: ChatError) => void;
}

/**
 * The socket's lifecycle: the handshake (with a fresh token each time), each connection's set-up
 * (identity, then baseline or resync, while live changes are held), and reconnecting after the
 * server dropped or refused us, which socket.io-client does not do by itself.
 */
export class Connection {
  readonly socket: ChatSocket;
  readonly #ctx: ClientContext;
  readonly #sync: Sync;
  readonly #changes: Changes;
  readonly #receipts: Receipts;

  #everConnected = false;
  // Counts connections: a set-up that outlived its connection stops.
  #generation = 0;
  #disconnectedAt: number | null = null;
  #ending: SessionEnding | null = null;
  #refusals = 0;
  #reconnectTimer: Timer | null = null;
  #waiters: Waiter[] = [];

  constructor(ctx: ClientContext, parts: { sync: Sync; changes: Changes; receipts: Receipts }) {
    this.#ctx = ctx;
    this.#sync = parts.sync;
    this.#changes = parts.changes;
    this.#receipts = parts.receipts;
    const { config } = ctx;
    this.socket = io(config.url, {
      path: config.path,
      transports: config.transports,
      tryAllTransports: true,
      // Never share a Manager: many clients in one process each need their own connection and token.
      forceNew: true,
      autoConnect: false,
      query: { sticky: config.sticky },
      auth: (callback) => this.#auth(callback),
      reconnectionDelay: config.retry.initialMs,
      reconnectionDelayMax: config.retry.maxMs,
      randomizationFactor: 0.5,
    });
    this.socket.on('connect', () => this.#onConnect());
    this.socket.on('disconnect', (reason) => this.#onDisconnect(reason));
    this.socket.on('connect_error', (error) => this.#onConnectError(error));
    this.socket.on('session:ending', (ending) => {
      this.#ending = ending;
    });
  }

  /** See `ChatClient.connect`. */
  connect(): Promise<void> {
    if (this.#ctx.closed) return Promise.reject(closedError());
    if (this.#ctx.connected && !this.#changes.holding) return Promise.resolve();
    const promise = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    this.socket.connect();
    return promise;
  }

  disconnect(): void {
    this.#clearReconnect();
    this.socket.disconnect();
  }

  /** Answers everyone awaiting `connect()`: resolved when `error` is null. */
  settleWaiters(error: ChatError | null): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) {
      if (error) waiter.reject(error);
      else waiter.resolve();
    }
  }

  #auth(callback: (data: object) => void): void {
    const source = this.#ctx.config.token;
    if (typeof source === 'string') {
      callback({ token: source });
      return;
    }
    Promise.resolve()
      .then(source)
      .then(
        (token) => {
          if (!this.#ctx.closed) callback({ token });
        },
        (error: unknown) => {
          this.#ctx.emit('error', new ChatError('unauthorized', `The token callback failed: ${error instanceof Error ? error.message : String(error)}`, { retryable: true, cause: error }));
          // Without a token the server refuses with token_missing, which the refusal handler retries.
          if (!this.#ctx.closed) callback({});
        },
      );
  }

  #onConnect(): void {
    this.#ctx.connected = true;
    this.#refusals = 0;
    this.#ending = null;
    const generation = ++this.#generation;
    const reconnect = this.#everConnected;
    this.#everConnected = true;
    this.#changes.hold();
    this.#ctx.signalConnected();
    this.#ctx.emit('connected', { reconnect });
    void this.#afterConnect(generation, reconnect);
  }

  async #afterConnect(generation: number, reconnect: boolean): Promise<void> {
    const ctx = this.#ctx;
    let synced = false;
    // A failed resync (a timeout on an overloaded server, say) is retried with back-off for as long
    // as this connection lasts: otherwise the device would stay behind until its next reconnect.
    for (let attempt = 0; !synced; attempt++) {
      try {
        if (ctx.userId === null) ctx.userId = (await ctx.request('session:info', {})).user.id;
        // A fresh client starts from the current state; one that holds state asks what it missed.
        if (reconnect || ctx.state.conversations.size > 0) await this.#sync.resync((this.#disconnectedAt ?? Date.now()) - SETTLE_MS);
        else await this.#sync.baseline();
        synced = true;
      } catch (thrown) {
        const error = ChatError.from(thrown);
        if (!ctx.closed && error.code !== 'disconnected') ctx.emit('error', error);
        if (!error.retryable || ctx.closed || generation !== this.#generation || !ctx.connected) break;
        const delay = backoffDelay(attempt + 1, SETUP_RETRY, error.retryAfterMs);
        await new Promise((resolve) => setTimeout(resolve, delay));
        if (ctx.closed || generation !== this.#generation || !ctx.connected) break;
      }
    }
    // A newer connection runs its own setup and releases the held pushes when it is done.
    if (generation !== this.#generation || ctx.closed) return;
    this.#changes.release();
    if (synced) ctx.emit('synced', { initial: !reconnect });
    this.#receipts.flushPending();
    this.#sync.fillGapsSoon();
    this.settleWaiters(null);
  }

  #onDisconnect(reason: string): void {
    const ctx = this.#ctx;
    if (ctx.connected) this.#disconnectedAt = Date.now();
    ctx.connected = false;
    this.#receipts.typing.forgetMine();
    // socket.io-client reconnects by itself after transport failures, not after a server-side disconnect.
    let willReconnect = this.socket.active && !ctx.closed;
    const ending = this.#ending;
    this.#ending = null;
    if (reason === 'io server disconnect' && !ctx.closed) {
      willReconnect = true;
      // token_expired, token_revoked (the catalog's 'after-refresh' reasons): reconnect at once, the
      // auth callback fetches a new token. Anything else (rate_limited, disconnected_by_admin, or no
      // reason given) waits a back-off first.
      const refresh = ending !== null && disconnectCatalog[ending.reason]?.reconnect === 'after-refresh';
      this.#scheduleReconnect(refresh ? 0 : backoffDelay(++this.#refusals, ctx.config.retry));
    }
    ctx.emit('disconnected', { reason, willReconnect, ending });
  }

  #onConnectError(error: Error & { data?: unknown }): void {
    // `active` still true: a transport failure that socket.io-client retries by itself. False: the
    // server refused the handshake and socket.io-client gave up.
    const refused = !this.socket.active;
    const chat = refused ? ChatError.from(error) : new ChatError('unavailable', `Cannot reach the server: ${error.message}`, { retryable: true, cause: error });
    if (this.#waiters.length > 0) {
      // Someone awaits connect(): they get the answer and decide; no retrying behind their back.
      if (!refused) this.socket.disconnect();
      this.settleWaiters(chat);
      return;
    }
    if (!refused || this.#ctx.closed) return;
    this.#ctx.emit('error', chat);
    const refreshable = typeof this.#ctx.config.token === 'function' && chat.code.startsWith('token_');
    const hopeless = chat.code.startsWith('token_') && !refreshable;
    if (refreshable || (chat.retryable && !hopeless)) this.#scheduleReconnect(backoffDelay(++this.#refusals, this.#ctx.config.retry, chat.retryAfterMs));
  }

  #scheduleReconnect(delayMs: number): void {
    this.#clearReconnect();
    if (this.#ctx.closed) return;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (!this.#ctx.closed && !this.socket.connected) this.socket.connect();
    }, delayMs);
  }

  #clearReconnect(): void {
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
  }
}
