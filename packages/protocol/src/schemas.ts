import { z } from 'zod';
import { limits, SYSTEM_SENDER_ID } from './limits.ts';

// ---------------------------------------------------------------------------------------------
// Primitives. Every input a client sends is parsed by one of these; everything a server sends is
// described by the entity schemas below (used for types and for the OpenAPI document).
// ---------------------------------------------------------------------------------------------

/** What a user id may look like: 1-128 of A-Z a-z 0-9 _ . : @ | - (a token's `sub`, a URL segment, a Redis key part). */
export const USER_ID_PATTERN = /^[A-Za-z0-9_.:@|-]{1,128}$/;

/** A user's id: {@link USER_ID_PATTERN}, and never the system sender's id. */
export const userIdSchema = z
  .string()
  .regex(USER_ID_PATTERN, 'a user id: 1-128 of A-Z a-z 0-9 _ . : @ | -')
  .refine((id) => id !== SYSTEM_SENDER_ID, `"${SYSTEM_SENDER_ID}" is reserved for the system sender`);
export const idSchema = z.uuid();
export const seqSchema = z.number().int().min(0).max(2_147_483_647);
export const clientMsgIdSchema = z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, 'a client message id: 8-64 of A-Z a-z 0-9 _ -');

// Control characters (C0 except tab and newline, DEL, C1) and lone surrogates are removed, not
// rejected: they are invisible or invalid, and a message must not fail because a keyboard sent one.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point (they are stripped).
const CONTROL = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
export const cleanText = (value: string) => value.replace(CONTROL, '').trim();

/** A message body: control characters removed, trimmed, 1..hard-cap characters. Plain text, never HTML. */
export const bodySchema = z
  .string()
  .max(limits.messageBodyHard * 2)
  .transform(cleanText)
  .pipe(z.string().min(1, 'must not be empty').max(limits.messageBodyHard));

export const titleSchema = z
  .string()
  .max(limits.groupTitle * 2)
  .transform(cleanText)
  .pipe(z.string().min(1).max(limits.groupTitle));

export const emojiSchema = z
  .string()
  .min(1)
  .max(limits.emoji)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: an emoji must not contain control characters.
  .regex(/^[^\s\u0000-\u001F\u007F]+$/u, 'an emoji without whitespace');

/** An attachment that links to a file hosted elsewhere (kept for compatibility; uploads use {@link uploadAttachmentSchema}). */
export const linkAttachmentSchema = z
  .object({
    url: z.url({ protocol: /^https?$/, hostname: z.regexes.domain }).max(2048),
    mime: z
      .string()
      .regex(/^[A-Za-z0-9][\w.+-]*\/[\w.+-]+$/, 'a MIME type such as image/png')
      .max(127),
    size: z.number().int().min(0).max(2_147_483_647),
    name: z.string().max(255).transform(cleanText).pipe(z.string().min(1).max(255)),
  })
  .strict();

/**
 * An attachment stored by the server (`upload:create`, then `upload:complete`): only its id travels.
 * The sender must have completed it for the same conversation; the server fills in name, type and size.
 */
export const uploadAttachmentSchema = z.object({ uploadId: idSchema }).strict();

export const attachmentSchema = z.union([uploadAttachmentSchema, linkAttachmentSchema]);

/** What a client may send; stored messages may also be `system` notices (see messageSchema). */
export const messageKindSchema = z.enum(['text', 'image', 'file']);

/** What a user chose to show. It persists across reconnects until changed. @default 'online' */
export const presenceStatusSchema = z.enum(['online', 'away', 'dnd', 'invisible']);

export const conversationKindSchema = z.enum(['direct', 'group']);

/** `everyone`: the sender leaves a tombstone for all members; `me`: hidden for the caller only. */
export const deleteScopeSchema = z.enum(['everyone', 'me']);

export const reactionActionSchema = z.enum(['add', 'remove']);

/** An opaque page cursor: the `nextCursor` of the previous page of the same query. */
export const cursorSchema = z.string().max(200);

export const memberRoleSchema = z.enum(['owner', 'admin', 'member']);

// ---------------------------------------------------------------------------------------------
// Entities as the server sends them.
// ---------------------------------------------------------------------------------------------

