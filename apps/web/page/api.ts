import type { ChatClient } from '@chat/client';
import type { Conversation } from '@chat/protocol';

/** What the chat page (page.ts) offers the feature modules (notifications, archive, calls, search). */
export interface PageApi {
  readonly client: ChatClient | null;
  readonly userId: string | null;
  /** The conversation on screen, if any. */
  readonly openConversation: Conversation | null;
  conversation(conversationId: string): Conversation | null;
  displayName(userId: string, conversation?: Conversation): string;
  /** The other member of a direct conversation. */
  otherMember(conversation: Conversation): string | null;
  /** Opens a conversation (fetching it first if the page does not know it yet). */
  open(conversationId: string): void;
  /** A short message for the reader (errors of actions), announced by screen readers. */
  notice(text: string): void;
  /** Called with each new client after sign-in, before it connects. */
  onClient(hook: (client: ChatClient) => void): void;
  /** Called whenever the open conversation changes (null: none) or is updated. */
  onOpen(hook: (conversation: Conversation | null) => void): void;
  /** Shows only the conversations `keep` accepts in the list (all by default); call again to re-render with it. */
  filterList(keep: (conversationId: string) => boolean, empty: string): void;
}
