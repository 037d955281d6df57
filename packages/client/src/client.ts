import type {
  Ack,
  Call,
  CallMedia,
  CallSignal,
  ClientEventName,
  ClientEventResults,
  ClientPayload,
  ConversationArchived,
  ConversationSummary,
  Message,
  NotificationDeleted,
  NotificationPage,
  NotificationsRead,
  Receipt,
  ScheduledMessage,
  ScheduledPage,
  SearchPage,
  ThreadListPage,
  ThreadPage,
  ThreadRead,
  Upload,
  UploadUrls,
} from '@chat/protocol';
import { Changes } from './changes.ts';
import { type ChatSocket, Connection } from './connection.ts';
import { ClientContext, closedError } from './context.ts';
import { Emitter } from './emitter.ts';
import { ChatError } from './errors.ts';
import type { ChatClientEvents } from './events.ts';
import { type ChatClientOptions, resolveOptions } from './options.ts';
import { Outbox } from './outbox.ts';
import type { OutgoingMessage, SendInput } from './outgoing.ts';
import { Receipts } from './receipts.ts';
import { ScheduledMessages, type ScheduleInput } from './scheduled.ts';
import { type MessageStatus, SETTLE_MS } from './state.ts';
import { Sync } from './sync.ts';
import { type ThreadFetchOptions, type ThreadListOptions, Threads } from './threads.ts';
import { type UploadBody, type UploadOptions, uploadFile, uploadUrls } from './uploads.ts';

