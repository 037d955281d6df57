/**
 * The open conversation's messages: stored ones in seq order and my own not stored yet (sending or
 * failed, with Retry and Discard), each own message with its tick (sent, delivered, read) from the
 * SDK's watermarks; live messages, edits, deletions and reactions as they arrive. Thread replies are
 * not part of this timeline: they show under their root, in the thread pane (threads.ts).
 */
import type { MessageState, OutgoingMessage } from '@chat/client';
import type { Message } from '@chat/protocol';
import { formatTime, h, placeBySeq } from './dom.ts';
import { actionsFor, closeMenus, failureLine, reactionsOf } from './message-actions.ts';
import type { Page } from './page.ts';
import type { ConversationView } from './state.ts';
import { ui } from './ui.ts';

const STATUS_TEXT: Record<MessageState, string> = { sending: 'Sending', sent: 'Sent', delivered: 'Delivered', read: 'Read', failed: 'Failed' };
const STATUS_GLYPH: Record<MessageState, string> = { sending: '◷', sent: '✓', delivered: '✓✓', read: '✓✓', failed: '!' };

export interface Messages {
  /** Renders a conversation's messages and own pending ones afresh. */
  renderAll(view: ConversationView): void;
  /** Shows an own message that is still sending at the end, in view. */
  appendPending(entry: OutgoingMessage): void;
  scrollToBottom(): void;
  /** Renders a message of the open conversation's timeline again, if it is shown. */
  rerender(messageId: string): void;
}

/** Whether a message belongs to the main timeline (replies belong to their thread). */
const inTimeline = (message: Message) => message.threadRootId === null;

