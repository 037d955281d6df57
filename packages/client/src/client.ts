import type {
  Upload,
  UploadUrls,
  Ack,
  Call,
  CallMedia,
  CallSignal,
  CallSignalRelay,
  ClientEventName,
  ClientEventResults,
  ClientPayload,
  ClientToServerEvents,
  Conversation,
  ConversationArchived,
  ConversationMilestone,
  ConversationSummary,
  Message,
  Notification,
  NotificationDeleted,
  NotificationPage,
  NotificationsRead,
  Presence,
  Receipt,
  SearchPage,
  ServerToClientEvents,
  SessionEnding,
} from '@chat/protocol';
import { type BackoffPolicy, backoffDelay, disconnectCatalog, SYSTEM_SENDER_ID } from '@chat/protocol';
import { io, type Socket } from 'socket.io-client';
import { v4 as uuidv4, v7 as uuidv7 } from 'uuid';
import { Emitter } from './emitter.ts';
import { ChatError } from './errors.ts';
import { Outgoing, type OutgoingMessage, type SendInput } from './outgoing.ts';
import { ClientState, SETTLE_MS, type ConversationState, type MessageState, type MessageStatus, type Source } from './state.ts';
import { type RetryOptions, retryPolicy, type Timer } from './timers.ts';
import { TypingTracker, type TypingEvent } from './typing.ts';
import { type UploadBody, type UploadOptions, uploadFile, uploadUrls } from './uploads.ts';

export type ChatSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** A token, or a function that returns a fresh one; the function is called on every (re)connect. */
export type TokenSource = string | (() => string | Promise<string>);

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

/** Returns a description of what is wrong with an outgoing message, or null when it may be sent. */
export type SendValidator = (payload: ClientPayload<'message:send'>) => string | null;

/** A change of an own message's state. */
export interface StatusEvent {
  conversationId: string;
  clientMsgId: string;
  state: MessageState;
  /** Null while sending or failed. */
  messageId: string | null;
  seq: number | null;
  error: ChatError | null;
}

/** The SDK's events, each reported once per change. */
export interface ChatClientEvents {
  /** A message this client had not seen, live or through resync (own messages from any device included). */
  message: [message: Message];
  /** A higher version of a known message: edit, reaction, delete for everyone (tombstone). */
  messageUpdated: [message: Message];
  /** A message this user deleted for themself (on any device). */
  messageHidden: [event: { conversationId: string; messageId: string }];
  /** A conversation was created, changed, or came with a resync or the initial list. */
  conversation: [conversation: Conversation];
  conversationRemoved: [event: { conversationId: string }];
  /** A member's delivered/read watermark moved (own watermarks included). */
  receipt: [receipt: Receipt];
  typing: [event: TypingEvent];
  /** An own message moved: sending → sent → delivered → read, or failed. */
  status: [event: StatusEvent];
  connected: [event: { reconnect: boolean }];
  /**
   * The connection dropped. `reason` is socket.io-client's; `ending` is what the server said just
   * before, when it said anything (`session:ending`: token_expired, token_revoked, disconnected_by_admin,
   * server_draining, rate_limited, slow_consumer), else null. A reconnect and a resync follow by themselves when `willReconnect`.
   */
  disconnected: [event: { reason: string; willReconnect: boolean; ending: SessionEnding | null }];
  /** The state is complete again: after the initial list on first connect, after a resync on reconnects. */
  synced: [event: { initial: boolean }];
  /** A failure in the background (refused reconnect, failed resync, token callback error). */
  error: [error: ChatError];
  /** Someone I share a conversation with came online, went offline or changed status. */
  presence: [presence: Presence];

  /** A new notification of mine (on any of my devices' behalf), with my unread count. */
  notification: [event: { notification: Notification; unreadCount: number }];
  /** Some or all of my notifications were marked read, on this or another device. */
  notificationsRead: [event: NotificationsRead];
  notificationDeleted: [event: NotificationDeleted];
  /** I muted or unmuted a conversation (on any device). */
  conversationMuted: [event: { conversationId: string; muted: boolean }];
  /**
   * A conversation's archived state changed for me: I archived or unarchived it on any device, a new
   * message from another member unarchived it, or a list or resync showed a different state.
   */
  conversationArchived: [event: ConversationArchived];
  /** A direct conversation reached the message count that unlocks calls (once per conversation). */
  milestone: [event: ConversationMilestone];

  /** An incoming call ringing on this device (and every other device of mine). */
  callRinging: [call: Call];
  /**
   * A call of mine changed state. When `state` is `accepted` and `calleeDeviceId` is not
   * {@link ChatClient.deviceId}, another device of mine answered: stop ringing here.
   */
  callUpdated: [call: Call];
  /** An SDP offer/answer or ICE candidate from the other device in a call this device is in. */
  callSignal: [event: CallSignalRelay];
}

interface Waiter {
  resolve: () => void;
  reject: (error: ChatError) => void;
}

type RawEmitter = { emitWithAck(event: string, payload: unknown): Promise<unknown> };

const SYNC_SINCE_MAX = 10_000;
const LIST_PAGE = 100;
/** How long a new message waits for a missing earlier one before the gap is fetched. */
const GAP_WAIT_MS = 500;

/** Back-off of a connection's set-up (identity, resync) after a retryable failure. */
const SETUP_RETRY: BackoffPolicy = { initialMs: 250, maxMs: 10_000 };

/**
 * A typed chat client over socket.io-client: requests with typed acks, an outbox that retries sends
 * idempotently, deduplicated events, automatic resync after reconnects, receipts and typing helpers.
 *
 * @example
 * const client = new ChatClient({ url, token: () => auth.freshToken() });
 * client.on('message', (message) => render(message));
 * await client.connect();
 * const { conversation } = await client.request('conversation:open-direct', { userId: 'bob' });
 * const outgoing = client.send({ conversationId: conversation.id, body: 'hi' });
 * await outgoing.acked;
 */
