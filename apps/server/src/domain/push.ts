import type { Call, Notification } from '@chat/protocol';

/** What is pushed to a user who has no connected device. */
export type PushEvent = { type: 'notification'; recipientId: string; notification: Notification; unreadCount: number } | { type: 'call'; recipientId: string; call: Call };

/**
 * Reaches users outside their sockets (an operator's push service). `send` never throws and never
 * waits: delivery happens in the background, best effort, and nothing in the domain depends on it.
 */
export interface PushPublisher {
  send(event: PushEvent): void;
}
