/**
 * Threads: under a message with replies, an "N replies" link, marked "new" while some are unread for
 * me; "Reply in thread" in every message's ⋯ menu; and a side pane with the root, its replies in seq
 * order (a page at a time, more on request), live replies as they arrive, and a composer that sends
 * with the root's id. Replies stay out of the main timeline (messages.ts). While the pane is in view
 * its thread is marked read up to the last reply shown. My read state of each thread comes from
 * thread:list (on opening a conversation and after each resync), the pane's thread:fetch, live
 * replies from others, and the SDK's `threadRead` (my marks, here and on my other devices).
 */
import type { ChatError, OutgoingMessage } from '@chat/client';
import { limits, type Message, type ThreadRead } from '@chat/protocol';
import type { PageApi } from './api.ts';
import { byId, formatTime, h, placeBySeq } from './dom.ts';
import { failureLine } from './message-actions.ts';

const PAGE = 50;
/** Roots whose read state thread:list loads for the open conversation (the most recently replied). */
const LISTED = 100;

/** My read state of one thread: the server's last answer, and the newest reply from others seen live since. */
interface ReadState {
  lastReadSeq: number;
  unreadCount: number;
  othersSeq: number;
}

interface OpenThread {
  root: Message;
  /** Replies by id, fetched and live; shown in seq order up to `through` while `hasMore`, all after that. */
  replies: Map<string, Message>;
  /** My replies not stored yet (sending or failed), by clientMsgId. */
  pending: Map<string, OutgoingMessage>;
  /** The seq of the last reply fetched: the next page starts after it. */
  through: number;
  hasMore: boolean;
  loading: boolean;
}

