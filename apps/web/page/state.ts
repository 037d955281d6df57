/**
 * What the page knows, in one place: who is signed in, their client, every conversation it shows
 * with its messages, presence, own messages not stored yet, which conversation is open, and the
 * signed URLs of the uploads it shows. The core
 * modules (page.ts installs them) read and change it; nothing else holds page-wide data.
 */
import type { ChatClient, OutgoingMessage } from '@chat/client';
import type { Conversation, Message, Presence } from '@chat/protocol';
import type { UploadUrlCache } from './attachments.ts';
import type { Session } from './session.ts';

/** What the page knows about one conversation. */
export interface ConversationView {
  conversation: Conversation;
  lastMessage: Message | null;
  lastSeq: number;
  /** The newest seq of a message from someone else: what marking read is about. */
  lastOthersSeq: number;
  /** Messages by id, in no order; null until its history was first opened. */
  messages: Map<string, Message> | null;
  oldestSeq: number;
  hasMoreBefore: boolean;
  loadingHistory: boolean;
}

export class PageState {
  session: Session | null = null;
  /** The signed-in user's client; null while signed out. */
  client: ChatClient | null = null;
  readonly views = new Map<string, ConversationView>();
  readonly presence = new Map<string, Presence>();
  /** Own messages not stored yet (sending or failed), by clientMsgId. */
  readonly outbox = new Map<string, OutgoingMessage>();
  openId: string | null = null;
  /** Signed URLs per upload id, reused until shortly before they expire (attachments.ts). */
  readonly uploadUrls: UploadUrlCache = new Map();
  /** Which conversations the list shows (a feature module may narrow it, e.g. archived ones). */
  listFilter: (conversationId: string) => boolean = () => true;

  get userId(): string | null {
    return this.session?.userId ?? null;
  }

  /** The open conversation's view, if any. */
  get openView(): ConversationView | undefined {
    return this.openId ? this.views.get(this.openId) : undefined;
  }

  displayName(userId: string, conversation?: Conversation): string {
    if (userId === this.session?.userId) return this.session.displayName;
    const member = conversation?.members.find((m) => m.userId === userId) ?? [...this.views.values()].flatMap((v) => v.conversation.members).find((m) => m.userId === userId);
    return member?.displayName ?? userId;
  }

  otherMember(conversation: Conversation): string | null {
    if (conversation.kind !== 'direct') return null;
    return conversation.members.find((member) => member.userId !== this.session?.userId)?.userId ?? null;
  }

  titleOf(conversation: Conversation): string {
    if (conversation.kind === 'group') return conversation.title ?? 'Group';
    const other = this.otherMember(conversation);
    return other ? this.displayName(other, conversation) : 'Just you';
  }

  /** My read watermark in a conversation, as the SDK holds it. */
  myReadSeq(conversationId: string): number {
    const me = this.session?.userId;
    return this.client?.receipts(conversationId).find((receipt) => receipt.userId === me)?.lastReadSeq ?? 0;
  }
}
