import { z } from 'zod';
import type { AckFn } from './ack.ts';
import type { DisconnectReason } from './errors.ts';
import { limits } from './limits.ts';
import { scheduledCancelSchema, scheduledEditSchema, scheduledListSchema, scheduleMessageSchema, type ScheduledMessage, type ScheduledPage } from './scheduled.ts';
import {
  attachmentSchema,
  bodySchema,
  cleanText,
  callMediaSchema,
  callSignalSchema,
  clientMsgIdSchema,
  cursorSchema,
  deleteScopeSchema,
  emojiSchema,
  idSchema,
  messageKindSchema,
  presenceStatusSchema,
  reactionActionSchema,
  seqSchema,
  titleSchema,
  userIdSchema,
  type Conversation,
  type Call,
  type CallSignal,
  type ConversationSummary,
  type Message,
  type Notification,
  type Presence,
  type PresenceStatus,
  type Receipt,
  type SearchHit,
  type User,
} from './schemas.ts';
import { threadFetchSchema, threadListSchema, threadMarkReadSchema, type ThreadListPage, type ThreadPage, type ThreadRead } from './threads.ts';
import { createUploadSchema, uploadIdPayloadSchema, type Upload, type UploadSlot, type UploadUrls } from './uploads.ts';

const pageLimit = z.number().int().min(1).max(limits.pageSize).optional();

export const sendMessageSchema = z
  .object({
    conversationId: idSchema,
    /** Chosen by the device; retrying with the same id returns the original message. */
    clientMsgId: clientMsgIdSchema,
    body: bodySchema,
    kind: messageKindSchema.optional(),
    attachments: z.array(attachmentSchema).max(limits.attachmentsPerMessage).optional(),
    replyToId: idSchema.optional(),
    /** Send as a reply in this message's thread (a message of the same conversation that is not itself a reply). */
    threadRootId: idSchema.optional(),
  })
  .strict();

export const receiptMarkSchema = z
  .object({ conversationId: idSchema, delivered: seqSchema.optional(), read: seqSchema.optional() })
  .strict()
  .refine((value) => value.delivered !== undefined || value.read !== undefined, 'give delivered, read or both');

export const historySchema = z
  .object({ conversationId: idSchema, before: seqSchema.optional(), after: seqSchema.optional(), limit: pageLimit })
  .strict()
  .refine((value) => value.before === undefined || value.after === undefined, 'give before or after, not both');

export const syncSchema = z
  .object({
    /** What the device has seen: per conversation, the highest version it holds. Unknown conversations count as 0. */
    since: z.array(z.object({ conversationId: idSchema, version: seqSchema }).strict()).max(10_000),
    /** Most changed messages returned per conversation; `hasMore` says when to ask again. */
    limit: pageLimit,
  })
  .strict();

export const markNotificationsReadSchema = z.union([z.object({ notificationIds: z.array(idSchema).min(1).max(limits.notificationBatch) }).strict(), z.object({ all: z.literal(true) }).strict()]);

/**
 * Full-text search over the messages of the conversations the caller is a current member of.
 * `query` is web-search syntax: words (all must match), "quoted phrases", `or`, and `-word` to
 * exclude; text without any searchable word matches nothing. `before`/`after` bound the sending
 * time (exclusive); `cursor` is the `nextCursor` of the previous page of the same search.
 */
export const searchMessagesSchema = z
  .object({
    query: z
      .string()
      .max(limits.searchQuery * 2)
      .transform(cleanText)
      .pipe(z.string().min(1, 'must not be empty').max(limits.searchQuery)),
    conversationId: idSchema.optional(),
    senderId: userIdSchema.optional(),
    before: z.iso.datetime({ offset: true }).optional(),
    after: z.iso.datetime({ offset: true }).optional(),
    hasAttachment: z.boolean().optional(),
    limit: z.number().int().min(1).max(limits.searchPage).optional(),
    cursor: cursorSchema.optional(),
  })
  .strict();

const callIdPayload = z.object({ callId: idSchema }).strict();

/**
 * Every client→server event with its payload schema, defined once. Server handlers, REST routes, the
 * SDK and the load generator all derive their types from here.
 */