export class ChatClient extends Emitter<ChatClientEvents> {
  /** The underlying socket, for diagnostics and tests; the SDK owns its lifecycle. */
  readonly socket: ChatSocket;
  readonly sticky: string;
  /** Ack timeout of every request from now on (see {@link ChatClientOptions.ackTimeoutMs}). */
  ackTimeoutMs: number;

  readonly #token: TokenSource;
  readonly #retry: BackoffPolicy;
  readonly #autoDelivered: boolean;
  readonly #receiptDelayMs: number;
  readonly #validate: SendValidator | undefined;
  readonly #state: ClientState;
  readonly #typing: TypingTracker;

  #userId: string | null = null;
  #unreadNotifications: number | null = null;
  /** Conversations I archived, as last heard (list, resync, pushes, acks). */
  readonly #archived = new Set<string>();
  #connected = false;
  #closed = false;
  #everConnected = false;
  #generation = 0;
  #disconnectedAt: number | null = null;
  #ending: SessionEnding | null = null;
  #refusals = 0;
  #reconnectTimer: Timer | null = null;
  #connectWaiters: Waiter[] = [];
  #connectedSignal: { promise: Promise<void>; resolve: () => void } | null = null;

  // While a connection is being set up (identity, then baseline or resync), pushes queue here and are
  // applied after the sync answer, so nothing is applied out of order, lost or reported twice.
  #holding = false;
  #held: Array<() => void> = [];

  readonly #outbox = new Map<string, Outgoing>();
  // One queue per conversation: sends go one at a time so seqs follow the order of send() calls.
  readonly #queues = new Map<string, Outgoing[]>();
  readonly #sleeps = new Set<{ timer: Timer; resolve: () => void }>();
  readonly #pendingDelivered = new Map<string, number>();
  #flushTimer: Timer | null = null;
  #gapTimer: Timer | null = null;
  readonly #loadingMembers = new Set<string>();

  /** The server's origin, which relative upload URLs resolve against. */
  readonly #origin: string;

  constructor(options: ChatClientOptions) {
    super();
    this.#token = options.token;
    this.ackTimeoutMs = options.ackTimeoutMs ?? 10_000;
    this.#retry = retryPolicy(options.retry);
    this.#autoDelivered = options.autoDeliveredReceipts ?? true;
    this.#receiptDelayMs = options.receiptDelayMs ?? 100;
    this.#validate = options.validate;
    this.sticky = options.sticky ?? uuidv4();
    this.#state = new ClientState(options.maxTrackedMessages ?? 500);
    for (const { conversationId, version } of options.since ?? []) this.#state.ensure(conversationId).advance(version);
    this.#typing = new TypingTracker(
      { intervalMs: options.typingIntervalMs ?? 3000, idleMs: options.typingIdleMs ?? 5000, remoteTtlMs: options.remoteTypingTtlMs ?? 6000 },
      (conversationId, typing) => this.#sendTyping(conversationId, typing),
      (event) => this.emit('typing', event),
    );

