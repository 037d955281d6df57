import type { ClientPayload, NotificationDeleted, NotificationPage, NotificationsRead } from '@chat/protocol';
import { validate as isUuid } from 'uuid';
import type { Db } from '../db/client.ts';
import { AppError } from '../errors.ts';
import { requireMember } from './access.ts';
import type { Fanout } from './fanout.ts';
import { type NotificationRow, toWireNotification } from './notification-rows.ts';

const LIST_DEFAULT = 30;
/** `conversation:mute` mutes until unmuted; the column also allows timed mutes. */
const MUTED_FOREVER = new Date('9999-12-31T00:00:00Z');

/**
 * The recipient's side of notifications: list, mark read, delete, and mute a conversation (muted
 * conversations produce none). Every change is told to the user's other devices.
 */
export class NotificationInbox {
  readonly #db: Db;
  readonly #fanout: Fanout;

  constructor(db: Db, fanout: Fanout) {
    this.#db = db;
    this.#fanout = fanout;
  }

  async list(userId: string, query: ClientPayload<'notification:list'>): Promise<NotificationPage> {
    const take = Math.min(query.limit ?? LIST_DEFAULT, 100);
    if (query.cursor !== undefined && !isUuid(query.cursor)) throw new AppError('validation', 'cursor: not a cursor this server handed out');
    const rows = await this.#db.notification.findMany({
      where: {
        recipientId: userId,
        ...(query.unreadOnly && { readAt: null }),
        ...(query.cursor !== undefined && { id: { lt: query.cursor } }),
      },
      orderBy: { id: 'desc' },
      take: take + 1,
    });
    const page = rows.slice(0, take);
    return {
      notifications: page.map((row) => toWireNotification(row as NotificationRow)),
      nextCursor: rows.length > take ? page.at(-1)!.id : null,
      unreadCount: await this.#unread(userId),
    };
  }

  /** Marks some or all read; ids that are not the user's (or already read) are left out of the answer. */
  async markRead(userId: string, which: { notificationIds: string[] } | { all: true }, origin?: string): Promise<NotificationsRead> {
    const readAt = new Date();
    let notificationIds: string[] = [];
    if ('all' in which) {
      await this.#db.notification.updateMany({ where: { recipientId: userId, readAt: null, createdAt: { lte: readAt } }, data: { readAt } });
    } else {
      const rows = await this.#db.$queryRaw<Array<{ id: string }>>`
        UPDATE notifications SET read_at = ${readAt}
        WHERE recipient_id = ${userId} AND id = ANY(${which.notificationIds}::uuid[]) AND read_at IS NULL
        RETURNING id::text AS id`;
      notificationIds = rows.map((row) => row.id);
    }
    const result: NotificationsRead = { all: 'all' in which, notificationIds, readAt: readAt.toISOString(), unreadCount: await this.#unread(userId) };
    if (result.all || notificationIds.length > 0) this.#fanout.toUsers([userId], 'notification:read', result, { except: origin });
    return result;
  }

  async delete(userId: string, notificationId: string, origin?: string): Promise<NotificationDeleted> {
    const { count } = await this.#db.notification.deleteMany({ where: { id: notificationId, recipientId: userId } });
    // Someone else's notification looks exactly like a missing one.
    if (count === 0) throw new AppError('not_found', 'Notification not found');
    const result = { notificationId, unreadCount: await this.#unread(userId) };
    this.#fanout.toUsers([userId], 'notification:deleted', result, { except: origin });
    return result;
  }

  async mute(userId: string, conversationId: string, muted: boolean, origin?: string): Promise<{ conversationId: string; muted: boolean }> {
    await requireMember(this.#db, conversationId, userId);
    await this.#db.conversationMember.update({
      where: { conversationId_userId: { conversationId, userId } },
      data: { mutedUntil: muted ? MUTED_FOREVER : null },
    });
    const result = { conversationId, muted };
    this.#fanout.toUsers([userId], 'conversation:muted', result, { except: origin });
    return result;
  }

  async #unread(userId: string): Promise<number> {
    return this.#db.notification.count({ where: { recipientId: userId, readAt: null } });
  }
}
