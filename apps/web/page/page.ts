/**
 * The page's core: one PageState, the hooks modules install through (the PageApi the feature
 * modules see), and the operations of the core modules, which call each other through it. main.ts
 * creates it, installs each core module into its slot, then the feature modules.
 */
import type { ChatClient, ChatError } from '@chat/client';
import type { Conversation, Message } from '@chat/protocol';
import type { MessageAction, PageApi } from './api.ts';
import { attachmentsOf } from './attachments.ts';
import type { Composer } from './composer.ts';
import type { Connection } from './connection.ts';
import type { ConversationPane } from './conversation.ts';
import type { ConversationList } from './conversations.ts';
import type { Messages } from './messages.ts';
import type { PresenceView } from './presence.ts';
import type { Session } from './session.ts';
import type { PageState } from './state.ts';
import { ui } from './ui.ts';

/** The core modules, one slot each; main.ts fills every slot before the first event can arrive. */
export interface PageParts {
  connection: Connection;
  list: ConversationList;
  pane: ConversationPane;
  messages: Messages;
  composer: Composer;
  presence: PresenceView;
}

/** What the core modules use of the page: the feature API, the state, and each other. */
export interface Page extends PageApi, PageParts {
  readonly state: PageState;
  readonly session: Session | null;
  /** What feature modules add to each message (addMessagePart, addMessageAction), in the order added. */
  readonly messageParts: ReadonlyArray<(message: Message) => Node | null>;
  readonly messageActions: ReadonlyArray<(message: Message) => MessageAction | null>;
  /** Runs the onClient hooks, in the order they were added (core modules are installed first). */
  clientCreated(client: ChatClient): void;
  /** Runs the onOpen hooks. */
  opened(conversation: Conversation | null): void;
}

export function createPage(state: PageState): Page {
  const clientHooks: Array<(client: ChatClient) => void> = [];
  const openHooks: Array<(conversation: Conversation | null) => void> = [];
  const messageParts: Array<(message: Message) => Node | null> = [];
  const messageActions: Array<(message: Message) => MessageAction | null> = [];
  const core: Omit<Page, keyof PageParts> = {
    state,
    get client() {
      return state.client;
    },
    get userId() {
      return state.userId;
    },
    get session() {
      return state.session;
    },
    get openConversation() {
      return state.openView?.conversation ?? null;
    },
    conversation: (conversationId) => state.views.get(conversationId)?.conversation ?? null,
    displayName: (userId, conversation) => state.displayName(userId, conversation),
    otherMember: (conversation) => state.otherMember(conversation),
    open: (conversationId) => {
      if (state.views.has(conversationId)) return page.pane.open(conversationId);
      void state.client?.request('conversation:get', { conversationId }).then(
        ({ conversation }) => {
          page.list.upsert(conversation);
          page.pane.open(conversation.id);
        },
        (error: ChatError) => page.notice(error.message),
      );
    },
    notice: (text) => {
      ui.historyStatus.textContent = text;
    },
    onClient: (hook) => void clientHooks.push(hook),
    onOpen: (hook) => void openHooks.push(hook),
    messageParts,
    messageActions,
    addMessagePart: (part) => void messageParts.push(part),
    attachments: (message) => attachmentsOf(state.uploadUrls, state.client, message),
    addMessageAction: (action) => void messageActions.push(action),
    rerenderMessage: (messageId) => page.messages.rerender(messageId),
    filterList: (keep, empty) => {
      state.listFilter = keep;
      ui.noConversations.textContent = empty;
      page.list.render();
    },
    clientCreated: (client) => {
      for (const hook of clientHooks) hook(client);
    },
    opened: (conversation) => {
      for (const hook of openHooks) hook(conversation);
    },
  };
  const page = core as Page;
  return page;
}
