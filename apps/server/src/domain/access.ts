import type { Prisma } from '../generated/prisma/client.ts';
import type { Db } from '../db/client.ts';
import { AppError } from '../errors.ts';
import { messageInclude, type MessageRow } from './wire.ts';

/** A Prisma client or an interactive transaction: domain helpers work inside and outside one. */
export type Tx = Db | Prisma.TransactionClient;

/**
 * The caller's current membership, or `not_found`. Non-members get exactly the answer a missing
 * conversation gets, so ids of other people's conversations cannot be probed.
 */
export async function requireMember(tx: Tx, conversationId: string, userId: string) {
  const member = await tx.conversationMember.findUnique({
    where: { conversationId_userId: { conversationId, userId } },
    include: { conversation: { select: { kind: true, ownerId: true } } },
  });
  if (!member || member.leftAt !== null) throw new AppError('not_found', 'Conversation not found');
  return member;
}

/**
 * Users are created from token claims when they connect; someone added to a conversation before
 * their first connect gets a row named by their id, which their first connect then renames.
 */
export async function ensureUsersExist(tx: Tx, userIds: readonly string[]): Promise<void> {
  if (userIds.length === 0) return;
  await tx.user.createMany({ data: userIds.map((id) => ({ id, displayName: id })), skipDuplicates: true });
}

/**
 * Takes the conversation's row lock and the next version (and, for a new message, the next seq).
 * Every write to a conversation goes through here, so versions and seqs are assigned in commit order.
 */
export async function bumpConversation(tx: Tx, conversationId: string, options: { newMessage: boolean }): Promise<{ lastSeq: number; version: number }> {
  const rows = options.newMessage
    ? await tx.$queryRaw<Array<{ lastSeq: number; version: number }>>`
        UPDATE conversations SET last_seq = last_seq + 1, version = version + 1, last_activity_at = now()
        WHERE id = ${conversationId}::uuid RETURNING last_seq AS "lastSeq", version`
    : await tx.$queryRaw<Array<{ lastSeq: number; version: number }>>`
        UPDATE conversations SET version = version + 1
        WHERE id = ${conversationId}::uuid RETURNING last_seq AS "lastSeq", version`;
  const row = rows[0];
  if (!row) throw new AppError('not_found', 'Conversation not found');
  return { lastSeq: Number(row.lastSeq), version: Number(row.version) };
}

/**
 * A message the actor may see: in a conversation they are a current member of, above their hide
 * watermark; else `not_found`, exactly like a missing one. Answers their hide watermark too.
 */
export async function visibleMessage(tx: Tx, actorId: string, messageId: string): Promise<{ message: MessageRow; hiddenBeforeSeq: number }> {
  const message = await tx.message.findUnique({ where: { id: messageId }, include: messageInclude });
  if (!message) throw new AppError('not_found', 'Message not found');
  const member = await tx.conversationMember.findUnique({ where: { conversationId_userId: { conversationId: message.conversationId, userId: actorId } } });
  if (!member || member.leftAt !== null || message.seq <= member.hiddenBeforeSeq) throw new AppError('not_found', 'Message not found');
  return { message: message as MessageRow, hiddenBeforeSeq: member.hiddenBeforeSeq };
}
