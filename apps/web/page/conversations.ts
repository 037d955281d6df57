/**
 * The conversation list: every conversation the page knows, newest activity first, each with its
 * title, presence dot, last message or who is typing, and unread count; and starting a direct chat.
 */
import type { ChatError } from '@chat/client';
import type { Conversation, ConversationSummary, Message } from '@chat/protocol';
import { h } from './dom.ts';
import type { Page } from './page.ts';
import { userIdFor } from './session.ts';
import type { ConversationView } from './state.ts';
import { ui } from './ui.ts';

export interface ConversationList {
  /** Adds a conversation or takes its newer version, and shows it. */
  upsert(conversation: Conversation | ConversationSummary): void;
  render(): void;
  /** Re-renders one entry in place (its unread count, preview or presence changed). */
  renderItem(conversationId: string): void;
}

export function installConversationList(page: Page): ConversationList {
  const { state } = page;

  function upsert(conversation: Conversation | ConversationSummary): void {
    let view = state.views.get(conversation.id);
    const summary = 'lastMessage' in conversation ? conversation : null;
    if (!view) {
      const last = summary?.lastMessage ?? null;
      // Without the last message's sender, assume the newest seq may be someone else's: marking read is idempotent.
      const othersSeq = last && last.senderId === state.session?.userId ? 0 : conversation.lastSeq;
      view = { conversation, lastMessage: last, lastSeq: conversation.lastSeq, lastOthersSeq: othersSeq, messages: null, oldestSeq: Infinity, hasMoreBefore: true, loadingHistory: false };
      state.views.set(conversation.id, view);
      page.presence.later(conversation.members.map((member) => member.userId));
    } else {
      view.conversation = conversation;
      view.lastSeq = Math.max(view.lastSeq, conversation.lastSeq);
      if (summary?.lastMessage && (!view.lastMessage || summary.lastMessage.seq >= view.lastMessage.seq)) view.lastMessage = summary.lastMessage;
    }
    render();
    if (conversation.id === state.openId) {
      page.pane.renderHeader();
      page.opened(view.conversation);
    }
  }

  function remove(conversationId: string): void {
    state.views.delete(conversationId);
    if (state.openId === conversationId) page.pane.open(null);
    render();
  }

  /** lastSeq minus my read watermark, as the server counts it (sending moves the sender's watermark). */
  function unreadOf(view: ConversationView): number {
    const me = state.session?.userId;
    const mine = state.myReadSeq(view.conversation.id);
    const ownLast = view.lastMessage?.senderId === me ? view.lastMessage!.seq : 0;
    return Math.max(0, view.lastSeq - Math.max(mine, ownLast));
  }

  function sortedViews(): ConversationView[] {
    const activity = (view: ConversationView) => Math.max(Date.parse(view.conversation.lastActivityAt), view.lastMessage ? Date.parse(view.lastMessage.createdAt) : 0);
    return [...state.views.values()].sort((a, b) => activity(b) - activity(a));
  }

  function render(): void {
    const items = sortedViews()
      .filter((view) => state.listFilter(view.conversation.id))
      .map((view) => item(view));
    ui.conversations.replaceChildren(...items);
    ui.noConversations.hidden = items.length > 0;
  }

  function renderItem(conversationId: string): void {
    const view = state.views.get(conversationId);
    const current = ui.conversations.querySelector(`[data-conversation="${conversationId}"]`);
    if (view && current) current.replaceWith(item(view));
  }

  function item(view: ConversationView): HTMLLIElement {
    const { conversation } = view;
    const other = state.otherMember(conversation);
    const unread = unreadOf(view);
    const typers = state.client?.typingIn(conversation.id) ?? [];
    const status = other ? page.presence.statusOf(other) : null;
    const preview = typers.length > 0 ? `${typers.map((id) => state.displayName(id, conversation)).join(', ')} typing…` : previewOf(view.lastMessage);
    const title = state.titleOf(conversation);
    // The accessible name is the visible text plus hidden words for what only colour shows (WCAG 2.5.3:
    // the visible label stays part of the name).
    return h(
      'li',
      { 'data-conversation': conversation.id },
      h(
        'button',
        {
          type: 'button',
          class: 'conversation-item',
          'aria-current': conversation.id === state.openId ? 'true' : null,
          onclick: () => page.pane.open(conversation.id),
        },
        status ? h('span', { class: 'presence-dot', 'data-status': status, 'data-user': other, 'aria-hidden': 'true' }) : h('span', { class: 'presence-dot group', 'aria-hidden': 'true' }),
        h(
          'span',
          { class: 'item-text' },
          h('span', { class: 'item-title' }, title, status ? h('span', { class: 'visually-hidden' }, ` (${page.presence.label(status)})`) : null),
          h('span', { class: `item-preview${typers.length ? ' is-typing' : ''}` }, preview),
        ),
        unread > 0 ? h('span', { class: 'badge unread', 'data-unread': unread }, unread > 99 ? '99+' : String(unread), h('span', { class: 'visually-hidden' }, ' unread')) : null,
      ),
    );
  }

  function previewOf(message: Message | null): string {
    if (!message) return 'No messages yet';
    if (message.deletedAt) return 'Message deleted';
    const who = message.senderId === state.session?.userId ? 'You: ' : '';
    const where = message.threadRootId === null ? '' : 'in a thread: ';
    return `${who}${where}${message.body}`.slice(0, 120);
  }

  ui.newChat.addEventListener('submit', (event) => {
    event.preventDefault();
    const client = state.client;
    if (!client) return;
    ui.newChatError.textContent = '';
    const userId = userIdFor(ui.newChatUser.value);
    if (!userId) {
      ui.newChatError.textContent = 'Type a name.';
      return;
    }
    if (userId === state.session?.userId) {
      ui.newChatError.textContent = 'That is you. Type someone else’s name.';
      return;
    }
    client.request('conversation:open-direct', { userId }).then(
      ({ conversation }) => {
        ui.newChatUser.value = '';
        upsert(conversation);
        page.pane.open(conversation.id);
      },
      (error: ChatError) => (ui.newChatError.textContent = error.message),
    );
  });

  page.onClient((client) => {
    client.on('conversation', (conversation) => upsert(conversation));
    client.on('conversationRemoved', ({ conversationId }) => remove(conversationId));
  });

  return { upsert, render, renderItem };
}