export function installMessages(page: Page): Messages {
  const { state } = page;

  const nearBottom = () => ui.scroller.scrollHeight - ui.scroller.scrollTop - ui.scroller.clientHeight < 80;
  const scrollToBottom = () => {
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
  };

  function renderAll(view: ConversationView): void {
    const stored = [...(view.messages?.values() ?? [])].filter(inTimeline).sort((a, b) => a.seq - b.seq);
    const pending = [...state.outbox.values()].filter((entry) => entry.conversationId === view.conversation.id && !stored.some((m) => m.clientMsgId === entry.clientMsgId));
    // A whole page at once (opening, older history) is not news: the live region announces only what
    // arrives after it.
    ui.messagesLog.setAttribute('aria-busy', 'true');
    ui.messages.replaceChildren(...stored.map((message) => messageItem(message)), ...pending.map((entry) => pendingItem(entry)));
    requestAnimationFrame(() => ui.messagesLog.removeAttribute('aria-busy'));
  }

  function onMessage(message: Message): void {
    const view = state.views.get(message.conversationId);
    if (!view) {
      // A conversation we learn about from its first message: fetch it (members, title) once.
      void state.client?.request('conversation:get', { conversationId: message.conversationId }).then(
        ({ conversation }) => {
          page.list.upsert(conversation);
          onMessage(message);
        },
        () => {},
      );
      return;
    }
    if (!view.lastMessage || message.seq >= view.lastMessage.seq) view.lastMessage = message;
    view.lastSeq = Math.max(view.lastSeq, message.seq);
    // A reply also says its sender has read up to it: the SDK moves their watermarks from the message
    // itself and reports the ticks that moved ('receipt' below).
    if (message.senderId !== state.session?.userId) view.lastOthersSeq = Math.max(view.lastOthersSeq, message.seq);
    if (view.messages) view.messages.set(message.id, message);
    page.list.render();
    if (message.conversationId !== state.openId || !view.messages) return;
    // A thread reply is shown in its thread, and read with the conversation all the same.
    if (inTimeline(message)) {
      const stick = nearBottom() || message.senderId === state.session?.userId;
      placeMessage(message);
      if (stick) scrollToBottom();
    }
    page.pane.markReadSoon();
  }

  /** Inserts (or replaces, including its own pending twin) a message's element in seq order. */
  function placeMessage(message: Message): void {
    placeBySeq(ui.messages, messageItem(message));
  }

  function onMessageUpdated(message: Message): void {
    const view = state.views.get(message.conversationId);
    if (!view) return;
    if (view.messages?.has(message.id) || (view.messages && message.seq >= view.oldestSeq)) view.messages.set(message.id, message);
    if (view.lastMessage?.id === message.id) view.lastMessage = message;
    page.list.renderItem(message.conversationId);
    if (message.conversationId === state.openId) {
      if (ui.messages.querySelector(`[data-id="${message.id}"]`)) placeMessage(message);
      // Replies quoting it show the new text.
      for (const quote of ui.messages.querySelectorAll<HTMLElement>(`[data-reply-to="${message.id}"]`)) quote.replaceWith(replyQuote(message.id, view));
    }
  }

  function onMessageHidden(conversationId: string, messageId: string): void {
    const view = state.views.get(conversationId);
    view?.messages?.delete(messageId);
    if (view?.lastMessage?.id === messageId) view.lastMessage = null;
    if (conversationId === state.openId) ui.messages.querySelector(`[data-id="${messageId}"]`)?.remove();
    page.list.renderItem(conversationId);
  }

  function messageItem(message: Message): HTMLLIElement {
    const view = state.views.get(message.conversationId);
    const mine = message.senderId === state.session?.userId;
    if (message.kind === 'system') {
      return h('li', { class: 'message system', 'data-id': message.id, 'data-seq': message.seq }, h('p', {}, message.body));
    }
    const deleted = message.deletedAt !== null;
    const author = state.displayName(message.senderId, view?.conversation);
    const item = h(
      'li',
      {
        class: `message${mine ? ' mine' : ''}${deleted ? ' deleted' : ''}`,
        'data-id': message.id,
        'data-seq': message.seq,
        'data-client-msg-id': message.clientMsgId,
        'aria-label': `${author}, ${formatTime(message.createdAt)}`,
      },
      message.replyToId && view ? replyQuote(message.replyToId, view) : null,
      mine ? null : h('p', { class: 'author' }, author),
      h('p', { class: 'body' }, deleted ? 'This message was deleted' : message.body),
      page.attachments(message),
      reactionsOf(page, message),
      ...page.messageParts.map((part) => part(message)),
      h(
        'p',
        { class: 'meta' },
        h('time', { datetime: message.createdAt }, formatTime(message.createdAt)),
        message.editedAt && !deleted ? h('span', { class: 'edited' }, ' · edited') : null,
        mine ? tick(state.client?.statusOf(message).state ?? 'sent', message.clientMsgId) : null,
      ),
      deleted ? null : actionsFor(page, message, mine),
    );
    return item;
  }

  function pendingItem(entry: OutgoingMessage): HTMLLIElement {
    const status: MessageState = entry.state === 'failed' ? 'failed' : 'sending';
    return h(
      'li',
      { class: `message mine pending${status === 'failed' ? ' failed' : ''}`, 'data-client-msg-id': entry.clientMsgId },
      h('p', { class: 'body' }, entry.payload.body),
      h('p', { class: 'meta' }, tick(status, entry.clientMsgId)),
      status === 'failed' ? failureLine(entry, retry, discard) : null,
    );
  }

  function renderPending(entry: OutgoingMessage): void {
    if (entry.conversationId !== state.openId) return;
    const stick = nearBottom();
    ui.messages.querySelector(`[data-client-msg-id="${entry.clientMsgId}"]:not([data-id])`)?.replaceWith(pendingItem(entry));
    // The failure line with Retry must not end up below the fold.
    if (stick) scrollToBottom();
  }

  function retry(clientMsgId: string): void {
    const entry = state.client?.retry(clientMsgId);
    if (entry) renderPending(entry);
  }

  /** Forgets a failed message that cannot succeed as it is (too long, say): the SDK drops it, and so do we. */
  function discard(clientMsgId: string): void {
    if (!state.client?.discard(clientMsgId)) return;
    state.outbox.delete(clientMsgId);
    ui.messages.querySelector(`[data-client-msg-id="${clientMsgId}"]:not([data-id])`)?.remove();
    ui.composerInput.focus();
  }

  function tick(status: MessageState, clientMsgId: string): HTMLSpanElement {
    return h(
      'span',
      { class: 'status', 'data-status': status, 'data-for': clientMsgId, title: STATUS_TEXT[status] },
      h('span', { 'aria-hidden': 'true' }, STATUS_GLYPH[status]),
      h('span', { class: 'visually-hidden' }, STATUS_TEXT[status]),
    );
  }

  /** Every own message's tick in the open conversation, from the SDK's watermarks: O(messages × members). */
  function refreshTicks(): void {
    const view = state.openView;
    const client = state.client;
    if (!view?.messages || !client) return;
    for (const element of ui.messages.querySelectorAll<HTMLElement>('.message.mine[data-id]')) {
      const message = view.messages.get(element.dataset['id']!);
      if (!message) continue;
      const status = client.statusOf(message).state;
      const current = element.querySelector<HTMLElement>('.status');
      if (current && current.dataset['status'] !== status) current.replaceWith(tick(status, message.clientMsgId));
    }
    for (const entry of state.outbox.values()) if (entry.conversationId === state.openId && entry.state === 'failed') renderPending(entry);
  }

  function replyQuote(replyToId: string, view: ConversationView): HTMLElement {
    const original = view.messages?.get(replyToId);
    const text = !original ? 'An earlier message' : original.deletedAt ? 'This message was deleted' : original.body;
    const who = original ? state.displayName(original.senderId, view.conversation) : '';
    return h(
      'button',
      {
        type: 'button',
        class: 'reply-quote',
        'data-reply-to': replyToId,
        title: 'Show the message this replies to',
        onclick: () => {
          const target = ui.messages.querySelector<HTMLElement>(`[data-id="${replyToId}"]`);
          target?.scrollIntoView({ block: 'center', behavior: 'smooth' });
          target?.classList.add('flash');
          setTimeout(() => target?.classList.remove('flash'), 1200);
        },
      },
      h('span', { class: 'visually-hidden' }, 'In reply to '),
      who ? h('strong', {}, who) : null,
      h('span', {}, text.slice(0, 140)),
    );
  }

  document.addEventListener('click', (event) => {
    if (!(event.target as HTMLElement).closest('.message-actions')) closeMenus();
  });

  page.onClient((client) => {
    client.on('message', (message) => onMessage(message));
    client.on('messageUpdated', (message) => onMessageUpdated(message));
    client.on('messageHidden', ({ conversationId, messageId }) => onMessageHidden(conversationId, messageId));
    client.on('receipt', (receipt) => {
      if (receipt.conversationId === state.openId) refreshTicks();
      page.list.renderItem(receipt.conversationId);
    });
    client.on('status', (event) => {
      if (event.state === 'sent' || event.state === 'failed') {
        const outgoing = state.outbox.get(event.clientMsgId);
        if (outgoing && event.state === 'sent') state.outbox.delete(event.clientMsgId);
        if (outgoing && event.state === 'failed') renderPending(outgoing);
      }
      if (event.conversationId === state.openId) refreshTicks();
    });
  });

  return {
    renderAll,
    appendPending: (entry) => {
      ui.messages.append(pendingItem(entry));
      scrollToBottom();
    },
    scrollToBottom,
    rerender: (messageId) => {
      const message = state.openView?.messages?.get(messageId);
      if (message && ui.messages.querySelector(`[data-id="${messageId}"]`)) placeMessage(message);
    },
  };
}
