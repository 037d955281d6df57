import { type ClientEventName, type ClientEventResults, type Conversation, type Message, type Receipt, SYSTEM_SENDER_ID } from '@chat/protocol';
import type { ChatSocket } from './connection.ts';
import type { ClientContext } from './context.ts';
import type { Outbox } from './outbox.ts';
import type { Receipts } from './receipts.ts';
import type { ConversationState, Source } from './state.ts';

/**
 * The one path by which server changes (pushes, ack results, sync answers) reach the client's state
 * and the app: deduplicated by id and version, new messages reported once and in seq order.
 */
export class Changes {
  readonly #ctx: ClientContext;
  readonly #outbox: Outbox;
  readonly #receipts: Receipts;
  readonly #gapOpened: () => void;
  // While a connection is being set up (identity, then baseline or resync), pushes queue here and are
  // applied after the sync answer, so nothing is applied out of order, lost or reported twice.
  #holding = false;
  #held: Array<() => void> = [];

  /** `gapOpened` is called when a new message waits behind a missing one. */
  constructor(ctx: ClientContext, parts: { outbox: Outbox; receipts: Receipts; gapOpened: () => void }) {
    this.#ctx = ctx;
    this.#outbox = parts.outbox;
    this.#receipts = parts.receipts;
    this.#gapOpened = parts.gapOpened;
  }

  /** Whether live changes are being held for a connection's set-up. */
  get holding(): boolean {
    return this.#holding;
  }

  /** A connection is being set up: live changes wait until {@link release}. */
  hold(): void {
    this.#holding = true;
  }

  /** The set-up is done: applies what was held, in arrival order. */
  release(): void {
    this.#holding = false;
    const held = this.#held;
    this.#held = [];
    for (const apply of held) apply();
  }

  dropHeld(): void {
    this.#held = [];
  }

