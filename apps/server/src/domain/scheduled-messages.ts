import type { Attachment, ScheduledMessage, ScheduledPage, ScheduledStatus } from '@chat/protocol';
import { v7 as uuidv7 } from 'uuid';
import type { Db } from '../db/client.ts';
import { AppError } from '../errors.ts';
import { requireMember } from './access.ts';
import { decodeCursor, encodeCursor } from './conversations.ts';
import type { Fanout } from './fanout.ts';
import { iso } from './wire.ts';

/** How far in the past a `sendAt` may be (clock skew between a device and the server). */
const PAST_TOLERANCE_MS = 1000;
const LIST_DEFAULT = 50;
const DAY_MS = 24 * 3600 * 1000;

/** A `scheduled_messages` row as Prisma or the scheduler's statements read it. */
export interface ScheduledRow {
  id: string;
  conversationId: string;
  clientMsgId: string;
  body: string;
  attachments: unknown;
  sendAt: Date | string;
  status: ScheduledStatus;
  messageId: string | null;
  error: string | null;
  createdAt: Date | string;
  updatedAt: Date | string;
}

export function toWireScheduled(row: ScheduledRow): ScheduledMessage {
  return {
    id: row.id,
    conversationId: row.conversationId,
    clientMsgId: row.clientMsgId,
    body: row.body,
    attachments: (row.attachments ?? []) as Attachment[],
    sendAt: iso(row.sendAt),
    status: row.status,
    messageId: row.messageId,
    error: row.error,
    createdAt: iso(row.createdAt),
    updatedAt: iso(row.updatedAt),
  };
}

export interface ScheduleInput {
  conversationId: string;
  clientMsgId: string;
  body: string;
  attachments?: Attachment[] | undefined;
  sendAt: string;
  /** The connection the request came from: it has the answer in its ack, the sender's other devices get a push. */
  origin?: string | undefined;
}

/**
 * Scheduling, listing, editing and canceling messages to be sent later. Only the sender ever sees
 * or touches a scheduled message: anyone else's id answers `not_found`, exactly like a missing one.
 * Sending them is the Scheduler's job (scheduler.ts); every change is pushed to the sender's devices
 * as `message:scheduled-updated`.
 */
export class ScheduledMessageService {
  readonly #db: Db;
  readonly #fanout: Fanout;
  readonly #maxAheadMs: number;
  readonly #maxBodyLength: number;

  constructor(db: Db, fanout: Fanout, options: { maxAheadDays: number; maxBodyLength: number }) {
    this.#db = db;
    this.#fanout = fanout;
    this.#maxAheadMs = options.maxAheadDays * DAY_MS;
    this.#maxBodyLength = options.maxBodyLength;
  }

