import type { ChatClient } from '@chat/client';
import type { Conversation, Message } from '@chat/protocol';

/** An entry of a message's ⋯ menu. */
export interface MessageAction {
  label: string;
  run(): void;
}

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
  /**
   * Adds a part to each message the timeline shows, under its reactions (e.g. a thread's reply
   * count); null adds nothing to that message. Parts are made again whenever their message is rendered.
   */
  addMessagePart(part: (message: Message) => Node | null): void;
  /** A message's uploaded attachments, filled in as their signed URLs arrive; null when it has none. */
  attachments(message: Message): HTMLElement | null;
  /** Adds an entry to each message's ⋯ menu; null leaves it out of that message's. */
  addMessageAction(action: (message: Message) => MessageAction | null): void;
  /** Renders a message of the open conversation again (what one of its parts shows changed); no-op if it is not shown. */
  rerenderMessage(messageId: string): void;
  /** Shows only the conversations `keep` accepts in the list (all by default); call again to re-render with it. */
  filterList(keep: (conversationId: string) => boolean, empty: string): void;
}