export const clientEventSchemas = {
  /** Who am I on this connection: the authenticated user, node and token expiry. */
  'session:info': z.object({}).strict(),

  'conversation:open-direct': z.object({ userId: userIdSchema }).strict(),
  'conversation:create-group': z.object({ title: titleSchema, memberIds: z.array(userIdSchema).max(limits.groupMembers) }).strict(),
  'conversation:add-members': z.object({ conversationId: idSchema, userIds: z.array(userIdSchema).min(1).max(limits.groupMembers) }).strict(),
  'conversation:remove-member': z.object({ conversationId: idSchema, userId: userIdSchema }).strict(),
  'conversation:rename': z.object({ conversationId: idSchema, title: titleSchema }).strict(),
  'conversation:leave': z.object({ conversationId: idSchema }).strict(),
  'conversation:get': z.object({ conversationId: idSchema }).strict(),
  /** My conversations; archived ones only with `archived: true`, the others only without it. */
  'conversation:list': z.object({ cursor: cursorSchema.optional(), limit: pageLimit, archived: z.boolean().optional() }).strict(),

  'message:send': sendMessageSchema,
  'message:edit': z.object({ messageId: idSchema, body: bodySchema }).strict(),
  'message:delete': z.object({ messageId: idSchema, scope: deleteScopeSchema }).strict(),
  'message:react': z.object({ messageId: idSchema, emoji: emojiSchema, action: reactionActionSchema }).strict(),

  /** Typing state of the caller in a conversation; expires on its own ~6 s after the last `true`. */
  'typing:set': z.object({ conversationId: idSchema, typing: z.boolean() }).strict(),
  /** Who is typing in a conversation now (for a client opening it). */
  'typing:list': z.object({ conversationId: idSchema }).strict(),

  /** My presence status, on all my devices; `invisible` looks offline to others. */
  'presence:set-status': z.object({ status: presenceStatusSchema }).strict(),
  /** Current presence of users I share a conversation with (others are left out, not revealed). */
  'presence:get': z.object({ userIds: z.array(userIdSchema).min(1).max(limits.presenceQuery) }).strict(),

  'receipt:mark': receiptMarkSchema,
  'history:fetch': historySchema,
  'sync:changes': syncSchema,
  /** Ranked full-text search over my current conversations, with highlighted plain-text snippets. */
  'message:search': searchMessagesSchema,

  /** A thread's root and its replies after a seq, with my read state of it. */
  'thread:fetch': threadFetchSchema,
  /** A conversation's threads, the most recently replied first, each with my unread count. */
  'thread:list': threadListSchema,
  /** Move my read watermark of a thread forward; my other devices get `thread:read`. */
  'thread:mark-read': threadMarkReadSchema,

  /** My notifications, newest first, with my unread count. */
  'notification:list': z.object({ cursor: cursorSchema.optional(), limit: pageLimit, unreadOnly: z.boolean().optional() }).strict(),
  /** Mark some (by id) or all of my notifications read; every device of mine gets `notification:read`. */
  'notification:mark-read': markNotificationsReadSchema,
  'notification:delete': z.object({ notificationId: idSchema }).strict(),
  /** Mute or unmute a conversation for me: a muted conversation produces no notifications. */
  'conversation:mute': z.object({ conversationId: idSchema, muted: z.boolean() }).strict(),
  /**
   * Archive or unarchive a conversation for me, on all my devices: it leaves my default list. A new
   * message from another member unarchives it, unless I muted it.
   */
  'conversation:archive': z.object({ conversationId: idSchema, archived: z.boolean() }).strict(),

  /** Send a message later (`sendAt`), exactly once, by whichever node is up then; members only. */
  'message:schedule': scheduleMessageSchema,
  /** My pending scheduled messages, soonest first. */
  'message:scheduled-list': scheduledListSchema,
  /** Change a pending scheduled message of mine; `scheduled_not_pending` once it is being sent or done. */
  'message:scheduled-edit': scheduledEditSchema,
  /** Cancel a pending scheduled message of mine: it is never sent. */
  'message:scheduled-cancel': scheduledCancelSchema,

  /** Place a call from this device: every device of the callee gets `call:ringing`. */
  'call:invite': z.object({ calleeId: userIdSchema, media: callMediaSchema }).strict(),
  /** Answer a ringing call on this device; the first accept wins, the other devices get `call:updated`. */
  'call:accept': callIdPayload,
  /** The callee declines a ringing call. */
  'call:reject': callIdPayload,
  /** The caller gives up on a ringing call. */
  'call:cancel': callIdPayload,
  /** Either party hangs up an accepted call (or a ringing one: the caller cancels, the callee rejects). */
  'call:end': callIdPayload,
  /** Relay an SDP offer/answer or an ICE candidate to the other device in the call. */
  'call:signal': z.object({ callId: idSchema, signal: callSignalSchema }).strict(),
  'call:get': callIdPayload,

  /** A slot for one file in a conversation I am a member of: PUT the bytes to its URL, then `upload:complete`. */
  'upload:create': createUploadSchema,
  /** The bytes are in: the server checks size and type from the bytes and makes the upload ready to attach. */
  'upload:complete': uploadIdPayloadSchema,
  /** Short-lived download URLs for an upload of a conversation I am a member of. */
  'upload:url': uploadIdPayloadSchema,
} as const;