  /**
   * Stores the message for `sendAt`. Members only (the sender can no longer schedule into a
   * conversation they left). Idempotent per (sender, clientMsgId): a retry answers the stored one
   * with `duplicate: true`; the same id in another conversation, or one a sent message already
   * carries, is a `conflict`.
   */
  async schedule(senderId: string, input: ScheduleInput): Promise<{ scheduled: ScheduledMessage; duplicate: boolean }> {
    this.#checkBody(input.body);
    const sendAt = this.#checkSendAt(input.sendAt);
    const existing = await this.#db.scheduledMessage.findUnique({ where: { senderId_clientMsgId: { senderId, clientMsgId: input.clientMsgId } } });
    if (existing) return { scheduled: this.#asRetry(existing, input.conversationId), duplicate: true };
    await requireMember(this.#db, input.conversationId, senderId);
    const sent = await this.#db.message.findUnique({ where: { senderId_clientMsgId: { senderId, clientMsgId: input.clientMsgId } }, select: { id: true } });
    if (sent) throw new AppError('conflict', 'clientMsgId was already used for a sent message');
    const inserted = await this.#db.scheduledMessage.createManyAndReturn({
      data: [
        {
          id: uuidv7(),
          conversationId: input.conversationId,
          senderId,
          clientMsgId: input.clientMsgId,
          body: input.body,
          attachments: input.attachments ?? [],
          sendAt,
        },
      ],
      skipDuplicates: true,
    });
    const row = inserted[0];
    if (!row) {
      // A retry raced this one past the check above: answer what it stored.
      const raced = await this.#db.scheduledMessage.findUniqueOrThrow({ where: { senderId_clientMsgId: { senderId, clientMsgId: input.clientMsgId } } });
      return { scheduled: this.#asRetry(raced, input.conversationId), duplicate: true };
    }
    const scheduled = toWireScheduled(row);
    this.#fanout.toUsers([senderId], 'message:scheduled-updated', scheduled, { except: input.origin });
    return { scheduled, duplicate: false };
  }

  /** My pending (and being sent) scheduled messages, soonest first; keyset-paged on (sendAt, id). */
  async list(senderId: string, query: { conversationId?: string | undefined; cursor?: string | undefined; limit?: number | undefined }): Promise<ScheduledPage> {
    const take = query.limit ?? LIST_DEFAULT;
    const after = query.cursor ? decodeCursor(query.cursor) : null;
    const rows = await this.#db.scheduledMessage.findMany({
      where: {
        senderId,
        status: { in: ['pending', 'sending'] },
        ...(query.conversationId && { conversationId: query.conversationId }),
        ...(after && { OR: [{ sendAt: { gt: after.at } }, { sendAt: after.at, id: { gt: after.id } }] }),
      },
      orderBy: [{ sendAt: 'asc' }, { id: 'asc' }],
      take: take + 1,
    });
    const page = rows.slice(0, take);
    const last = page.at(-1);
    return { scheduled: page.map(toWireScheduled), nextCursor: rows.length > take && last ? encodeCursor(last.sendAt, last.id) : null };
  }

  /**
   * Changes body and/or time of a pending one. Once a node has claimed it (`sending`) or it is done,
   * `scheduled_not_pending`: the conditional update and the scheduler's claim lock the same row, so
   * exactly one of them wins.
   */
  async edit(senderId: string, scheduledId: string, change: { body?: string | undefined; sendAt?: string | undefined }, origin?: string): Promise<{ scheduled: ScheduledMessage }> {
    if (change.body !== undefined) this.#checkBody(change.body);
    const sendAt = change.sendAt === undefined ? undefined : this.#checkSendAt(change.sendAt);
    return this.#transition(senderId, scheduledId, { ...(change.body !== undefined && { body: change.body }), ...(sendAt && { sendAt }) }, origin);
  }

  /** Cancels a pending one: it is never sent. A claimed or finished one is `scheduled_not_pending`. */
  async cancel(senderId: string, scheduledId: string, origin?: string): Promise<{ scheduled: ScheduledMessage }> {
    return this.#transition(senderId, scheduledId, { status: 'canceled' }, origin);
  }

  /** Tells the sender's devices (all of them) what the scheduler did with their messages. */
  announce(senderId: string, scheduled: ScheduledMessage): void {
    this.#fanout.toUsers([senderId], 'message:scheduled-updated', scheduled);
  }

  async #transition(senderId: string, scheduledId: string, data: { body?: string; sendAt?: Date; status?: 'canceled' }, origin: string | undefined): Promise<{ scheduled: ScheduledMessage }> {
    const updated = await this.#db.scheduledMessage.updateManyAndReturn({
      where: { id: scheduledId, senderId, status: 'pending' },
      data: { ...data, updatedAt: new Date() },
    });
    const row = updated[0];
    if (!row) {
      const current = await this.#db.scheduledMessage.findUnique({ where: { id: scheduledId }, select: { senderId: true, status: true } });
      if (!current || current.senderId !== senderId) throw new AppError('not_found', 'Scheduled message not found');
      throw new AppError('scheduled_not_pending', `The scheduled message is ${current.status}`);
    }
    const scheduled = toWireScheduled(row);
    this.#fanout.toUsers([senderId], 'message:scheduled-updated', scheduled, { except: origin });
    return { scheduled };
  }

  #asRetry(row: ScheduledRow, conversationId: string): ScheduledMessage {
    if (row.conversationId !== conversationId) throw new AppError('conflict', 'clientMsgId was already used for a scheduled message in another conversation');
    return toWireScheduled(row);
  }

  #checkSendAt(value: string): Date {
    const sendAt = new Date(value);
    const now = Date.now();
    if (sendAt.getTime() < now - PAST_TOLERANCE_MS) throw new AppError('send_at_out_of_range', 'sendAt: in the past');
    if (sendAt.getTime() > now + this.#maxAheadMs) throw new AppError('send_at_out_of_range', `sendAt: at most ${this.#maxAheadMs / DAY_MS} days ahead`);
    return sendAt;
  }

  #checkBody(body: string): void {
    if (body.length > this.#maxBodyLength) throw new AppError('validation', `body: at most ${this.#maxBodyLength} characters`);
  }
}
