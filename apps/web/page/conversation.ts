/**
 * The open conversation: opening and closing it (with its #c= address), its header, loading its
 * history a page at a time as the reader scrolls up, and marking it read while it is in view.
 */
import type { Page } from './page.ts';
import type { ConversationView } from './state.ts';
import { ui } from './ui.ts';

const HISTORY_PAGE = 50;
const PRELOAD_PX = 200;

export interface ConversationPane {
  /** Shows this conversation (null: none, the list alone on a narrow screen). */
  open(conversationId: string | null): void;
  renderHeader(): void;
  /** Marks the open conversation read up to its newest message while the page is in view, coalesced. */
  markReadSoon(): void;
  /** After a (re)sync: loads what the open conversation lacks, or opens the one the address names. */
  afterSync(): void;
}

export function installConversationPane(page: Page): ConversationPane {
  const { state } = page;
  let markTimer: ReturnType<typeof setTimeout> | null = null;

  function open(conversationId: string | null): void {
    state.openId = conversationId;
    page.composer.setMode(null);
    const view = conversationId ? state.views.get(conversationId) : undefined;
    document.body.classList.toggle('show-conversation', !!view);
    ui.conversation.hidden = !view;
    ui.placeholder.hidden = !!view;
    history.replaceState(null, '', view ? `#c=${view.conversation.id}` : location.pathname + location.search);
    page.list.render();
    ui.messages.replaceChildren();
    ui.historyStatus.textContent = '';
    page.opened(view?.conversation ?? null);
    if (!view) return;
    renderHeader();
    page.presence.renderTyping();
    if (view.messages === null) void loadHistory(view);
    else {
      page.messages.renderAll(view);
      page.messages.scrollToBottom();
      if (!view.hasMoreBefore) ui.historyStatus.textContent = 'This is the beginning of the conversation.';
    }
    markReadSoon();
    ui.composerInput.focus({ preventScroll: true });
  }

  function renderHeader(): void {
    const view = state.openView;
    if (!view) return;
    ui.title.textContent = state.titleOf(view.conversation);
    const other = state.otherMember(view.conversation);
    const status = other ? page.presence.statusOf(other) : null;
    ui.presence.hidden = !status;
    if (status) {
      ui.presence.dataset['status'] = status;
      ui.presence.dataset['user'] = other!;
    }
    ui.subtitle.textContent = status ? page.presence.text(other!) : `${view.conversation.members.length} members: ${view.conversation.members.map((m) => m.displayName).join(', ')}`;
  }

  async function loadHistory(view: ConversationView): Promise<void> {
    const client = state.client;
    if (!client || view.loadingHistory || (!view.hasMoreBefore && view.messages)) return;
    view.loadingHistory = true;
    const first = view.messages === null;
    // A message that arrives (or is sent) while the first page is on its way may be newer than what the
    // page holds: kept from now on, so it is not lost between the two.
    if (first) view.messages = new Map();
    ui.historyStatus.textContent = first ? 'Loading messages…' : 'Loading older messages…';
    try {
      const before = Number.isFinite(view.oldestSeq) ? view.oldestSeq : undefined;
      const { messages, hasMore } = await client.request('history:fetch', { conversationId: view.conversation.id, limit: HISTORY_PAGE, ...(before !== undefined && { before }) });
      const kept: NonNullable<ConversationView['messages']> = view.messages ?? new Map();
      view.messages = kept;
      for (const message of messages) {
        const known = kept.get(message.id);
        if (!known || known.version < message.version) kept.set(message.id, message);
        view.oldestSeq = Math.min(view.oldestSeq, message.seq);
        view.lastSeq = Math.max(view.lastSeq, message.seq);
        if (message.senderId !== state.session?.userId) view.lastOthersSeq = Math.max(view.lastOthersSeq, message.seq);
      }
      view.hasMoreBefore = hasMore;
      if (messages.length === 0) view.oldestSeq = Math.min(view.oldestSeq, 1);
      ui.historyStatus.textContent = hasMore ? '' : 'This is the beginning of the conversation.';
      if (view.conversation.id !== state.openId) return;
      // Keep what the reader looks at in place while older messages are added above it.
      const fromBottom = ui.scroller.scrollHeight - ui.scroller.scrollTop;
      page.messages.renderAll(view);
      if (first) page.messages.scrollToBottom();
      else ui.scroller.scrollTop = ui.scroller.scrollHeight - fromBottom;
      markReadSoon();
    } catch (error) {
      ui.historyStatus.textContent = `Could not load messages: ${(error as Error).message}`;
      // Loaded again on the next open or sync.
      if (first) view.messages = null;
    } finally {
      view.loadingHistory = false;
    }
    // A first page shorter than the screen leaves the top in view: keep going while it is. Measured
    // now: the observer's last answer may predate this page (and would load everything at once).
    if (view.conversation.id === state.openId && view.hasMoreBefore && topInView()) void loadHistory(view);
  }

  const topInView = () => ui.scroller.scrollTop <= PRELOAD_PX;
  new IntersectionObserver(
    (entries) => {
      const view = state.openView;
      if (entries.some((entry) => entry.isIntersecting) && view?.messages && view.hasMoreBefore) void loadHistory(view);
    },
    { root: ui.scroller, rootMargin: `${PRELOAD_PX}px 0px 0px 0px` },
  ).observe(ui.sentinel);

  function markReadSoon(): void {
    if (markTimer) return;
    markTimer = setTimeout(() => {
      markTimer = null;
      const view = state.openView;
      const client = state.client;
      if (!client?.connected || !view?.messages || document.visibilityState !== 'visible') return;
      if (state.myReadSeq(view.conversation.id) >= view.lastOthersSeq) return;
      client.markRead(view.conversation.id, view.lastSeq).then(
        () => page.list.renderItem(view.conversation.id),
        () => {},
      );
    }, 250);
  }

  function afterSync(): void {
    const view = state.openView;
    if (state.openId) {
      if (view && view.messages === null) void loadHistory(view);
      markReadSoon();
    } else {
      const wanted = location.hash.match(/^#c=([0-9a-f-]{36})$/)?.[1];
      if (wanted && state.views.has(wanted)) open(wanted);
    }
  }

  ui.back.addEventListener('click', () => open(null));
  document.addEventListener('visibilitychange', () => markReadSoon());

  return { open, renderHeader, markReadSoon, afterSync };
}