export type ClientEventName = keyof typeof clientEventSchemas;
export type ClientPayload<E extends ClientEventName> = z.input<(typeof clientEventSchemas)[E]>;
export type ParsedPayload<E extends ClientEventName> = z.output<(typeof clientEventSchemas)[E]>;

export interface ConversationChanges {
  conversation: Conversation;
  /** Messages created or changed after the version the device gave, oldest change first. */
  messages: Message[];
  /** Messages this user deleted for themself (on any device) after that version. */
  hiddenMessageIds: string[];
  /** More changes than `limit`: ask again with the highest version received. */
  hasMore: boolean;
}

/** What each client→server event answers through its ack, on success. */
export interface ClientEventResults {
  'session:info': { user: User; nodeId: string; socketId: string; expiresAt: string | null };
  'conversation:open-direct': { conversation: Conversation; created: boolean };
  'conversation:create-group': { conversation: Conversation };
  'conversation:add-members': { conversation: Conversation };
  'conversation:remove-member': { conversation: Conversation };
  'conversation:rename': { conversation: Conversation };
  'conversation:leave': { conversationId: string };
  'conversation:get': { conversation: Conversation };
  'conversation:list': { conversations: ConversationSummary[]; nextCursor: string | null };
  'message:send': { message: Message; duplicate: boolean };
  'message:edit': { message: Message };
  /** The tombstone for `everyone`; null for `me`. */
  'message:delete': { message: Message | null };
  'message:react': { message: Message };
  'typing:set': { conversationId: string; typing: boolean };
  'typing:list': { conversationId: string; userIds: string[] };
  'presence:set-status': { status: PresenceStatus };
  'presence:get': { presence: Presence[] };
  'receipt:mark': { receipt: Receipt };
  'history:fetch': { messages: Message[]; hasMore: boolean };
  'message:search': SearchPage;
  'thread:fetch': ThreadPage;
  'thread:list': ThreadListPage;
  'thread:mark-read': ThreadRead;
  'sync:changes': {
    conversations: ConversationChanges[];
    /** Conversations in `since` that the user is no longer a member of. */
    removedConversationIds: string[];
    /** Current watermarks of every member of every conversation of the user. */
    receipts: Receipt[];
    /** Every conversation the user has archived now (state, like the receipts: not limited to changed ones). */
    archivedConversationIds: string[];
  };

  'notification:list': NotificationPage;
  'notification:mark-read': NotificationsRead;
  'notification:delete': NotificationDeleted;
  'conversation:mute': { conversationId: string; muted: boolean };
  'conversation:archive': ConversationArchived;
  /** `duplicate`: a retry with the same clientMsgId; the stored one is returned unchanged. */
  'message:schedule': { scheduled: ScheduledMessage; duplicate: boolean };
  'message:scheduled-list': ScheduledPage;
  'message:scheduled-edit': { scheduled: ScheduledMessage };
  'message:scheduled-cancel': { scheduled: ScheduledMessage };
  /** `call.state` is `busy` (already final) when the callee is in another call. */
  'call:invite': { call: Call };
  'call:accept': { call: Call };
  'call:reject': { call: Call };
  'call:cancel': { call: Call };
  'call:end': { call: Call };
  /** The signal was handed to the other device (or is dropped if it just disconnected). */
  'call:signal': { callId: string };
  'call:get': { call: Call };
  'upload:create': UploadSlot;
  'upload:complete': { upload: Upload };
  'upload:url': UploadUrls;
}

export interface SearchPage {
  /** Best match first: by rank, then newest first. */
  results: SearchHit[];
  /** Pass as `cursor`, with the same query and filters, for the next page; null at the end. */
  nextCursor: string | null;
}