  /** Applies a live change now, or after the running set-up. */
  live(apply: () => void): void {
    if (this.#holding) this.#held.push(apply);
    else apply();
  }

  /** Applies the server's pushes and forwards the ones that only need reporting. */
  listen(socket: ChatSocket): void {
    const ctx = this.#ctx;
    socket.on('message:new', (message) => this.#push(() => this.applyMessage(message, 'new'), message));
    socket.on('message:updated', (message) => this.#push(() => this.applyMessage(message, 'updated'), message));
    socket.on('message:hidden', ({ conversationId, messageId }) => this.live(() => this.applyHidden(conversationId, messageId)));
    socket.on('conversation:updated', (conversation) => this.live(() => this.applyConversation(conversation, true)));
    socket.on('conversation:removed', ({ conversationId }) => this.live(() => this.removeConversation(conversationId)));
    socket.on('receipt:updated', (receipt) => this.live(() => this.applyReceipt(receipt)));
    socket.on('typing:updated', (event) => this.#receipts.typing.remote(event));
    socket.on('presence:updated', (presence) => ctx.emit('presence', presence));
    socket.on('notification:new', (event) => {
      ctx.unreadNotifications = event.unreadCount;
      ctx.emit('notification', event);
    });
    socket.on('notification:read', (event) => {
      ctx.unreadNotifications = event.unreadCount;
      ctx.emit('notificationsRead', event);
    });
    socket.on('notification:deleted', (event) => {
      ctx.unreadNotifications = event.unreadCount;
      ctx.emit('notificationDeleted', event);
    });
    socket.on('conversation:muted', (event) => ctx.emit('conversationMuted', event));
    socket.on('conversation:archived', (event) => this.live(() => this.setArchived(event.conversationId, event.archived)));
    socket.on('conversation:milestone', (event) => ctx.emit('milestone', event));
    socket.on('message:scheduled-updated', (scheduled) => ctx.emit('scheduledUpdated', scheduled));
    socket.on('thread:read', (read) => ctx.emit('threadRead', read));
    socket.on('call:ringing', (call) => ctx.emit('callRinging', call));
    socket.on('call:updated', (call) => ctx.emit('callUpdated', call));
    socket.on('call:signal', (event) => ctx.emit('callSignal', event));
  }

  /** Applies what an ok-result of `event` says about conversations, messages, receipts and notifications. */
  absorb(event: ClientEventName, result: object, at: number): void {
    switch (event) {
      case 'conversation:open-direct':
      case 'conversation:create-group':
      case 'conversation:add-members':
      case 'conversation:remove-member':
      case 'conversation:rename':
      case 'conversation:get':
        this.applyConversation((result as { conversation: Conversation }).conversation, false);
        break;
      case 'conversation:list':
        for (const conversation of (result as ClientEventResults['conversation:list']).conversations) {
          this.applyConversation(conversation, false);
          this.setArchived(conversation.id, conversation.archived);
        }
        break;
      case 'conversation:archive': {
        const { conversationId, archived } = result as ClientEventResults['conversation:archive'];
        this.setArchived(conversationId, archived);
        break;
      }
      case 'conversation:leave':
        this.removeConversation((result as ClientEventResults['conversation:leave']).conversationId);
        break;
      case 'message:send':
      case 'message:edit':
      case 'message:react':
      case 'message:delete': {
        const message = (result as { message: Message | null }).message;
        if (!message) break;
        this.applyMessage(message, event === 'message:send' ? 'new' : 'updated');
        this.#ctx.state.get(message.conversationId)?.noteLive(message.version, at);
        break;
      }
      case 'receipt:mark':
        this.applyReceipt((result as ClientEventResults['receipt:mark']).receipt);
        break;
      case 'notification:list':
      case 'notification:mark-read':
      case 'notification:delete':
        this.#ctx.unreadNotifications = (result as { unreadCount: number }).unreadCount;
        break;
      default:
        break;
    }
  }

  applyMessage(message: Message, source: Source): void {
    const state = this.#ctx.state.ensure(message.conversationId);
    const applied = state.apply(message, source);
    if (applied === 'stale') return;
    if (applied === 'updated') {
      this.#ctx.emit('messageUpdated', message);
      return;
    }
    const ready = state.admit(message);
    for (const next of ready) this.reportNew(state, next);
    if (ready.length === 0) this.#gapOpened();
  }

  /** A new message, in seq order: reported once, with its typing and receipt side effects. */
  reportNew(state: ConversationState, message: Message): void {
    this.#ctx.emit('message', message);
    const userId = this.#ctx.userId;
    this.#receipts.typing.messageFrom(message.conversationId, message.senderId);
    if (message.senderId === userId) {
      // Own messages still in the outbox are watched from their ack on, so `sent` comes first.
      if (!this.#outbox.has(message.clientMsgId)) this.#outbox.trackOwn(state, message, message.clientMsgId);
    } else if (this.#ctx.config.autoDelivered) {
      this.#receipts.queueDelivered(state, message.seq);
    }
    // Sending moves the sender's own watermarks to the message (the server does so in the same
    // statement) without a receipt push: the message itself says so. The system sender is no
    // member and has none.
    if (message.kind !== 'system' && message.senderId !== userId && message.senderId !== SYSTEM_SENDER_ID)
      this.applyReceipt({ conversationId: message.conversationId, userId: message.senderId, lastDeliveredSeq: message.seq, lastReadSeq: message.seq });
  }

  applyHidden(conversationId: string, messageId: string): void {
    if (this.#ctx.state.ensure(conversationId).hide(messageId)) this.#ctx.emit('messageHidden', { conversationId, messageId });
  }

  applyConversation(conversation: Conversation, announce: boolean): void {
    const state = this.#ctx.state.ensure(conversation.id);
    // The first thing known of a conversation positions it: new messages follow its lastSeq.
    state.reportedSeq ??= conversation.lastSeq;
    const moved = state.mergeMembers(conversation);
    if (announce) this.#ctx.emit('conversation', conversation);
    for (const receipt of moved) this.#ctx.emit('receipt', receipt);
    this.#outbox.progressOwn(state);
  }

  applyReceipt(receipt: Receipt): void {
    const state = this.#ctx.state.ensure(receipt.conversationId);
    const moved = state.mergeReceipt(receipt.userId, receipt.lastDeliveredSeq, receipt.lastReadSeq);
    if (!moved) return;
    this.#ctx.emit('receipt', moved);
    this.#outbox.progressOwn(state);
  }

  setArchived(conversationId: string, archived: boolean): void {
    const set = this.#ctx.archived;
    if (set.has(conversationId) === archived) return;
    if (archived) set.add(conversationId);
    else set.delete(conversationId);
    this.#ctx.emit('conversationArchived', { conversationId, archived });
  }

  removeConversation(conversationId: string): void {
    this.#receipts.forget(conversationId);
    this.#ctx.archived.delete(conversationId);
    if (this.#ctx.state.remove(conversationId)) this.#ctx.emit('conversationRemoved', { conversationId });
  }

  #push(apply: () => void, message: Message): void {
    const at = Date.now();
    this.live(() => {
      apply();
      this.#ctx.state.get(message.conversationId)?.noteLive(message.version, at);
    });
  }
}