export const userSchema = z.object({ id: z.string(), displayName: z.string() });

export const reactionSchema = z.object({ emoji: z.string(), userId: z.string() });

export const messageSchema = z.object({
  id: z.string(),
  conversationId: z.string(),
  /** Gap-free position in the conversation. */
  seq: z.number().int(),
  /** The conversation version of this message's last change; resync asks for changes after a version. */
  version: z.number().int(),
  senderId: z.string(),
  clientMsgId: z.string(),
  kind: z.enum([...messageKindSchema.options, 'system']),
  /** Empty on a tombstone. */
  body: z.string(),
  /** A link attachment has `url`; an uploaded one has `uploadId` (ask `upload:url` for a short-lived download URL) and no `url`. */
  attachments: z.array(z.object({ url: z.string().optional(), uploadId: z.string().optional(), mime: z.string(), size: z.number().int(), name: z.string() })),
  replyToId: z.string().nullable(),
  /** Set on a thread reply: the message whose thread it belongs to (see threads.ts). */
  threadRootId: z.string().nullable(),
  /**
   * Set on a message that has had thread replies: how many are not deleted, and when the last one
   * was sent. Each reply changes the root (a new version, pushed as `message:updated`).
   */
  thread: z.object({ replyCount: z.number().int(), lastReplyAt: z.string() }).nullable(),
  reactions: z.array(reactionSchema),
  createdAt: z.string(),
  editedAt: z.string().nullable(),
  deletedAt: z.string().nullable(),
});

export const memberSchema = z.object({
  userId: z.string(),
  displayName: z.string(),
  role: memberRoleSchema,
  joinedAt: z.string(),
  lastDeliveredSeq: z.number().int(),
  lastReadSeq: z.number().int(),
});

export const conversationSchema = z.object({
  id: z.string(),
  kind: conversationKindSchema,
  title: z.string().nullable(),
  ownerId: z.string().nullable(),
  /** Current members (those who left are not listed). */
  members: z.array(memberSchema),
  lastSeq: z.number().int(),
  version: z.number().int(),
  lastActivityAt: z.string(),
  createdAt: z.string(),
});

export const conversationSummarySchema = conversationSchema.extend({
  lastMessage: messageSchema.nullable(),
  /** lastSeq minus my read watermark. */
  unreadCount: z.number().int(),
  /** I muted it (`conversation:mute`): it produces no notifications for me. */
  muted: z.boolean(),
  /** I archived it (`conversation:archive`): it is listed only with `archived: true`. */
  archived: z.boolean(),
});

export const presenceSchema = z.object({
  userId: z.string(),
  /** False while none of the user's devices is connected, and for an invisible user (except to themself). */
  online: z.boolean(),
  status: z.enum([...presenceStatusSchema.options, 'offline']),
  /** When others last saw the user online; null while online or never seen. */
  lastSeenAt: z.string().nullable(),
});

export const receiptSchema = z.object({
  conversationId: z.string(),
  userId: z.string(),
  lastDeliveredSeq: z.number().int(),
  lastReadSeq: z.number().int(),
});

/**
 * One search result: the message as history would show it, and a plain-text excerpt of its body
 * with the matched words given as `[start, end)` ranges of UTF-16 code units into `text`. Neither
 * field holds markup: a page renders `text` as text and wraps the ranges itself.
 */
export const searchHitSchema = z.object({
  message: messageSchema,
  snippet: z.object({
    text: z.string(),
    highlights: z.array(z.tuple([z.number().int(), z.number().int()])),
  }),
  /** Relevance (ts_rank_cd); results come by rank, then newest first. */
  rank: z.number(),
});