export interface NotificationPage {
  notifications: Notification[];
  /** Pass as `cursor` for the next (older) page; null at the end. */
  nextCursor: string | null;
  /** All my unread notifications, not just this page's. */
  unreadCount: number;
}

/** Notifications marked read, as the ack answers and as `notification:read` tells every device. */
export interface NotificationsRead {
  /** True for "mark all read": every notification created up to `readAt` is read. */
  all: boolean;
  /** The notifications that changed (empty when `all`). */
  notificationIds: string[];
  readAt: string;
  unreadCount: number;
}

export interface NotificationDeleted {
  notificationId: string;
  unreadCount: number;
}

/** A conversation's archived state for one user, as the ack answers and as `conversation:archived` tells their devices. */
export interface ConversationArchived {
  conversationId: string;
  archived: boolean;
}

/** Sent once per direct conversation, to both members, when its message count reaches the call threshold. */
export interface ConversationMilestone {
  conversationId: string;
  kind: 'calls_unlocked';
  /** The threshold reached (CALL_MIN_MESSAGES). */
  messageCount: number;
  reachedAt: string;
}

/** A signal relayed from the other device in a call. */
export interface CallSignalRelay {
  callId: string;
  fromUserId: string;
  signal: CallSignal;
}

export type ClientToServerEvents = {
  [E in ClientEventName]: (payload: ClientPayload<E>, ack: AckFn<ClientEventResults[E]>) => void;
};

export interface SessionEnding {
  reason: DisconnectReason;
  message: string;
}

/** Everything a server pushes. Each change reaches every connected device of every member, on any node. */
export interface ServerToClientEvents {
  'message:new': (message: Message) => void;
  /**
   * An edit, a delete for everyone (tombstone), a reaction change, or a thread root whose replies
   * changed (`thread`): the message as it now is.
   */
  'message:updated': (message: Message) => void;
  /** Only to the user's own devices: a message they deleted for themself. */
  'message:hidden': (payload: { conversationId: string; messageId: string }) => void;
  /** To my own devices: I read a thread up to a reply (on another device). */
  'thread:read': (payload: ThreadRead) => void;
  /** Created, renamed, members added or removed. */
  'conversation:updated': (conversation: Conversation) => void;
  /** To a user who left or was removed. */
  'conversation:removed': (payload: { conversationId: string }) => void;
  'receipt:updated': (receipt: Receipt) => void;
  /** To the users who share a conversation with this user: came online, went offline, changed status. */
  'presence:updated': (presence: Presence) => void;
  /** To the other members only. `typing: false` when the user stopped, sent, disconnected or timed out. */
  'typing:updated': (payload: { conversationId: string; userId: string; typing: boolean }) => void;
  /** Sent right before the server closes the socket, saying why and whether to reconnect. */
  'session:ending': (payload: SessionEnding) => void;

  /** A new notification of mine, to every device of mine, with my new unread count. */
  'notification:new': (payload: { notification: Notification; unreadCount: number }) => void;
  /** Some or all of my notifications were marked read (on any device). */
  'notification:read': (payload: NotificationsRead) => void;
  'notification:deleted': (payload: NotificationDeleted) => void;
  /** To my own devices: I muted or unmuted a conversation. */
  'conversation:muted': (payload: { conversationId: string; muted: boolean }) => void;
  /**
   * To my own devices: I archived or unarchived a conversation on another device, or a new message
   * from another member unarchived it (`archived: false`, sent before that message's `message:new`).
   */
  'conversation:archived': (payload: ConversationArchived) => void;
  /**
   * To my own devices: a scheduled message of mine was created, edited or canceled on another
   * device, or was sent or failed (to every device of mine). Carries the scheduled message as it now is.
   */
  'message:scheduled-updated': (scheduled: ScheduledMessage) => void;
  /** To both members of a direct conversation, once, when it reaches the call threshold. */
  'conversation:milestone': (payload: ConversationMilestone) => void;

  /** An incoming call, to every device of the callee (ringing until `ringDeadline`). */
  'call:ringing': (call: Call) => void;
  /**
   * A call changed: to every device of both parties. Accepted (`calleeDeviceId` says which device
   * won; other callee devices stop ringing), rejected, cancelled, ended, missed (ring timeout), busy.
   */
  'call:updated': (call: Call) => void;
  /** An offer, answer or ICE candidate from the other device in the call (only to the one device in it). */
  'call:signal': (payload: CallSignalRelay) => void;
}