    this.#origin = options.url;
    this.socket = io(options.url, {
      path: options.path ?? '/socket.io',
      transports: options.transports ?? ['websocket', 'polling'],
      tryAllTransports: true,
      // Never share a Manager: many clients in one process each need their own connection and token.
      forceNew: true,
      autoConnect: false,
      query: { sticky: this.sticky },
      auth: (callback) => this.#auth(callback),
      reconnectionDelay: this.#retry.initialMs,
      reconnectionDelayMax: this.#retry.maxMs,
      randomizationFactor: 0.5,
    });
    this.#bindSocket();
  }

  /** The authenticated user, known once connected. */
  get userId(): string | null {
    return this.#userId;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /**
   * This device's id as the server sees it (the socket id; it changes on every reconnect). Calls name
   * devices by it: `call.callerDeviceId`, `call.calleeDeviceId`.
   */
  get deviceId(): string | null {
    return this.socket.id ?? null;
  }

  /** Whether I archived this conversation, as last heard from the server. */
  isArchived(conversationId: string): boolean {
    return this.#archived.has(conversationId);
  }

  /** The conversations I archived, as last heard from the server. */
  archivedConversationIds(): string[] {
    return [...this.#archived];
  }

  /** My unread notification count as last heard from the server; null before the first list or event. */
  get unreadNotifications(): number | null {
    return this.#unreadNotifications;
  }

  /**
   * Connects, or reconnects after `disconnect()`. Resolves once connected and synced (identity known,
   * state baselined or resynced); rejects with the server's catalogued refusal (`connect_error.data`)
   * or, when the server cannot be reached, with `unavailable`, and then stops trying.
   */
  connect(): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#connected && !this.#holding) return Promise.resolve();
    const promise = new Promise<void>((resolve, reject) => this.#connectWaiters.push({ resolve, reject }));
    this.socket.connect();
    return promise;
  }

  /** Drops the connection but keeps all state; `connect()` resumes with a resync. */
  disconnect(): void {
    this.#clearReconnect();
    this.socket.disconnect();
  }

  /** Ends the client: disconnects, stops every timer, fails messages still sending with `closed`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#clearReconnect();
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    if (this.#gapTimer) clearTimeout(this.#gapTimer);
    this.#gapTimer = null;
    for (const sleep of this.#sleeps) {
      clearTimeout(sleep.timer);
      sleep.resolve();
    }
    this.#sleeps.clear();
    this.#typing.close();
    this.socket.disconnect();
    for (const entry of this.#outbox.values()) if (entry.state === 'sending') this.#fail(entry, closedError());
    this.#settleWaiters(closedError());
    this.#signalConnected();
    this.#held = [];
    this.#pendingDelivered.clear();
  }

  /**
   * Emits a protocol event and resolves with its ok-result, or rejects with a {@link ChatError}:
   * the server's catalogued error, `timeout` after `ackTimeoutMs`, `disconnected` if the connection
   * dropped first. While disconnected the event is buffered until the timeout. Conversations,
   * messages and receipts in results update the client's state like the matching pushes do.
   */
  async request<E extends ClientEventName>(event: E, payload: ClientPayload<E>, options: { timeoutMs?: number } = {}): Promise<ClientEventResults[E]> {
    if (this.#closed) throw closedError();
    let ack: Ack<ClientEventResults[E]>;
    try {
      const emitter = this.socket.timeout(options.timeoutMs ?? this.ackTimeoutMs) as unknown as RawEmitter;
      ack = (await emitter.emitWithAck(event, payload)) as Ack<ClientEventResults[E]>;
    } catch (thrown) {
      if (this.#closed) throw closedError();
      const reason = thrown instanceof Error ? thrown.message : String(thrown);
      throw new ChatError(/disconnected/.test(reason) ? 'disconnected' : 'timeout', `${event}: ${reason}`, { cause: thrown });
    }
    if (!ack.ok) throw ChatError.fromWire(ack.error);
    const { ok: _ok, ...result } = ack;
    this.#live(() => this.#absorb(event, result, Date.now()));
    return result as unknown as ClientEventResults[E];
  }

  /**
   * Sends a message. Returns at once with a local record in state `sending`; the SDK retries with the
   * same `clientMsgId` until acked: after ack timeouts, disconnects (waiting for the reconnect, not
   * spinning) and retryable errors, with capped exponential back-off that respects `retryAfterMs`.
   * A non-retryable error makes it `failed` (see `retry()`). Sends to one conversation go in order.
   */
  send(input: SendInput): OutgoingMessage {
    const existing = input.clientMsgId === undefined ? undefined : this.#outbox.get(input.clientMsgId);
    if (existing) return existing;
    const payload: ClientPayload<'message:send'> = {
      conversationId: input.conversationId,
      clientMsgId: input.clientMsgId ?? uuidv7(),
      body: input.body,
      ...(input.kind !== undefined && { kind: input.kind }),
      ...(input.attachments !== undefined && { attachments: input.attachments }),
      ...(input.replyToId !== undefined && { replyToId: input.replyToId }),
    };
    const entry = new Outgoing(payload);
    this.#outbox.set(entry.clientMsgId, entry);
    this.#typing.stop(entry.conversationId, { notify: false });
    this.#emitStatus(entry, 'sending');
    const invalid = this.#closed ? closedError() : this.#invalid(payload);
    if (invalid) this.#fail(entry, invalid);
    else this.#enqueue(entry);
    return entry;
  }

  /** Sends a `failed` message again, same `clientMsgId`; undefined if there is no such message. */
  retry(clientMsgId: string): OutgoingMessage | undefined {
    const entry = this.#outbox.get(clientMsgId);
    if (entry?.state !== 'failed' || this.#closed) return entry;
    entry.restart();
    this.#emitStatus(entry, 'sending');
    this.#enqueue(entry);
    return entry;
  }

  /** Forgets a `failed` message (failed ones are kept for `retry()` until then). */
  discard(clientMsgId: string): boolean {
    const entry = this.#outbox.get(clientMsgId);
    if (entry?.state !== 'failed') return false;
    return this.#outbox.delete(clientMsgId);
  }

  /**
   * Where a message stands: `sending`/`failed` for a local record not yet stored, otherwise `sent`,
   * `delivered` (every other member's delivered watermark reached it) or `read` (every other member
   * read it), with counts. O(members).
   */
  statusOf(target: OutgoingMessage | Pick<Message, 'conversationId' | 'seq' | 'senderId'>): MessageStatus {
    let message: Pick<Message, 'conversationId' | 'seq' | 'senderId'>;
    if ('acked' in target) {
      if (target.message === null) return { state: target.state === 'failed' ? 'failed' : 'sending', deliveredCount: 0, readCount: 0, of: 0 };
      message = target.message;
    } else {
      message = target;
    }
    const state = this.#state.get(message.conversationId);
    return state ? state.status(message.seq, message.senderId) : { state: 'sent', deliveredCount: 0, readCount: 0, of: 0 };
  }

  /** Current watermarks of the known members of a conversation. */
  receipts(conversationId: string): Receipt[] {
    const state = this.#state.get(conversationId);
    if (!state) return [];
    return [...state.watermarks].map(([userId, marks]) => ({ conversationId, userId, lastDeliveredSeq: marks.delivered, lastReadSeq: marks.read }));
  }

  /** Moves this user's delivered watermark (never back). */
  async markDelivered(conversationId: string, seq: number): Promise<Receipt> {
    return (await this.request('receipt:mark', { conversationId, delivered: seq })).receipt;
  }

  /** Moves this user's read watermark (read implies delivered). */
  async markRead(conversationId: string, seq: number): Promise<Receipt> {
    const pending = this.#pendingDelivered.get(conversationId);
    if (pending !== undefined && pending <= seq) this.#pendingDelivered.delete(conversationId);
    return (await this.request('receipt:mark', { conversationId, read: seq })).receipt;
  }

  /** Call on every keystroke: sends `typing: true` at most every `typingIntervalMs`, `false` after `typingIdleMs` idle. */
  typing(conversationId: string): void {
    if (!this.#closed) this.#typing.keystroke(conversationId);
  }

  /** Ends this device's typing now (e.g. the input was cleared). */
  stopTyping(conversationId: string): void {
    this.#typing.stop(conversationId, { notify: true });
  }

  /** Other members typing in a conversation now. */
  typingIn(conversationId: string): string[] {
    return this.#typing.typingIn(conversationId);
  }

  // -------------------------------------------------------------------------------------------
  // Search
  // -------------------------------------------------------------------------------------------

  /**
   * Ranked full-text search over my current conversations (web-search syntax: words, "phrases",
   * `-word`). Each hit's `snippet` is plain text with `[start, end)` highlight ranges: render the
   * text as text and wrap the ranges yourself. Pass `nextCursor` back, with the same query, for more.
   */
  search(query: string, options: Omit<ClientPayload<'message:search'>, 'query'> = {}): Promise<SearchPage> {
    return this.request('message:search', { ...options, query });
  }

  // -------------------------------------------------------------------------------------------
  // Notifications
  // -------------------------------------------------------------------------------------------

  /** One page of my notifications, newest first; pass `nextCursor` back for older ones. */
  listNotifications(options: { cursor?: string; limit?: number; unreadOnly?: boolean } = {}): Promise<NotificationPage> {
    return this.request('notification:list', options);
  }

  /** Marks the given notifications read, or all of them with `'all'`; my other devices hear `notificationsRead`. */
  markNotificationsRead(which: string[] | 'all'): Promise<NotificationsRead> {
    return this.request('notification:mark-read', which === 'all' ? { all: true } : { notificationIds: which });
  }

  deleteNotification(notificationId: string): Promise<NotificationDeleted> {
    return this.request('notification:delete', { notificationId });
  }

  /** A muted conversation produces no notifications for me. */
  async muteConversation(conversationId: string, muted = true): Promise<{ conversationId: string; muted: boolean }> {
    return this.request('conversation:mute', { conversationId, muted });
  }

  /**
   * Archives (or unarchives) a conversation for me on all my devices: it leaves my default list. A
   * new message from another member unarchives it, unless I muted it.
   */
  archive(conversationId: string, archived = true): Promise<ConversationArchived> {
    return this.request('conversation:archive', { conversationId, archived });
  }

  /** One page of my conversations by last activity; the archived ones with `archived: true`, the others without. */
  listConversations(options: { cursor?: string; limit?: number; archived?: boolean } = {}): Promise<{ conversations: ConversationSummary[]; nextCursor: string | null }> {
    return this.request('conversation:list', options);
  }

  // -------------------------------------------------------------------------------------------
  // Uploads (uploads.ts)
  // -------------------------------------------------------------------------------------------

  /**
   * Uploads a file for a conversation and resolves with the verified upload; attach it with
   * `send({ ..., attachments: [{ uploadId: upload.id }] })`. Rejects with the server's code when the
   * bytes are refused (`upload_type_mismatch`, `upload_too_large`, ...).
   */
  upload(body: UploadBody, options: UploadOptions): Promise<Upload> {
    return uploadFile((event, payload) => this.request(event, payload), this.#origin, body, options);
  }

  /** Short-lived download URLs of an upload in one of my conversations (absolute; valid for UPLOAD_URL_TTL_S). */
  uploadUrls(uploadId: string): Promise<UploadUrls> {
    return uploadUrls((event, payload) => this.request(event, payload), this.#origin, uploadId);
  }

  // -------------------------------------------------------------------------------------------
  // Calls (signaling only: the media flows between the browsers over WebRTC)
  // -------------------------------------------------------------------------------------------

  /**
   * Calls a user from this device. Resolves with the call ringing on every device of the callee, or
   * already in state `busy`; rejects with `forbidden` when policy does not allow calls yet.
   */
  async invite(calleeId: string, media: CallMedia): Promise<Call> {
    return (await this.request('call:invite', { calleeId, media })).call;
  }

  /** Answers a ringing call on this device; rejects with `conflict` if another device answered first. */
  async acceptCall(callId: string): Promise<Call> {
    return (await this.request('call:accept', { callId })).call;
  }

  async rejectCall(callId: string): Promise<Call> {
    return (await this.request('call:reject', { callId })).call;
  }

  async cancelCall(callId: string): Promise<Call> {
    return (await this.request('call:cancel', { callId })).call;
  }

  async endCall(callId: string): Promise<Call> {
    return (await this.request('call:end', { callId })).call;
  }

  async getCall(callId: string): Promise<Call> {
    return (await this.request('call:get', { callId })).call;
  }

  /** Relays an SDP offer/answer or an ICE candidate to the other device in the call. */
  async signal(callId: string, signal: CallSignal): Promise<void> {
    await this.request('call:signal', { callId, signal });
  }

  /** The resync cursors, to persist and pass back as `since` in a later session. */
  cursors(): Array<{ conversationId: string; version: number }> {
    return this.#state.since(Date.now() - SETTLE_MS);
  }

  // -------------------------------------------------------------------------------------------
  // Connection
  // -------------------------------------------------------------------------------------------

  #bindSocket(): void {
    const socket = this.socket;
    socket.on('connect', () => this.#onConnect());
    socket.on('disconnect', (reason) => this.#onDisconnect(reason));
    socket.on('connect_error', (error) => this.#onConnectError(error));
    socket.on('session:ending', (ending) => {
      this.#ending = ending;
    });
    socket.on('message:new', (message) => this.#push(() => this.#applyMessage(message, 'new'), message));
    socket.on('message:updated', (message) => this.#push(() => this.#applyMessage(message, 'updated'), message));
    socket.on('message:hidden', ({ conversationId, messageId }) => this.#live(() => this.#applyHidden(conversationId, messageId)));
    socket.on('conversation:updated', (conversation) => this.#live(() => this.#applyConversation(conversation, true)));
    socket.on('conversation:removed', ({ conversationId }) => this.#live(() => this.#removeConversation(conversationId)));
    socket.on('receipt:updated', (receipt) => this.#live(() => this.#applyReceipt(receipt)));
    socket.on('typing:updated', (event) => this.#typing.remote(event));
    socket.on('presence:updated', (presence) => this.emit('presence', presence));
    socket.on('notification:new', (event) => {
      this.#unreadNotifications = event.unreadCount;
      this.emit('notification', event);
    });
    socket.on('notification:read', (event) => {
      this.#unreadNotifications = event.unreadCount;
      this.emit('notificationsRead', event);
    });
    socket.on('notification:deleted', (event) => {
      this.#unreadNotifications = event.unreadCount;
      this.emit('notificationDeleted', event);
    });
    socket.on('conversation:muted', (event) => this.emit('conversationMuted', event));
    socket.on('conversation:archived', (event) => this.#live(() => this.#setArchived(event.conversationId, event.archived)));
    socket.on('conversation:milestone', (event) => this.emit('milestone', event));
    socket.on('call:ringing', (call) => this.emit('callRinging', call));
    socket.on('call:updated', (call) => this.emit('callUpdated', call));
    socket.on('call:signal', (event) => this.emit('callSignal', event));
  }

  #auth(callback: (data: object) => void): void {
    const source = this.#token;
    if (typeof source === 'string') {
      callback({ token: source });
      return;
    }
    Promise.resolve()
      .then(source)
      .then(
        (token) => {
          if (!this.#closed) callback({ token });
        },
        (error: unknown) => {
          this.emit('error', new ChatError('unauthorized', `The token callback failed: ${error instanceof Error ? error.message : String(error)}`, { retryable: true, cause: error }));
          // Without a token the server refuses with token_missing, which the refusal handler retries.
          if (!this.#closed) callback({});
        },
      );
  }

  #onConnect(): void {
    this.#connected = true;
    this.#refusals = 0;
    this.#ending = null;
    const generation = ++this.#generation;
    const reconnect = this.#everConnected;
    this.#everConnected = true;
    this.#holding = true;
    this.#signalConnected();
    this.emit('connected', { reconnect });
    void this.#afterConnect(generation, reconnect);
  }

  async #afterConnect(generation: number, reconnect: boolean): Promise<void> {
    let synced = false;
    // A failed resync (a timeout on an overloaded server, say) is retried with back-off for as long
    // as this connection lasts: otherwise the device would stay behind until its next reconnect.
    for (let attempt = 0; !synced; attempt++) {
      try {
        if (this.#userId === null) this.#userId = (await this.request('session:info', {})).user.id;
        // A fresh client starts from the current state; one that holds state asks what it missed.
        if (reconnect || this.#state.conversations.size > 0) await this.#sync((this.#disconnectedAt ?? Date.now()) - SETTLE_MS);
        else await this.#baseline();
        synced = true;
      } catch (thrown) {
        const error = ChatError.from(thrown);
        if (!this.#closed && error.code !== 'disconnected') this.emit('error', error);
        if (!error.retryable || this.#closed || generation !== this.#generation || !this.#connected) break;
        const delay = backoffDelay(attempt + 1, SETUP_RETRY, error.retryAfterMs);
        await new Promise((resolve) => setTimeout(resolve, delay));
        if (this.#closed || generation !== this.#generation || !this.#connected) break;
      }
    }
    // A newer connection runs its own setup and releases the held pushes when it is done.
    if (generation !== this.#generation || this.#closed) return;
    this.#holding = false;
    const held = this.#held;
    this.#held = [];
    for (const apply of held) apply();
    if (synced) this.emit('synced', { initial: !reconnect });
    if (this.#pendingDelivered.size > 0) this.#scheduleFlush(0);
    if (this.#hasGaps()) this.#scheduleGapFill();
    this.#settleWaiters(null);
  }

  #onDisconnect(reason: string): void {
    if (this.#connected) this.#disconnectedAt = Date.now();
    this.#connected = false;
    this.#typing.forgetMine();
    // socket.io-client reconnects by itself after transport failures, not after a server-side disconnect.
    let willReconnect = this.socket.active && !this.#closed;
    const ending = this.#ending;
    this.#ending = null;
    if (reason === 'io server disconnect' && !this.#closed) {
      willReconnect = true;
      // token_expired, token_revoked (the catalog's 'after-refresh' reasons): reconnect at once, the
      // auth callback fetches a new token. Anything else (rate_limited, disconnected_by_admin, or no
      // reason given) waits a back-off first.
      const refresh = ending !== null && disconnectCatalog[ending.reason]?.reconnect === 'after-refresh';
      this.#scheduleReconnect(refresh ? 0 : backoffDelay(++this.#refusals, this.#retry));
    }
    this.emit('disconnected', { reason, willReconnect, ending });
  }

  #onConnectError(error: Error & { data?: unknown }): void {
    // `active` still true: a transport failure that socket.io-client retries by itself. False: the
    // server refused the handshake and socket.io-client gave up.
    const refused = !this.socket.active;
    const chat = refused ? ChatError.from(error) : new ChatError('unavailable', `Cannot reach the server: ${error.message}`, { retryable: true, cause: error });
    if (this.#connectWaiters.length > 0) {
      // Someone awaits connect(): they get the answer and decide; no retrying behind their back.
      if (!refused) this.socket.disconnect();
      this.#settleWaiters(chat);
      return;
    }
    if (!refused || this.#closed) return;
    this.emit('error', chat);
    const refreshable = typeof this.#token === 'function' && chat.code.startsWith('token_');
    const hopeless = chat.code.startsWith('token_') && !refreshable;
    if (refreshable || (chat.retryable && !hopeless)) this.#scheduleReconnect(backoffDelay(++this.#refusals, this.#retry, chat.retryAfterMs));
  }

  #scheduleReconnect(delayMs: number): void {
    this.#clearReconnect();
    if (this.#closed) return;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (!this.#closed && !this.socket.connected) this.socket.connect();
    }, delayMs);
  }

  #clearReconnect(): void {
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
  }

  #settleWaiters(error: ChatError | null): void {
    const waiters = this.#connectWaiters;
    this.#connectWaiters = [];
    for (const waiter of waiters) {
      if (error) waiter.reject(error);
      else waiter.resolve();
    }
  }

  #signalConnected(): void {
    this.#connectedSignal?.resolve();
    this.#connectedSignal = null;
  }

  /** Resolves on the next connect (or close): what a retry loop waits on instead of spinning. */
  #whenConnected(): Promise<void> {
    if (this.#connected || this.#closed) return Promise.resolve();
    if (!this.#connectedSignal) {
      let resolve = () => {};
      const promise = new Promise<void>((done) => (resolve = done));
      this.#connectedSignal = { promise, resolve };
    }
    return this.#connectedSignal.promise;
  }

  // -------------------------------------------------------------------------------------------
  // Baseline and resync
  // -------------------------------------------------------------------------------------------

  /** First connect without state: every conversation starts at its current version, history is history. */
  async #baseline(): Promise<void> {
    for (const archived of [false, true]) {
      let cursor: string | null = null;
      do {
        const page: ClientEventResults['conversation:list'] = await this.request('conversation:list', { ...(cursor !== null && { cursor }), limit: LIST_PAGE, archived });
        for (const conversation of page.conversations) {
          this.#state.ensure(conversation.id).baseline(conversation.version, conversation.lastSeq);
          this.#applyConversation(conversation, true);
        }
        cursor = page.nextCursor;
      } while (cursor !== null);
    }
  }

  /**
   * Asks for everything changed after the cursors, paging until no conversation has more, then
   * applies it through the same dedupe path as pushes: per conversation, messages in seq order (so new
   * ones are reported in order even when an edit moved one to a later page), then hidden ids, then the
   * cursor moves to what the answer proved complete. On failure, what arrived is still applied.
   */
  async #sync(receivedBy: number): Promise<void> {
    const since = new Map(this.#state.since(receivedBy).map((entry) => [entry.conversationId, entry.version]));
    const collected = new Map<string, { conversation: Conversation; messages: Map<string, Message>; hidden: Set<string>; upTo: number }>();
    const removed = new Set<string>();
    let receipts: Receipt[] = [];
    let archived: string[] | null = null;
    let failure: unknown = null;
    try {
      for (let more = true; more; ) {
        more = false;
        const sinceList = [...since].slice(0, SYNC_SINCE_MAX).map(([conversationId, version]) => ({ conversationId, version }));
        const answer = await this.request('sync:changes', { since: sinceList });
        receipts = answer.receipts;
        archived = answer.archivedConversationIds;
        for (const id of answer.removedConversationIds) removed.add(id);
        for (const changes of answer.conversations) {
          const id = changes.conversation.id;
          let entry = collected.get(id);
          if (!entry) {
            entry = { conversation: changes.conversation, messages: new Map(), hidden: new Set(), upTo: 0 };
            collected.set(id, entry);
          }
          entry.conversation = changes.conversation;
          let highest = 0;
          for (const message of changes.messages) {
            highest = Math.max(highest, message.version);
            const kept = entry.messages.get(message.id);
            if (!kept || kept.version < message.version) entry.messages.set(message.id, message);
          }
          for (const messageId of changes.hiddenMessageIds) entry.hidden.add(messageId);
          // hasMore: complete up to the highest version of this page (the next page starts there);
          // otherwise complete up to the conversation's version as the server read it.
          entry.upTo = Math.max(entry.upTo, changes.hasMore ? highest : changes.conversation.version);
          since.set(id, entry.upTo);
          if (changes.hasMore) more = true;
        }
      }
    } catch (thrown) {
      failure = thrown;
    }

    for (const [conversationId, entry] of collected) {
      if (removed.has(conversationId)) continue;
      this.#applyConversation(entry.conversation, true);
      const messages = [...entry.messages.values()].sort((a, b) => a.seq - b.seq);
      for (const message of messages) this.#applyMessage(message, 'sync');
      for (const messageId of entry.hidden) this.#applyHidden(conversationId, messageId);
      const state = this.#state.get(conversationId);
      state?.advance(entry.upTo);
      // Complete up to the conversation's lastSeq: what still waits behind a gap there is released.
      if (state && failure === null) for (const message of state.release(entry.conversation.lastSeq)) this.#reportNew(state, message);
    }
    for (const receipt of receipts) this.#applyReceipt(receipt);
    if (archived !== null) {
      const now = new Set<string>(archived);
      for (const conversationId of [...this.#archived]) if (!now.has(conversationId)) this.#setArchived(conversationId, false);
      for (const conversationId of now) this.#setArchived(conversationId, true);
    }
    for (const conversationId of removed) this.#removeConversation(conversationId);
    if (failure !== null) throw failure;
  }

  // -------------------------------------------------------------------------------------------
  // Applying changes (pushes, ack results, sync answers): the one dedupe path
  // -------------------------------------------------------------------------------------------

  #live(apply: () => void): void {
    if (this.#holding) this.#held.push(apply);
    else apply();
  }

  #push(apply: () => void, message: Message): void {
    const at = Date.now();
    this.#live(() => {
      apply();
      this.#state.get(message.conversationId)?.noteLive(message.version, at);
    });
  }

  #absorb(event: ClientEventName, result: object, at: number): void {
    switch (event) {
      case 'conversation:open-direct':
      case 'conversation:create-group':
      case 'conversation:add-members':
      case 'conversation:remove-member':
      case 'conversation:rename':
      case 'conversation:get':
        this.#applyConversation((result as { conversation: Conversation }).conversation, false);
        break;
      case 'conversation:list':
        for (const conversation of (result as ClientEventResults['conversation:list']).conversations) {
          this.#applyConversation(conversation, false);
          this.#setArchived(conversation.id, conversation.archived);
        }
        break;
      case 'conversation:archive': {
        const { conversationId, archived } = result as ClientEventResults['conversation:archive'];
        this.#setArchived(conversationId, archived);
        break;
      }
      case 'conversation:leave':
        this.#removeConversation((result as ClientEventResults['conversation:leave']).conversationId);
        break;
      case 'message:send':
      case 'message:edit':
      case 'message:react':
      case 'message:delete': {
        const message = (result as { message: Message | null }).message;
        if (!message) break;
        this.#applyMessage(message, event === 'message:send' ? 'new' : 'updated');
        this.#state.get(message.conversationId)?.noteLive(message.version, at);
        break;
      }
      case 'receipt:mark':
        this.#applyReceipt((result as ClientEventResults['receipt:mark']).receipt);
        break;
      case 'notification:list':
      case 'notification:mark-read':
      case 'notification:delete':
        this.#unreadNotifications = (result as { unreadCount: number }).unreadCount;
        break;
      default:
        break;
    }
  }

  #applyMessage(message: Message, source: Source): void {
    const state = this.#state.ensure(message.conversationId);
    const applied = state.apply(message, source);
    if (applied === 'stale') return;
    if (applied === 'updated') {
      this.emit('messageUpdated', message);
      return;
    }
    const ready = state.admit(message);
    for (const next of ready) this.#reportNew(state, next);
    if (ready.length === 0) this.#scheduleGapFill();
  }

  /** A new message, in seq order: reported once, with its typing and receipt side effects. */
  #reportNew(state: ConversationState, message: Message): void {
    this.emit('message', message);
    this.#typing.messageFrom(message.conversationId, message.senderId);
    if (message.senderId === this.#userId) {
      // Own messages still in the outbox are watched from their ack on, so `sent` comes first.
      if (!this.#outbox.has(message.clientMsgId)) this.#trackOwn(state, message, message.clientMsgId);
    } else if (this.#autoDelivered) {
      this.#queueDelivered(state, message.seq);
    }
    // Sending moves the sender's own watermarks to the message (the server does so in the same
    // statement) without a receipt push: the message itself says so. The system sender is no
    // member and has none.
    if (message.kind !== 'system' && message.senderId !== this.#userId && message.senderId !== SYSTEM_SENDER_ID)
      this.#applyReceipt({ conversationId: message.conversationId, userId: message.senderId, lastDeliveredSeq: message.seq, lastReadSeq: message.seq });
  }

  #applyHidden(conversationId: string, messageId: string): void {
    if (this.#state.ensure(conversationId).hide(messageId)) this.emit('messageHidden', { conversationId, messageId });
  }

  #applyConversation(conversation: Conversation, announce: boolean): void {
    const state = this.#state.ensure(conversation.id);
    // The first thing known of a conversation positions it: new messages follow its lastSeq.
    state.reportedSeq ??= conversation.lastSeq;
    const moved = state.mergeMembers(conversation);
    if (announce) this.emit('conversation', conversation);
    for (const receipt of moved) this.emit('receipt', receipt);
    this.#progressOwn(state);
  }

  #applyReceipt(receipt: Receipt): void {
    const state = this.#state.ensure(receipt.conversationId);
    const moved = state.mergeReceipt(receipt.userId, receipt.lastDeliveredSeq, receipt.lastReadSeq);
    if (!moved) return;
    this.emit('receipt', moved);
    this.#progressOwn(state);
  }

  #setArchived(conversationId: string, archived: boolean): void {
    if (this.#archived.has(conversationId) === archived) return;
    if (archived) this.#archived.add(conversationId);
    else this.#archived.delete(conversationId);
    this.emit('conversationArchived', { conversationId, archived });
  }

  #removeConversation(conversationId: string): void {
    this.#pendingDelivered.delete(conversationId);
    this.#archived.delete(conversationId);
    if (this.#state.remove(conversationId)) this.emit('conversationRemoved', { conversationId });
  }

  // -------------------------------------------------------------------------------------------
  // Own messages: outbox and status
  // -------------------------------------------------------------------------------------------

  #enqueue(entry: Outgoing): void {
    const queue = this.#queues.get(entry.conversationId);
    if (queue) {
      queue.push(entry);
      return;
    }
    const fresh = [entry];
    this.#queues.set(entry.conversationId, fresh);
    this.#drain(entry.conversationId, fresh).catch((thrown: unknown) => this.emit('error', ChatError.from(thrown)));
  }

  async #drain(conversationId: string, queue: Outgoing[]): Promise<void> {
    try {
      while (queue.length > 0) {
        await this.#deliver(queue[0]!);
        queue.shift();
      }
    } finally {
      this.#queues.delete(conversationId);
    }
  }

  async #deliver(entry: Outgoing): Promise<void> {
    let failures = 0;
    while (entry.state === 'sending') {
      if (this.#closed) return this.#fail(entry, closedError());
      if (!this.#connected) {
        await this.#whenConnected();
        continue;
      }
      entry.attempts += 1;
      try {
        const { message } = await this.request('message:send', entry.payload);
        return this.#markSent(entry, message);
      } catch (thrown) {
        const error = ChatError.from(thrown);
        if (this.#closed) return this.#fail(entry, closedError());
        if (!error.retryable) return this.#fail(entry, error);
        failures += 1;
        // A dropped connection is waited out above; everything else backs off before the next try.
        if (error.code !== 'disconnected') await this.#sleep(backoffDelay(failures, this.#retry, error.retryAfterMs));
      }
    }
  }

  #markSent(entry: Outgoing, message: Message): void {
    if (entry.state !== 'sending') return;
    entry.sent(message);
    this.#outbox.delete(entry.clientMsgId);
    this.#emitStatus(entry, 'sent');
    this.#trackOwn(this.#state.ensure(message.conversationId), message, entry.clientMsgId);
  }

  #fail(entry: Outgoing, error: ChatError): void {
    if (entry.state !== 'sending') return;
    entry.fail(error);
    this.#emitStatus(entry, 'failed');
  }

  #trackOwn(state: ConversationState, message: Message, clientMsgId: string): void {
    state.trackOwn({ id: message.id, clientMsgId, seq: message.seq, state: 'sent' });
    if (state.membersKnown) this.#progressOwn(state);
    else this.#loadMembers(state.id);
  }

  /** Delivered/read need the full member list; fetched once for a conversation known only from messages. */
  #loadMembers(conversationId: string): void {
    if (this.#loadingMembers.has(conversationId)) return;
    this.#loadingMembers.add(conversationId);
    this.request('conversation:get', { conversationId })
      .catch(() => {})
      .finally(() => this.#loadingMembers.delete(conversationId));
  }

  #progressOwn(state: ConversationState): void {
    if (this.#userId === null) return;
    for (const { message, state: next } of state.progressOwn(this.#userId)) {
      this.emit('status', { conversationId: state.id, clientMsgId: message.clientMsgId, state: next, messageId: message.id, seq: message.seq, error: null });
    }
  }

  #emitStatus(entry: Outgoing, state: MessageState): void {
    this.emit('status', {
      conversationId: entry.conversationId,
      clientMsgId: entry.clientMsgId,
      state,
      messageId: entry.message?.id ?? null,
      seq: entry.message?.seq ?? null,
      error: entry.error,
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const sleep = {
        timer: setTimeout(() => {
          this.#sleeps.delete(sleep);
          resolve();
        }, ms),
        resolve,
      };
      this.#sleeps.add(sleep);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Gaps: new messages held behind a missing seq
  // -------------------------------------------------------------------------------------------

  /**
   * A message that overtook another on its way across nodes is normally followed by it within
   * milliseconds. One still missing after GAP_WAIT_MS was lost on the way (a publish during a Redis
   * outage, say): the conversation's history after the last reported seq is fetched, which fills the
   * gap, and what waited is released in order.
   */
  #scheduleGapFill(): void {
    if (this.#gapTimer || this.#closed) return;
    this.#gapTimer = setTimeout(() => {
      this.#gapTimer = null;
      void this.#fillGaps();
    }, GAP_WAIT_MS);
  }

  async #fillGaps(): Promise<void> {
    // Offline: the resync after the reconnect fills (and releases) the gaps.
    if (!this.#connected || this.#holding) return;
    for (const state of this.#state.conversations.values()) {
      const gap = state.gap();
      if (!gap) continue;
      try {
        let after = gap.after;
        for (let more = true; more && after < gap.upTo; ) {
          const page = await this.request('history:fetch', { conversationId: state.id, after, limit: LIST_PAGE });
          for (const message of page.messages) this.#applyMessage(message, 'sync');
          after = Math.max(after, ...page.messages.map((message) => message.seq));
          more = page.hasMore;
        }
        for (const message of state.release(gap.upTo)) this.#reportNew(state, message);
      } catch (thrown) {
        const error = ChatError.from(thrown);
        if (!error.retryable) this.emit('error', error);
      }
    }
    if (this.#hasGaps()) this.#scheduleGapFill();
  }

  #hasGaps(): boolean {
    for (const state of this.#state.conversations.values()) if (state.gap()) return true;
    return false;
  }

  // -------------------------------------------------------------------------------------------
  // Receipts and typing
  // -------------------------------------------------------------------------------------------

  #queueDelivered(state: ConversationState, seq: number): void {
    const mine = this.#userId === null ? undefined : state.watermarks.get(this.#userId);
    if ((mine?.delivered ?? 0) >= seq || (this.#pendingDelivered.get(state.id) ?? 0) >= seq) return;
    this.#pendingDelivered.set(state.id, seq);
    this.#scheduleFlush(this.#receiptDelayMs);
  }

  #scheduleFlush(delayMs: number): void {
    if (this.#flushTimer || this.#closed) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = null;
      this.#flushDelivered();
    }, delayMs);
  }

  /** One `receipt:mark` per conversation with the highest seq seen; failed marks go back into the batch. */
  #flushDelivered(): void {
    // Offline: kept until the connect setup flushes.
    if (!this.#connected) return;
    const batch = [...this.#pendingDelivered];
    this.#pendingDelivered.clear();
    for (const [conversationId, seq] of batch) {
      this.request('receipt:mark', { conversationId, delivered: seq }).catch((thrown: unknown) => {
        const error = ChatError.from(thrown);
        if (!error.retryable || this.#closed) return;
        if ((this.#pendingDelivered.get(conversationId) ?? 0) < seq) this.#pendingDelivered.set(conversationId, seq);
        this.#scheduleFlush(Math.max(this.#receiptDelayMs, error.retryAfterMs ?? 0));
      });
    }
  }

  #invalid(payload: ClientPayload<'message:send'>): ChatError | null {
    const issues = this.#validate?.(payload) ?? null;
    return issues === null ? null : new ChatError('validation', issues);
  }

  #sendTyping(conversationId: string, typing: boolean): void {
    // Typing is ephemeral: offline keystrokes are not worth replaying after a reconnect.
    if (!this.#connected) return;
    this.request('typing:set', { conversationId, typing }).catch((thrown: unknown) => {
      const error = ChatError.from(thrown);
      if (!error.retryable) this.emit('error', error);
    });
  }
}

function closedError(): ChatError {
  return new ChatError('closed', 'The client is closed');
}
