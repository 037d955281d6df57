import type {
  Call,
  CallSignalRelay,
  Conversation,
  ConversationArchived,
  ConversationMilestone,
  Message,
  Notification,
  NotificationDeleted,
  NotificationsRead,
  Presence,
  Receipt,
  ScheduledMessage,
  SessionEnding,
  ThreadRead,
} from '@chat/protocol';
import type { ChatError } from './errors.ts';
import type { MessageState } from './state.ts';
import type { TypingEvent } from './typing.ts';

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
  /** A scheduled message of mine changed: created, edited or canceled (here or on another device of mine), or sent or failed by the server. */
  scheduledUpdated: [scheduled: ScheduledMessage];
  /**
   * My read state of a thread: after each `markThreadRead()` on this device (its answer, moved or not)
   * and each move of my watermark on another device of mine. Moves made while this device was
   * disconnected are not replayed by the resync: after `synced`, read `listThreads()` again.
   */
  threadRead: [read: ThreadRead];
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

/** Reports one event to the app's listeners (the client's own `emit`, handed to its modules). */
export type Emit = <E extends keyof ChatClientEvents>(event: E, ...args: ChatClientEvents[E]) => void;
