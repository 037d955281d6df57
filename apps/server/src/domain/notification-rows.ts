import type { Notification, NotificationKind } from '@chat/protocol';

/** A row of the notifications table as the writer creates it and the inbox reads it. */
export interface NotificationRow {
  id: string;
  recipientId: string;
  type: NotificationKind;
  conversationId: string | null;
  messageId: string | null;
  actorId: string | null;
  preview: string;
  payload: Record<string, unknown>;
  createdAt: Date;
  readAt: Date | null;
}

export function toWireNotification(row: NotificationRow): Notification {
  return {
    id: row.id,
    kind: row.type,
    conversationId: row.conversationId,
    messageId: row.messageId,
    actorId: row.actorId,
    preview: row.preview,
    data: row.payload ?? {},
    createdAt: row.createdAt.toISOString(),
    readAt: row.readAt === null ? null : row.readAt.toISOString(),
  };
}
