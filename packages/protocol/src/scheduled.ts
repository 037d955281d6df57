import { z } from 'zod';
import { limits } from './limits.ts';
import { attachmentSchema, bodySchema, clientMsgIdSchema, idSchema, type Attachment } from './schemas.ts';

/** When a scheduled message is due: an ISO timestamp with offset, at most 1 s in the past. */
const sendAtSchema = z.iso.datetime({ offset: true });

/**
 * Store a message to be sent at `sendAt` through the normal send path, by whichever node is up then.
 * `clientMsgId` is the message's own: retrying the schedule returns the stored one, and the sent
 * message carries it.
 */
export const scheduleMessageSchema = z
  .object({
    conversationId: idSchema,
    clientMsgId: clientMsgIdSchema,
    body: bodySchema,
    attachments: z.array(attachmentSchema).max(limits.attachmentsPerMessage).optional(),
    sendAt: sendAtSchema,
  })
  .strict();

/** My pending scheduled messages (all conversations, or one), soonest first. */
export const scheduledListSchema = z.object({ conversationId: idSchema.optional(), cursor: z.string().max(200).optional(), limit: z.number().int().min(1).max(limits.pageSize).optional() }).strict();

/** Change the body, the time or both of one of my pending scheduled messages. */
export const scheduledEditSchema = z
  .object({ scheduledId: idSchema, body: bodySchema.optional(), sendAt: sendAtSchema.optional() })
  .strict()
  .refine((value) => value.body !== undefined || value.sendAt !== undefined, 'give body, sendAt or both');

export const scheduledCancelSchema = z.object({ scheduledId: idSchema }).strict();

/**
 * `pending` until due; `sending` while a node holds it (a lease: if that node dies, another takes it
 * over when the lease ends); then `sent` (with `messageId`), or `failed` (with `error`, a catalog
 * code: `not_found` when the sender is no longer a member), or `canceled` by the sender.
 */
export type ScheduledStatus = 'pending' | 'sending' | 'sent' | 'canceled' | 'failed';

/** A scheduled message as its sender sees it; nobody else ever does. */
export interface ScheduledMessage {
  id: string;
  conversationId: string;
  clientMsgId: string;
  body: string;
  attachments: Attachment[];
  sendAt: string;
  status: ScheduledStatus;
  /** The message it became, once `sent`. */
  messageId: string | null;
  /** Why it `failed`: an error code of the catalog. */
  error: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface ScheduledPage {
  /** Pending (and being sent) ones, soonest `sendAt` first. */
  scheduled: ScheduledMessage[];
  /** Pass as `cursor` for the next page; null at the end. */
  nextCursor: string | null;
}