export function installThreads(page: PageApi): void {
  const chatLayout = byId('chat');
  const pane = byId<HTMLElement>('thread');
  const rootSlot = byId('thread-root');
  const list = byId<HTMLOListElement>('thread-replies');
  const scroller = byId('thread-scroller');
  const log = byId('thread-log');
  const more = byId<HTMLButtonElement>('thread-more');
  const status = byId('thread-status');
  const form = byId<HTMLFormElement>('thread-composer');
  const input = byId<HTMLTextAreaElement>('thread-input');
  const close = byId<HTMLButtonElement>('thread-close');

  /** Read states of the open conversation's threads, by root id. */
  const reads = new Map<string, ReadState>();
  let readsFor: string | null = null;
  let open: OpenThread | null = null;
  let markTimer: ReturnType<typeof setTimeout> | null = null;

  const mine = (message: Message) => message.senderId === page.userId;
  const unread = (rootId: string) => {
    const read = reads.get(rootId);
    return !!read && (read.unreadCount > 0 || read.othersSeq > read.lastReadSeq);
  };
  const shown = (thread: OpenThread, reply: Message) => !thread.hasMore || reply.seq <= thread.through;
  /** Keeps the newer version of a message. */
  const newer = (known: Message | undefined, next: Message) => (!known || known.version < next.version ? next : known);

  /** Takes a read state the server answered (list, fetch, mark), keeping live replies seen since. */
  function setRead(rootId: string, answer: { lastReadSeq: number; unreadCount: number }): void {
    const known = reads.get(rootId);
    reads.set(rootId, { lastReadSeq: Math.max(known?.lastReadSeq ?? 0, answer.lastReadSeq), unreadCount: answer.unreadCount, othersSeq: known?.othersSeq ?? 0 });
    page.rerenderMessage(rootId);
  }

  // ── the timeline's part: "N replies", and the menu entry ──

  page.addMessagePart((message) => {
    const count = message.thread?.replyCount ?? 0;
    if (message.threadRootId !== null || count === 0) return null;
    const isUnread = unread(message.id);
    return h(
      'p',
      { class: 'thread-summary' },
      h(
        'button',
        { type: 'button', class: 'link-button thread-link', 'data-root': message.id, 'data-unread': String(isUnread), onclick: () => openThread(message) },
        `${count} ${count === 1 ? 'reply' : 'replies'}`,
        isUnread ? ' ' : null,
        isUnread ? h('span', { class: 'thread-unread' }, 'new') : null,
      ),
      message.thread ? h('time', { datetime: message.thread.lastReplyAt }, `· last reply ${formatTime(message.thread.lastReplyAt)}`) : null,
    );
  });
  page.addMessageAction((message) => (message.threadRootId === null && message.kind !== 'system' ? { label: 'Reply in thread', run: () => openThread(message) } : null));

  // ── the pane ──

  function openThread(root: Message): void {
    open = { root, replies: new Map(), pending: new Map(), through: 0, hasMore: true, loading: false };
    pane.hidden = false;
    chatLayout.classList.add('with-thread');
    input.value = '';
    render();
    input.focus();
    void loadMore();
  }

  function closeThread(): void {
    const root = open?.root;
    open = null;
    pane.hidden = true;
    chatLayout.classList.remove('with-thread');
    list.replaceChildren();
    rootSlot.replaceChildren();
    if (root) document.querySelector<HTMLElement>(`#messages .thread-link[data-root="${root.id}"]`)?.focus();
  }

  async function loadMore(): Promise<void> {
    const thread = open;
    const chat = page.client;
    if (!thread || !chat || thread.loading || !thread.hasMore) return;
    thread.loading = true;
    more.disabled = true;
    status.textContent = 'Loading replies…';
    try {
      const answer = await chat.fetchThread(thread.root.id, { limit: PAGE, ...(thread.through > 0 && { after: thread.through }) });
      thread.loading = false;
      if (open !== thread) return;
      thread.root = newer(thread.root, answer.root);
      for (const reply of answer.replies) thread.replies.set(reply.id, newer(thread.replies.get(reply.id), reply));
      thread.through = answer.replies.at(-1)?.seq ?? thread.through;
      thread.hasMore = answer.hasMore;
      status.textContent = '';
      setRead(thread.root.id, answer);
      render();
      markReadSoon();
    } catch (error) {
      thread.loading = false;
      if (open === thread) status.textContent = `Could not load the thread: ${(error as ChatError).message}`;
    } finally {
      more.disabled = false;
    }
  }

  /** The whole pane afresh: root, the replies shown, my pending ones, and the More button. */
  function render(): void {
    const thread = open;
    if (!thread) return;
    renderRoot(thread);
    const replies = [...thread.replies.values()].filter((reply) => shown(thread, reply)).sort((a, b) => a.seq - b.seq);
    const pending = [...thread.pending.values()].filter((entry) => !replies.some((reply) => reply.clientMsgId === entry.clientMsgId));
    // A page at once is not news: the live region announces only what arrives after it.
    log.setAttribute('aria-busy', 'true');
    list.replaceChildren(...replies.map(replyItem), ...pending.map(pendingItem));
    requestAnimationFrame(() => log.removeAttribute('aria-busy'));
    more.hidden = !thread.hasMore || thread.through === 0;
  }

  function renderRoot(thread: OpenThread): void {
    const { root } = thread;
    const count = root.thread?.replyCount ?? 0;
    rootSlot.replaceChildren(
      h(
        'div',
        { class: 'message thread-root-message', 'data-id': root.id },
        h('p', { class: 'author' }, page.displayName(root.senderId, page.conversation(root.conversationId) ?? undefined)),
        h('p', { class: 'body' }, root.deletedAt ? 'This message was deleted' : root.body),
        page.attachments(root),
        h('p', { class: 'meta' }, h('time', { datetime: root.createdAt }, formatTime(root.createdAt))),
      ),
      h('p', { class: 'thread-count' }, count === 0 ? 'No replies yet' : `${count} ${count === 1 ? 'reply' : 'replies'}`),
    );
  }

  function replyItem(reply: Message): HTMLLIElement {
    const deleted = reply.deletedAt !== null;
    const author = page.displayName(reply.senderId, page.conversation(reply.conversationId) ?? undefined);
    return h(
      'li',
      {
        class: `message${mine(reply) ? ' mine' : ''}${deleted ? ' deleted' : ''}`,
        'data-id': reply.id,
        'data-seq': reply.seq,
        'data-client-msg-id': reply.clientMsgId,
        'aria-label': `${author}, ${formatTime(reply.createdAt)}`,
      },
      mine(reply) ? null : h('p', { class: 'author' }, author),
      h('p', { class: 'body' }, deleted ? 'This message was deleted' : reply.body),
      page.attachments(reply),
      h('p', { class: 'meta' }, h('time', { datetime: reply.createdAt }, formatTime(reply.createdAt)), reply.editedAt && !deleted ? h('span', { class: 'edited' }, ' · edited') : null),
    );
  }

  function pendingItem(entry: OutgoingMessage): HTMLLIElement {
    const failed = entry.state === 'failed';
    return h(
      'li',
      { class: `message mine pending${failed ? ' failed' : ''}`, 'data-client-msg-id': entry.clientMsgId },
      h('p', { class: 'body' }, entry.payload.body),
      failed ? failureLine(entry, retry, discard) : h('p', { class: 'meta' }, 'Sending…'),
    );
  }

  function retry(clientMsgId: string): void {
    const entry = page.client?.retry(clientMsgId);
    if (entry) placeBySeq(list, pendingItem(entry));
  }

  function discard(clientMsgId: string): void {
    if (!page.client?.discard(clientMsgId)) return;
    open?.pending.delete(clientMsgId);
    list.querySelector(`[data-client-msg-id="${clientMsgId}"]:not([data-id])`)?.remove();
    input.focus();
  }

  /** Marks the open thread read up to its last reply shown, while the page is in view; coalesced. */
  function markReadSoon(): void {
    if (markTimer) return;
    markTimer = setTimeout(() => {
      markTimer = null;
      const thread = open;
      const chat = page.client;
      if (!thread || !chat?.connected || pane.hidden || document.visibilityState !== 'visible') return;
      const last = Math.max(0, ...[...thread.replies.values()].filter((reply) => shown(thread, reply)).map((reply) => reply.seq));
      if (last === 0 || (reads.get(thread.root.id)?.lastReadSeq ?? 0) >= last) return;
      // The SDK reports the answer as threadRead (below).
      chat.markThreadRead(thread.root.id, last).catch(() => {});
    }, 250);
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const thread = open;
    const chat = page.client;
    const body = input.value.trim();
    if (!thread || !chat || !body) return;
    if (body.length > limits.messageBodyHard) return page.notice('That reply is too long.');
    const outgoing = chat.send({ conversationId: thread.root.conversationId, body, threadRootId: thread.root.id });
    if (outgoing.state !== 'sent') {
      thread.pending.set(outgoing.clientMsgId, outgoing);
      placeBySeq(list, pendingItem(outgoing));
    }
    input.value = '';
  });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  input.addEventListener('input', () => {
    if (open && input.value.trim() !== '') page.client?.typing(open.root.conversationId);
  });
  pane.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') closeThread();
  });
  close.addEventListener('click', closeThread);
  more.addEventListener('click', () => void loadMore());
  document.addEventListener('visibilitychange', markReadSoon);

  // ── read states of the open conversation ──

  async function loadReads(conversationId: string): Promise<void> {
    const chat = page.client;
    if (!chat) return;
    const { threads } = await chat.listThreads(conversationId, { limit: LISTED });
    if (readsFor !== conversationId) return;
    for (const summary of threads) setRead(summary.rootId, summary);
  }

  page.onOpen((conversation) => {
    // Also called when the open conversation is only updated: start afresh on a switch only.
    if ((conversation?.id ?? null) === readsFor) return;
    readsFor = conversation?.id ?? null;
    reads.clear();
    if (open) closeThread();
    if (conversation) void loadReads(conversation.id).catch((error: ChatError) => page.notice(`Could not load threads: ${error.message}`));
  });

  page.onClient((chat) => {
    chat.on('message', (message) => {
      const rootId = message.threadRootId;
      if (rootId === null || message.conversationId !== readsFor) return;
      if (!mine(message)) {
        const read = reads.get(rootId) ?? { lastReadSeq: 0, unreadCount: 0, othersSeq: 0 };
        reads.set(rootId, { ...read, othersSeq: Math.max(read.othersSeq, message.seq) });
        page.rerenderMessage(rootId);
      }
      const thread = open;
      if (thread?.root.id !== rootId) return;
      thread.replies.set(message.id, newer(thread.replies.get(message.id), message));
      if (!shown(thread, message)) return;
      const stick = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80 || mine(message);
      placeBySeq(list, replyItem(message));
      if (stick) scroller.scrollTop = scroller.scrollHeight;
      markReadSoon();
    });
    chat.on('messageUpdated', (message) => {
      const thread = open;
      if (!thread) return;
      if (message.id === thread.root.id) {
        thread.root = newer(thread.root, message);
        renderRoot(thread);
      } else if (message.threadRootId === thread.root.id && thread.replies.has(message.id)) {
        thread.replies.set(message.id, newer(thread.replies.get(message.id), message));
        if (list.querySelector(`[data-id="${message.id}"]`)) placeBySeq(list, replyItem(message));
      }
    });
    chat.on('messageHidden', ({ messageId }) => {
      if (!open) return;
      if (messageId === open.root.id) return closeThread();
      open.replies.delete(messageId);
      list.querySelector(`[data-id="${messageId}"]`)?.remove();
    });
    chat.on('status', (event) => {
      const entry = open?.pending.get(event.clientMsgId);
      if (!entry) return;
      if (event.state === 'failed') return placeBySeq(list, pendingItem(entry));
      if (event.state !== 'sent') return;
      // Stored: shown as a reply by now, unless earlier replies are still to be loaded before it.
      open!.pending.delete(event.clientMsgId);
      list.querySelector(`[data-client-msg-id="${event.clientMsgId}"]:not([data-id])`)?.remove();
    });
    chat.on('threadRead', (read: ThreadRead) => {
      if (read.conversationId === readsFor) setRead(read.rootId, read);
    });
    // After a reconnect: reads made meanwhile on my other devices. Missed replies come as messages.
    chat.on('synced', () => {
      if (readsFor) void loadReads(readsFor).catch(() => {});
      markReadSoon();
    });
  });
}
