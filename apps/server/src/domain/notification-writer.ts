import { backoffDelay, SYSTEM_SENDER_ID, type ConversationKind, type Message, type Notification, type NotificationKind } from '@chat/protocol';
import { setTimeout as sleep } from 'node:timers/promises';
import { v7 as uuidv7 } from 'uuid';
import type { Db } from '../db/client.ts';
import type { PresenceStore } from '../state/presence.ts';
import { BackgroundDrain } from './background-drain.ts';
import type { Fanout } from './fanout.ts';
import { type NotificationRow as Row, toWireNotification } from './notification-rows.ts';
import type { PushPublisher } from './push.ts';
import type { ServiceLog } from '../logger.ts';

/** What producers report; turned into notification rows by the background writer. */
type Intent =
  | { type: 'message'; message: Message; memberIds: readonly string[] }
  | {
      type: 'direct';
      kind: NotificationKind;
      recipientIds: readonly string[];
      conversationId: string | null;
      messageId: string | null;
      actorId: string | null;
      preview: string;
      payload?: Record<string, unknown>;
    };

export interface NotificationOptions {
  /** Where notifications for recipients without a connected device go; none without one. */
  push: PushPublisher | null;
  log: ServiceLog;
}

const PREVIEW_LENGTH = 140;
const BATCH = 256;
/** Reports waiting beyond this (the database far behind) are dropped, so memory stays bounded. */
const MAX_QUEUE = 100_000;
const WRITE_ATTEMPTS = 3;

/**
 * Writes notifications per recipient: a message while the recipient has no connected device, a
 * mention in a group, a reaction to one's message, being added to a group, system notices. Muted
 * conversations produce none. Reading them is NotificationInbox's.
 *
 * Producers (message sends, reactions, membership) report after their own commit and never wait:
 * the reports queue here and one background loop handles them in batches — one presence lookup, a
 * member query only for conversations where a mention or an offline recipient may notify, one insert
 * and one unread count query — then tells every device of each
 * recipient (`notification:new`) and pushes the ones for recipients without a connected device
 * (PushPublisher). The send path pays one array push. The price: a node that dies between a message's
 * commit and this write loses that message's notifications (the message itself is safe).
 */
