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
} as const;