export type Attachment = z.infer<typeof attachmentSchema>;
/** The kinds a client may send: `system` messages are the server's own. */
export type MessageKind = z.infer<typeof messageKindSchema>;
/** A conversation between exactly two users, or a group with a title and roles. */
export type ConversationKind = z.infer<typeof conversationKindSchema>;
export type MemberRole = z.infer<typeof memberRoleSchema>;
export type DeleteScope = z.infer<typeof deleteScopeSchema>;
export type ReactionAction = z.infer<typeof reactionActionSchema>;
export type LinkAttachment = z.infer<typeof linkAttachmentSchema>;
export type UploadAttachment = z.infer<typeof uploadAttachmentSchema>;
export type User = z.infer<typeof userSchema>;
export type Reaction = z.infer<typeof reactionSchema>;
export type Message = z.infer<typeof messageSchema>;
export type Member = z.infer<typeof memberSchema>;
export type Conversation = z.infer<typeof conversationSchema>;
export type ConversationSummary = z.infer<typeof conversationSummarySchema>;
export type Receipt = z.infer<typeof receiptSchema>;
export type Presence = z.infer<typeof presenceSchema>;
export type PresenceStatus = z.infer<typeof presenceStatusSchema>;
export type SearchHit = z.infer<typeof searchHitSchema>;

// ---------------------------------------------------------------------------------------------
// Notifications and calls.
// ---------------------------------------------------------------------------------------------

/**
 * Why a user got a notification: a `message` while none of their devices was connected, a `mention`
 * (`@userId` or `@displayName`) in a group, a `reaction` to their message, being added to a group
 * (`group_added`), or a `system` notice (e.g. a missed call).
 */
export const notificationKindSchema = z.enum(['message', 'mention', 'reaction', 'group_added', 'system']);

export const notificationSchema = z.object({
  id: z.string(),
  kind: notificationKindSchema,
  /** Null only for system notices that concern no conversation. */
  conversationId: z.string().nullable(),
  messageId: z.string().nullable(),
  /** Who caused it (sender, reactor, adder, caller); null for pure system notices. */
  actorId: z.string().nullable(),
  /** Short plain text to show: a message excerpt, the emoji, the group title, the notice. */
  preview: z.string(),
  /** Kind-specific extras, e.g. `{ callId, media }` for a missed call; `{}` when none. */
  data: z.record(z.string(), z.unknown()),
  createdAt: z.string(),
  /** Null while unread. */
  readAt: z.string().nullable(),
});

export const callMediaSchema = z.enum(['audio', 'video']);

/**
 * A call's state. `ringing` then `accepted` (by one callee device), or a final state: `rejected` by
 * the callee, `cancelled` by the caller while ringing, `ended` by either party after accepting,
 * `missed` when nobody answered within the ring timeout, `busy` when the callee was in another call.
 */
export const callStateSchema = z.enum(['ringing', 'accepted', 'rejected', 'cancelled', 'ended', 'missed', 'busy']);

export const callSchema = z.object({
  id: z.string(),
  callerId: z.string(),
  calleeId: z.string(),
  media: callMediaSchema,
  state: callStateSchema,
  /** The caller's device (socket id) that placed the call; signals go to it. */
  callerDeviceId: z.string(),
  /** The callee's device (socket id) that accepted; null until accepted. Other callee devices stop ringing. */
  calleeDeviceId: z.string().nullable(),
  /** Who moved the call to its final state; null while live or when it timed out. */
  endedBy: z.string().nullable(),
  createdAt: z.string(),
  /** While ringing: when the ring timeout ends the call as `missed`. */
  ringDeadline: z.string(),
  acceptedAt: z.string().nullable(),
  endedAt: z.string().nullable(),
});

/** The WebRTC session description or ICE candidate one call device sends to the other. */
export const callSignalSchema = z.discriminatedUnion('type', [
  z.object({ type: z.enum(['offer', 'answer']), sdp: z.string().min(1).max(limits.sdpLength) }).strict(),
  z
    .object({
      type: z.literal('ice'),
      // RTCIceCandidateInit; an empty `candidate` string marks the end of candidates.
      candidate: z
        .object({
          candidate: z.string().max(limits.iceCandidateLength),
          sdpMid: z.string().max(64).nullable().optional(),
          sdpMLineIndex: z.number().int().min(0).max(1024).nullable().optional(),
          usernameFragment: z.string().max(256).nullable().optional(),
        })
        .strict(),
    })
    .strict(),
]);

export type NotificationKind = z.infer<typeof notificationKindSchema>;
export type Notification = z.infer<typeof notificationSchema>;
export type CallMedia = z.infer<typeof callMediaSchema>;
export type CallState = z.infer<typeof callStateSchema>;
export type Call = z.infer<typeof callSchema>;
export type CallSignal = z.infer<typeof callSignalSchema>;