export class NotificationWriter {
  readonly #db: Db;
  readonly #presence: PresenceStore;
  readonly #fanout: Fanout;
  readonly #options: NotificationOptions;
  #queue: Intent[] = [];
  readonly #loop = new BackgroundDrain(
    () => this.#drain(),
    () => this.#queue.length > 0,
  );
  #dropped = 0;

  constructor(db: Db, presence: PresenceStore, fanout: Fanout, options: NotificationOptions) {
    this.#db = db;
    this.#presence = presence;
    this.#fanout = fanout;
    this.#options = options;
  }

  // -------------------------------------------------------------------------------------------
  // Producers: called after a commit; never throw, never wait.
  // -------------------------------------------------------------------------------------------

  /** @param memberIds the members when the message was written (the writer knows them anyway). */
  messageSent(message: Message, memberIds: readonly string[]): void {
    this.#enqueue({ type: 'message', message, memberIds });
  }

  /** To the message's sender, unless they reacted themself or the sender is the system (no one to tell). */
  reacted(message: Message, actorId: string, emoji: string): void {
    if (message.senderId === actorId || message.senderId === SYSTEM_SENDER_ID) return;
    this.#enqueue({ type: 'direct', kind: 'reaction', recipientIds: [message.senderId], conversationId: message.conversationId, messageId: message.id, actorId, preview: emoji });
  }

  addedToGroup(conversationId: string, title: string | null, actorId: string, userIds: readonly string[]): void {
    const recipientIds = userIds.filter((id) => id !== actorId);
    if (recipientIds.length === 0) return;
    this.#enqueue({ type: 'direct', kind: 'group_added', recipientIds, conversationId, messageId: null, actorId, preview: title ?? '' });
  }

  system(userId: string, preview: string, options: { conversationId?: string | null; actorId?: string | null; payload?: Record<string, unknown> } = {}): void {
    this.#enqueue({
      type: 'direct',
      kind: 'system',
      recipientIds: [userId],
      conversationId: options.conversationId ?? null,
      messageId: null,
      actorId: options.actorId ?? null,
      preview: clip(preview),
      ...(options.payload && { payload: options.payload }),
    });
  }

  /** Resolves once everything reported so far is written and announced (shutdown, tests). */
  idle(): Promise<void> {
    return this.#loop.idle();
  }

  // -------------------------------------------------------------------------------------------
  // The background writer
  // -------------------------------------------------------------------------------------------

  #enqueue(intent: Intent): void {
    if (this.#queue.length >= MAX_QUEUE) {
      if (this.#dropped++ % 10_000 === 0) this.#options.log.warn({ dropped: this.#dropped }, 'notifications: writer far behind; dropping reports');
      return;
    }
    this.#queue.push(intent);
    this.#loop.kick();
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, BATCH);
      for (let attempt = 1; ; attempt++) {
        try {
          await this.#process(batch);
          break;
        } catch (error) {
          if (attempt >= WRITE_ATTEMPTS) {
            this.#options.log.error({ err: error, intents: batch.length }, 'notifications: batch dropped after retries');
            break;
          }
          this.#options.log.warn({ err: error, attempt }, 'notifications: batch failed; retrying');
          await sleep(backoffDelay(attempt + 1, { initialMs: 100, maxMs: 5000 }));
        }
      }
    }
  }

  async #process(batch: Intent[]): Promise<void> {
    const sends = batch.flatMap((intent) => (intent.type === 'message' && intent.message.kind !== 'system' ? [intent] : []));
    const messages = sends.map((intent) => intent.message);
    const directs = batch.flatMap((intent) => (intent.type === 'direct' ? [intent] : []));

    // Presence first: in the common case (everyone online, nobody @-mentioned) a message needs no
    // query at all. Conversations are loaded only where a mention or an offline recipient may notify.
    const online = await this.#online([...new Set([...sends.flatMap((s) => s.memberIds.filter((id) => id !== s.message.senderId)), ...directs.flatMap((d) => d.recipientIds)])]);
    const needed = new Set<string>();
    for (const { message, memberIds } of sends) {
      if (message.body.includes('@') || memberIds.some((id) => id !== message.senderId && !online.has(id))) needed.add(message.conversationId);
    }
    for (const intent of directs) if (intent.conversationId) needed.add(intent.conversationId);
    const conversationIds = [...needed];

    const members =
      conversationIds.length === 0
        ? []
        : await this.#db.$queryRaw<Array<{ conversationId: string; userId: string; displayName: string; muted: boolean; kind: ConversationKind }>>`
      SELECT cm.conversation_id::text AS "conversationId", cm.user_id AS "userId", u.display_name AS "displayName",
             COALESCE(cm.muted_until > now(), false) AS muted, c.kind::text AS kind
      FROM conversation_members cm
      JOIN users u ON u.id = cm.user_id
      JOIN conversations c ON c.id = cm.conversation_id
      WHERE cm.conversation_id = ANY(${conversationIds}::uuid[]) AND cm.left_at IS NULL`;
    const byConversation = new Map<string, typeof members>();
    for (const member of members) {
      const list = byConversation.get(member.conversationId) ?? [];
      list.push(member);
      byConversation.set(member.conversationId, list);
    }
    const muted = new Set(members.filter((m) => m.muted).map((m) => `${m.conversationId}|${m.userId}`));

    const rows: Row[] = [];
    const now = new Date();
    const row = (fields: Omit<Row, 'id' | 'createdAt' | 'readAt' | 'payload'> & { payload?: Record<string, unknown> }): Row => ({
      id: uuidv7(),
      createdAt: now,
      readAt: null,
      ...fields,
      payload: fields.payload ?? {},
    });

    for (const message of messages) {
      // Not loaded: every recipient is online and nobody is mentioned.
      const conversation = byConversation.get(message.conversationId) ?? [];
      // A mention needs an '@': without one, no member's pattern is built.
      const mayMention = conversation[0]?.kind === 'group' && message.body.includes('@');
      for (const member of conversation) {
        if (member.userId === message.senderId || member.muted) continue;
        const kind = mayMention && mentions(message.body, member) ? 'mention' : online.has(member.userId) ? null : 'message';
        if (kind) rows.push(row({ recipientId: member.userId, type: kind, conversationId: message.conversationId, messageId: message.id, actorId: message.senderId, preview: clip(message.body) }));
      }
    }
    for (const intent of directs) {
      for (const recipientId of intent.recipientIds) {
        if (intent.conversationId && muted.has(`${intent.conversationId}|${recipientId}`)) continue;
        rows.push(
          row({
            recipientId,
            type: intent.kind,
            conversationId: intent.conversationId,
            messageId: intent.messageId,
            actorId: intent.actorId,
            preview: intent.preview,
            ...(intent.payload && { payload: intent.payload }),
          }),
        );
      }
    }

    if (rows.length > 0) {
      await this.#db.notification.createMany({
        data: rows.map(({ payload, ...rest }) => ({ ...rest, payload: payload as object })),
      });
    }
    // Written: from here on a failure must not make the drain loop write the batch again.
    try {
      if (rows.length > 0) await this.#announce(rows, online);
    } catch (error) {
      this.#options.log.warn({ err: error }, 'notifications: written, but announcing them failed');
    }
  }

  /** `notification:new` to every device of each recipient, and a push for those with none connected. */
  async #announce(rows: Row[], online: Set<string>): Promise<void> {
    const recipients = [...new Set(rows.map((r) => r.recipientId))];
    const counts = await this.#db.notification.groupBy({ by: ['recipientId'], where: { recipientId: { in: recipients }, readAt: null }, _count: { _all: true } });
    const unread = new Map(counts.map((c) => [c.recipientId, c._count._all]));
    // Each event carries the count as it was right after that notification: later ones of the batch not yet counted.
    const later = new Map<string, number>();
    const events: Array<[string, { notification: Notification; unreadCount: number }]> = [];
    for (let i = rows.length - 1; i >= 0; i--) {
      const entry = rows[i]!;
      const after = later.get(entry.recipientId) ?? 0;
      later.set(entry.recipientId, after + 1);
      events.push([entry.recipientId, { notification: toWireNotification(entry), unreadCount: Math.max(0, (unread.get(entry.recipientId) ?? 0) - after) }]);
    }
    for (const [recipientId, event] of events.reverse()) {
      this.#fanout.toUsers([recipientId], 'notification:new', event);
      if (!online.has(recipientId)) this.#options.push?.send({ type: 'notification', recipientId, ...event });
    }
  }

  /** Which of these users have a connected device. If presence cannot be read, everyone counts as online: no spurious pushes. */
  async #online(userIds: string[]): Promise<Set<string>> {
    if (userIds.length === 0) return new Set();
    try {
      // Each as seen by themselves: an invisible user still has a connected device.
      return new Set((await this.#presence.get(userIds, { selfView: true })).filter((view) => view.online).map((view) => view.userId));
    } catch (error) {
      this.#options.log.warn({ err: error }, 'notifications: presence unavailable; treating recipients as online');
      return new Set(userIds);
    }
  }
}

/** `@userId` or `@displayName` (case-insensitive), not followed by more name characters. */
function mentions(body: string, member: { userId: string; displayName: string }): boolean {
  const names = [member.userId, member.displayName].filter(Boolean).map(escapeRegExp);
  return new RegExp(`(^|[^\\p{L}\\p{N}_])@(${names.join('|')})(?![\\p{L}\\p{N}_])`, 'iu').test(body);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function clip(text: string): string {
  return text.length <= PREVIEW_LENGTH ? text : `${text.slice(0, PREVIEW_LENGTH - 1)}…`;
}