type RawEmitter = { emitWithAck(event: string, payload: unknown): Promise<unknown> };

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

  // One job each, sharing the context: see the modules' own comments.
  readonly #ctx: ClientContext;
  readonly #receipts: Receipts;
  readonly #outbox: Outbox;
  readonly #changes: Changes;
  readonly #sync: Sync;
  readonly #connection: Connection;
  readonly #scheduled: ScheduledMessages;
  readonly #threads: Threads;

  constructor(options: ChatClientOptions) {
    super();
    const config = resolveOptions(options);
    this.ackTimeoutMs = config.ackTimeoutMs;
    this.sticky = config.sticky;
    const ctx = new ClientContext(
      config,
      (event, ...args) => this.emit(event, ...args),
      (event, payload, requestOptions) => this.request(event, payload, requestOptions),
    );
    this.#ctx = ctx;
    this.#receipts = new Receipts(ctx);
    this.#outbox = new Outbox(ctx, this.#receipts.typing);
    this.#changes = new Changes(ctx, { outbox: this.#outbox, receipts: this.#receipts, gapOpened: () => this.#sync.scheduleGapFill() });
    this.#sync = new Sync(ctx, this.#changes);
    this.#connection = new Connection(ctx, { sync: this.#sync, changes: this.#changes, receipts: this.#receipts });
    this.#scheduled = new ScheduledMessages(ctx);
    this.#threads = new Threads(ctx);
    this.socket = this.#connection.socket;
    this.#changes.listen(this.socket);
  }

  /** The authenticated user, known once connected. */
  get userId(): string | null {
    return this.#ctx.userId;
  }

  get connected(): boolean {
    return this.#ctx.connected;
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
    return this.#ctx.archived.has(conversationId);
  }

  /** The conversations I archived, as last heard from the server. */
  archivedConversationIds(): string[] {
    return [...this.#ctx.archived];
  }

  /** My unread notification count as last heard from the server; null before the first list or event. */
  get unreadNotifications(): number | null {
    return this.#ctx.unreadNotifications;
  }

  /**
   * Connects, or reconnects after `disconnect()`. Resolves once connected and synced (identity known,
   * state baselined or resynced); rejects with the server's catalogued refusal (`connect_error.data`)
   * or, when the server cannot be reached, with `unavailable`, and then stops trying.
   */
  connect(): Promise<void> {
    return this.#connection.connect();
  }

  /** Drops the connection but keeps all state; `connect()` resumes with a resync. */
  disconnect(): void {
    this.#connection.disconnect();
  }

  /** Ends the client: disconnects, stops every timer, fails messages still sending with `closed`. */
  close(): void {
    const ctx = this.#ctx;
    if (ctx.closed) return;
    ctx.closed = true;
    this.#sync.close();
    this.#receipts.close();
    this.#connection.disconnect();
    this.#outbox.close();
    this.#connection.settleWaiters(closedError());
    ctx.signalConnected();
    this.#changes.dropHeld();
  }

  /**
   * Emits a protocol event and resolves with its ok-result, or rejects with a {@link ChatError}:
   * the server's catalogued error, `timeout` after `ackTimeoutMs`, `disconnected` if the connection
   * dropped first. While disconnected the event is buffered until the timeout. Conversations,
   * messages and receipts in results update the client's state like the matching pushes do.
   */
  async request<E extends ClientEventName>(event: E, payload: ClientPayload<E>, options: { timeoutMs?: number } = {}): Promise<ClientEventResults[E]> {
    if (this.#ctx.closed) throw closedError();
    let ack: Ack<ClientEventResults[E]>;
    try {
      const emitter = this.socket.timeout(options.timeoutMs ?? this.ackTimeoutMs) as unknown as RawEmitter;
      ack = (await emitter.emitWithAck(event, payload)) as Ack<ClientEventResults[E]>;
    } catch (thrown) {
      if (this.#ctx.closed) throw closedError();
      const reason = thrown instanceof Error ? thrown.message : String(thrown);
      throw new ChatError(/disconnected/.test(reason) ? 'disconnected' : 'timeout', `${event}: ${reason}`, { cause: thrown });
    }
    if (!ack.ok) throw ChatError.fromWire(ack.error);
    const { ok: _ok, ...result } = ack;
    this.#changes.live(() => this.#changes.absorb(event, result, Date.now()));
    return result as unknown as ClientEventResults[E];
  }

  /**
   * Sends a message. Returns at once with a local record in state `sending`; the SDK retries with the
   * same `clientMsgId` until acked: after ack timeouts, disconnects (waiting for the reconnect, not
   * spinning) and retryable errors, with capped exponential back-off that respects `retryAfterMs`.
   * A non-retryable error makes it `failed` (see `retry()`). Sends to one conversation go in order.
   */
  send(input: SendInput): OutgoingMessage {
    return this.#outbox.send(input);
  }

  /** Sends a `failed` message again, same `clientMsgId`; undefined if there is no such message. */
  retry(clientMsgId: string): OutgoingMessage | undefined {
    return this.#outbox.retry(clientMsgId);
  }

  /** Forgets a `failed` message (failed ones are kept for `retry()` until then). */
  discard(clientMsgId: string): boolean {
    return this.#outbox.discard(clientMsgId);
  }

  /**
   * Where a message stands: `sending`/`failed` for a local record not yet stored, otherwise `sent`,
   * `delivered` (every other member's delivered watermark reached it) or `read` (every other member
   * read it), with counts. O(members).
   */
  statusOf(target: OutgoingMessage | Pick<Message, 'conversationId' | 'seq' | 'senderId'>): MessageStatus {
    return this.#outbox.statusOf(target);
  }

  /** Current watermarks of the known members of a conversation. */
  receipts(conversationId: string): Receipt[] {
    return this.#receipts.watermarks(conversationId);
  }

  /** Moves this user's delivered watermark (never back). */
  async markDelivered(conversationId: string, seq: number): Promise<Receipt> {
    return (await this.request('receipt:mark', { conversationId, delivered: seq })).receipt;
  }

  /** Moves this user's read watermark (read implies delivered). */
  async markRead(conversationId: string, seq: number): Promise<Receipt> {
    this.#receipts.markingRead(conversationId, seq);
    return (await this.request('receipt:mark', { conversationId, read: seq })).receipt;
  }

  /** Call on every keystroke: sends `typing: true` at most every `typingIntervalMs`, `false` after `typingIdleMs` idle. */
  typing(conversationId: string): void {
    if (!this.#ctx.closed) this.#receipts.typing.keystroke(conversationId);
  }

  /** Ends this device's typing now (e.g. the input was cleared). */
  stopTyping(conversationId: string): void {
    this.#receipts.typing.stop(conversationId, { notify: true });
  }

  /** Other members typing in a conversation now. */
  typingIn(conversationId: string): string[] {
    return this.#receipts.typing.typingIn(conversationId);
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

  /** Stores a message for the server to send at `sendAt`, exactly once, even with this device offline then. */
  schedule(input: ScheduleInput): Promise<{ scheduled: ScheduledMessage; duplicate: boolean }> {
    return this.#scheduled.schedule(input);
  }

  /** One page of my pending scheduled messages, soonest first. */
  listScheduled(options: { conversationId?: string; cursor?: string; limit?: number } = {}): Promise<ScheduledPage> {
    return this.#scheduled.list(options);
  }

  /** Changes a pending scheduled message; `scheduled_not_pending` once the server has started sending it. */
  editScheduled(scheduledId: string, change: { body?: string; sendAt?: Date | string }): Promise<ScheduledMessage> {
    return this.#scheduled.edit(scheduledId, change);
  }

  /** Cancels a pending scheduled message: it is never sent. */
  cancelScheduled(scheduledId: string): Promise<ScheduledMessage> {
    return this.#scheduled.cancel(scheduledId);
  }

  // -------------------------------------------------------------------------------------------
  // Threads (threads.ts); replies are sent with `send({ ..., threadRootId })`
  // -------------------------------------------------------------------------------------------

  /**
   * A thread: its root (with `thread`: reply count, last reply time), its replies after `after` in seq
   * order, `hasMore` (ask again with the last reply's seq as `after`), and my `lastReadSeq` and
   * `unreadCount` in it. Rejects with `not_found` for a root I cannot see, `validation` for a reply.
   *
   * @example
   * let page = await client.fetchThread(root.id);
   * while (page.hasMore) page = await client.fetchThread(root.id, { after: page.replies.at(-1)!.seq });
   */
  fetchThread(rootId: string, options: ThreadFetchOptions = {}): Promise<ThreadPage> {
    return this.#threads.fetch(rootId, options);
  }

  /** One page of a conversation's threads, the most recently replied first, each with my unread count; pass `nextCursor` back for more. */
  listThreads(conversationId: string, options: ThreadListOptions = {}): Promise<ThreadListPage> {
    return this.#threads.list(conversationId, options);
  }

  /**
   * Marks a thread read up to `seq` (a reply's seq) for me: the watermark only moves forward and
   * stops at the last reply. Resolves with my read state, also emitted as `threadRead`; my other
   * devices hear `threadRead` when it moved.
   */
  markThreadRead(rootId: string, seq: number): Promise<ThreadRead> {
    return this.#threads.markRead(rootId, seq);
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
    return uploadFile(this.#ctx, body, options);
  }

  /** Short-lived download URLs of an upload in one of my conversations (absolute; valid for UPLOAD_URL_TTL_S). */
  uploadUrls(uploadId: string): Promise<UploadUrls> {
    return uploadUrls(this.#ctx, uploadId);
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
    return this.#ctx.state.since(Date.now() - SETTLE_MS);
  }
}
