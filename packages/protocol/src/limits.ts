/** Protocol-wide hard caps. Servers may configure tighter limits (e.g. MESSAGE_MAX_LENGTH). */
export const limits = {
  /** Default and hard maximum of a message body, in characters after trimming. */
  messageBodyDefault: 4000,
  messageBodyHard: 16_000,
  attachmentsPerMessage: 10,
  groupTitle: 120,
  groupMembers: 256,
  /** Largest page of history, conversations or sync changes. */
  pageSize: 100,
  emoji: 32,
  /** Most users one presence query may ask about. */
  presenceQuery: 200,
  /** Most notification ids one `notification:mark-read` may name. */
  notificationBatch: 100,
  /** Longest SDP offer/answer relayed for a call, in characters. */
  sdpLength: 32_000,
  /** Longest search query, in characters after trimming. */
  searchQuery: 256,
  /** Largest page of search results (each carries a highlighted snippet). */
  searchPage: 50,
  /** Longest ICE candidate line. */
  iceCandidateLength: 1024,
} as const;

/**
 * The sender id of messages a customer's backend posts as the service itself (`/v1/server`). It is
 * no user's id: no token may claim it, and `userIdSchema` refuses it, so it is never a member. Kept
 * out of the schemas' module so a client can read it without loading zod.
 */
export const SYSTEM_SENDER_ID = 'system';
