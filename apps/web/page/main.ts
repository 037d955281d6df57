/**
 * The browser client: one page over the SDK (packages/client). The SDK owns the connection, retries,
 * deduplication, resync and receipts; this file keeps what the page shows — conversations with unread
 * counts, the open conversation's messages, typing and presence — and turns clicks into requests.
 */
import { ChatClient, type ChatError, type OutgoingMessage } from '@chat/client';
import { backoffDelay, limits, type Conversation, type ConversationSummary, type Message, type Presence } from '@chat/protocol';
import { byId, formatTime, h } from './dom.ts';
import type { PageApi } from './api.ts';
import { installCalls } from './calls.ts';
import { installArchive } from './archive.ts';
import { installNotifications } from './notifications.ts';
import { installScheduled } from './scheduled.ts';
import { installSearch } from './search.ts';
import { clearSession, freshToken, loadSession, signIn, stickyId, userIdFor, type Session } from './session.ts';

const HISTORY_PAGE = 50;
const REACTIONS = ['👍', '❤️', '😂', '😮', '😢'];
const STATUS_TEXT = { sending: 'Sending', sent: 'Sent', delivered: 'Delivered', read: 'Read', failed: 'Failed' } as const;
const STATUS_GLYPH = { sending: '◷', sent: '✓', delivered: '✓✓', read: '✓✓', failed: '!' } as const;
type Status = keyof typeof STATUS_TEXT;

/** What the page knows about one conversation. */
interface ConversationView {
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

const ui = {
  connection: byId('connection'),
  signin: byId('signin'),
  signinForm: byId<HTMLFormElement>('signin-form'),
  signinName: byId<HTMLInputElement>('signin-name'),
  signinError: byId('signin-error'),
  me: byId('me'),
  myName: byId('my-name'),
  myStatus: byId<HTMLSelectElement>('my-status'),
  signOut: byId('sign-out'),
  chat: byId('chat'),
  newChat: byId<HTMLFormElement>('new-chat'),
  newChatUser: byId<HTMLInputElement>('new-chat-user'),
  newChatError: byId('new-chat-error'),
  conversations: byId<HTMLUListElement>('conversations'),
  noConversations: byId('no-conversations'),
  conversation: byId('conversation'),
  placeholder: byId('placeholder'),
  back: byId('back'),
  title: byId('conversation-title'),
  subtitle: byId('conversation-subtitle'),
  presence: byId('conversation-presence'),
  scroller: byId('scroller'),
  sentinel: byId('history-sentinel'),
  historyStatus: byId('history-status'),
  messages: byId<HTMLOListElement>('messages'),
  messagesLog: byId('messages-log'),
  typing: byId('typing'),
  composer: byId<HTMLFormElement>('composer'),
  composerInput: byId<HTMLTextAreaElement>('composer-input'),
  composerContext: byId('composer-context'),
  composerContextText: byId('composer-context-text'),
  composerCancel: byId('composer-cancel'),
};

let session: Session | null = null;
let chat: ChatClient | null = null;
let nodeId: string | null = null;
const views = new Map<string, ConversationView>();
const presence = new Map<string, Presence>();
/** Own messages not stored yet (sending or failed), by clientMsgId. */
const outbox = new Map<string, OutgoingMessage>();
let openId: string | null = null;
let composerMode: { kind: 'reply' | 'edit'; message: Message } | null = null;
let wantOffline = false;
let reconnectTimer: ReturnType<typeof setTimeout> | null = null;
let reconnectAttempts = 0;
let tokenRefusals = 0;

const clientHooks: Array<(client: ChatClient) => void> = [];
const openHooks: Array<(conversation: Conversation | null) => void> = [];
let listFilter: (conversationId: string) => boolean = () => true;

/** What the feature modules (notifications, calls) use of the page. */
const page: PageApi & { readonly session: Session | null } = {
  get client() {
    return chat;
  },
  get userId() {
    return session?.userId ?? null;
  },
  get session() {
    return session;
  },
  get openConversation() {
    return (openId ? views.get(openId)?.conversation : null) ?? null;
  },
  conversation: (conversationId) => views.get(conversationId)?.conversation ?? null,
  displayName,
  otherMember,
  open: (conversationId) => {
    if (views.has(conversationId)) return openConversation(conversationId);
    void chat?.request('conversation:get', { conversationId }).then(
      ({ conversation }) => {
        upsertConversation(conversation);
        openConversation(conversation.id);
      },
      (error: ChatError) => notice(error.message),
    );
  },
  notice: (text) => notice(text),
  onClient: (hook) => void clientHooks.push(hook),
  onOpen: (hook) => void openHooks.push(hook),
  filterList: (keep, empty) => {
    listFilter = keep;
    ui.noConversations.textContent = empty;
    renderConversationList();
  },
};

// For diagnostics from the console and for the browser tests (e.g. `chatPage.client.receipts(id)`).
(globalThis as { chatPage?: typeof page }).chatPage = page;

// ── sign-in ──────────────────────────────────────────────────────────────────────────────────────

ui.signinForm.addEventListener('submit', (event) => {
  event.preventDefault();
  ui.signinError.textContent = '';
  const button = ui.signinForm.querySelector('button')!;
  button.disabled = true;
  signIn(ui.signinName.value)
    .then((next) => start(next))
    .catch((error: unknown) => (ui.signinError.textContent = error instanceof Error ? error.message : String(error)))
    .finally(() => (button.disabled = false));
});

ui.signOut.addEventListener('click', () => {
  clearSession();
  location.hash = '';
  location.reload();
});

function start(next: Session): void {
  session = next;
  ui.signin.hidden = true;
  ui.chat.hidden = false;
  ui.me.hidden = false;
  ui.myName.textContent = next.displayName;
  setConnection('connecting', 'Connecting…');

  const client = new ChatClient({ url: location.origin, token: () => freshToken(next), sticky: stickyId() });
  chat = client;
  client.on('conversation', (conversation) => upsertConversation(conversation));
  client.on('conversationRemoved', ({ conversationId }) => removeConversation(conversationId));
  client.on('message', (message) => onMessage(message));
  client.on('messageUpdated', (message) => onMessageUpdated(message));
  client.on('messageHidden', ({ conversationId, messageId }) => onMessageHidden(conversationId, messageId));
  client.on('receipt', (receipt) => {
    if (receipt.conversationId === openId) refreshTicks();
    renderConversationItem(receipt.conversationId);
  });
  client.on('status', (event) => {
    if (event.state === 'sent' || event.state === 'failed') {
      const outgoing = outbox.get(event.clientMsgId);
      if (outgoing && event.state === 'sent') outbox.delete(event.clientMsgId);
      if (outgoing && event.state === 'failed') renderPending(outgoing);
    }
    if (event.conversationId === openId) refreshTicks();
  });
  client.on('typing', (event) => {
    if (event.conversationId === openId) renderTyping();
    renderConversationItem(event.conversationId);
  });
  client.on('connected', () => setConnection('connecting', 'Syncing…'));
  client.on('disconnected', ({ willReconnect }) => {
    nodeId = null;
    if (wantOffline) return;
    setConnection('reconnecting', 'Reconnecting… messages you send now go out once connected');
    if (!willReconnect) scheduleReconnect();
  });
  client.on('synced', () => void afterSync(client));
  client.on('error', (error) => {
    console.warn('chat:', error.code, error.message);
    // A refused token: the next handshake mints a fresh one (a restarted server may sign with a new
    // secret). The token callback itself failing means this server mints no tokens for us any more.
    if (error.code.startsWith('token_')) next.expiresAt = 0;
    if (error.code === 'unauthorized' && client === chat) signOutLocally(error.message);
  });
  client.on('presence', (next) => {
    presence.set(next.userId, next);
    renderPresence(next.userId);
  });
  for (const hook of clientHooks) hook(client);
  connect();
}

function connect(): void {
  const client = chat;
  if (!client || wantOffline || client.connected) return;
  client.connect().then(
    () => {
      reconnectAttempts = 0;
      tokenRefusals = 0;
    },
    (error: ChatError) => {
      if (client !== chat) return;
      if (error.code === 'unauthorized' || (error.code.startsWith('token_') && ++tokenRefusals >= 3)) {
        // Fresh tokens did not help (or none can be minted): sign in again.
        return signOutLocally(error.message);
      }
      if (error.code.startsWith('token_') && session) session.expiresAt = 0;
      scheduleReconnect();
    },
  );
}

/** Back to the sign-in form, saying why; what this tab held is dropped with the client. */
function signOutLocally(reason: string): void {
  chat?.close();
  chat = null;
  session = null;
  clearSession();
  views.clear();
  outbox.clear();
  openConversation(null);
  ui.chat.hidden = true;
  ui.me.hidden = true;
  ui.signin.hidden = false;
  ui.signinError.textContent = `Signed out: ${reason}`;
  setConnection('idle', 'Not signed in');
  ui.signinName.focus();
}

/** The SDK stops after a failed connect() or a refusal it cannot retry; the page keeps trying, with back-off. */
function scheduleReconnect(): void {
  if (reconnectTimer || wantOffline) return;
  const delay = backoffDelay(++reconnectAttempts, { initialMs: 500, maxMs: 10_000 });
  reconnectTimer = setTimeout(() => {
    reconnectTimer = null;
    connect();
  }, delay);
}

// A phone that loses its network tells the page at once, while the WebSocket would notice only at its
// next missed heartbeat (up to a minute): disconnect now, show it, and reconnect — with a resync of
// everything missed — as soon as the browser is online again.
window.addEventListener('offline', () => {
  wantOffline = true;
  chat?.disconnect();
  nodeId = null;
  setConnection('offline', 'Offline — messages you send now go out once you are back online');
});
window.addEventListener('online', () => {
  wantOffline = false;
  reconnectAttempts = 0;
  setConnection('reconnecting', 'Reconnecting…');
  connect();
});

async function afterSync(client: ChatClient): Promise<void> {
  try {
    nodeId = (await client.request('session:info', {})).nodeId;
  } catch {
    nodeId = null;
  }
  if (client.connected) setConnection('online', nodeId ? `Connected · ${nodeId}` : 'Connected');
  // My own status, as another device (or this tab before a reload) may have set it.
  void client.request('presence:get', { userIds: [client.userId!] }).then(
    ({ presence: [mine] }) => {
      if (mine && mine.status !== 'offline') ui.myStatus.value = mine.status;
    },
    () => {},
  );
  // Presence changes while disconnected were not pushed to us: ask again for everyone we show.
  await refreshPresence([...views.values()].flatMap((view) => view.conversation.members.map((member) => member.userId)));
  if (openId) {
    const view = views.get(openId);
    if (view && view.messages === null) void loadHistory(view);
    markReadSoon();
  } else {
    const wanted = location.hash.match(/^#c=([0-9a-f-]{36})$/)?.[1];
    if (wanted && views.has(wanted)) openConversation(wanted);
  }
}

function setConnection(state: 'idle' | 'connecting' | 'online' | 'reconnecting' | 'offline', text: string): void {
  ui.connection.dataset['state'] = state;
  // Presence shown while disconnected is stale: the dots fade until the next sync.
  document.body.dataset['connection'] = state;
  if (nodeId) ui.connection.dataset['node'] = nodeId;
  else delete ui.connection.dataset['node'];
  ui.connection.textContent = text;
}

// ── conversations ────────────────────────────────────────────────────────────────────────────────

function upsertConversation(conversation: Conversation | ConversationSummary): void {
  let view = views.get(conversation.id);
  const summary = 'lastMessage' in conversation ? conversation : null;
  if (!view) {
    const last = summary?.lastMessage ?? null;
    // Without the last message's sender, assume the newest seq may be someone else's: marking read is idempotent.
    const othersSeq = last && last.senderId === session?.userId ? 0 : conversation.lastSeq;
    view = { conversation, lastMessage: last, lastSeq: conversation.lastSeq, lastOthersSeq: othersSeq, messages: null, oldestSeq: Infinity, hasMoreBefore: true, loadingHistory: false };
    views.set(conversation.id, view);
    presenceLater(conversation.members.map((member) => member.userId));
  } else {
    view.conversation = conversation;
    view.lastSeq = Math.max(view.lastSeq, conversation.lastSeq);
    if (summary?.lastMessage && (!view.lastMessage || summary.lastMessage.seq >= view.lastMessage.seq)) view.lastMessage = summary.lastMessage;
  }
  renderConversationList();
  if (conversation.id === openId) {
    renderHeader();
    for (const hook of openHooks) hook(view.conversation);
  }
}

function removeConversation(conversationId: string): void {
  views.delete(conversationId);
  if (openId === conversationId) openConversation(null);
  renderConversationList();
}

function displayName(userId: string, conversation?: Conversation): string {
  if (userId === session?.userId) return session.displayName;
  const member = conversation?.members.find((m) => m.userId === userId) ?? [...views.values()].flatMap((v) => v.conversation.members).find((m) => m.userId === userId);
  return member?.displayName ?? userId;
}

function otherMember(conversation: Conversation): string | null {
  if (conversation.kind !== 'direct') return null;
  return conversation.members.find((member) => member.userId !== session?.userId)?.userId ?? null;
}

function titleOf(conversation: Conversation): string {
  if (conversation.kind === 'group') return conversation.title ?? 'Group';
  const other = otherMember(conversation);
  return other ? displayName(other, conversation) : 'Just you';
}

/** lastSeq minus my read watermark, as the server counts it (sending moves the sender's watermark). */
function unreadOf(view: ConversationView): number {
  const me = session?.userId;
  const mine = chat?.receipts(view.conversation.id).find((receipt) => receipt.userId === me)?.lastReadSeq ?? 0;
  const ownLast = view.lastMessage?.senderId === me ? view.lastMessage!.seq : 0;
  return Math.max(0, view.lastSeq - Math.max(mine, ownLast));
}

function sortedViews(): ConversationView[] {
  const activity = (view: ConversationView) => Math.max(Date.parse(view.conversation.lastActivityAt), view.lastMessage ? Date.parse(view.lastMessage.createdAt) : 0);
  return [...views.values()].sort((a, b) => activity(b) - activity(a));
}

function renderConversationList(): void {
  const items = sortedViews()
    .filter((view) => listFilter(view.conversation.id))
    .map((view) => conversationItem(view));
  ui.conversations.replaceChildren(...items);
  ui.noConversations.hidden = items.length > 0;
}

function renderConversationItem(conversationId: string): void {
  const view = views.get(conversationId);
  const current = ui.conversations.querySelector(`[data-conversation="${conversationId}"]`);
  if (view && current) current.replaceWith(conversationItem(view));
}

function conversationItem(view: ConversationView): HTMLLIElement {
  const { conversation } = view;
  const other = otherMember(conversation);
  const unread = unreadOf(view);
  const typers = chat?.typingIn(conversation.id) ?? [];
  const status = other ? presenceStatus(other) : null;
  const preview = typers.length > 0 ? `${typers.map((id) => displayName(id, conversation)).join(', ')} typing…` : previewOf(view.lastMessage);
  const title = titleOf(conversation);
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
        'aria-current': conversation.id === openId ? 'true' : null,
        onclick: () => openConversation(conversation.id),
      },
      status ? h('span', { class: 'presence-dot', 'data-status': status, 'data-user': other, 'aria-hidden': 'true' }) : h('span', { class: 'presence-dot group', 'aria-hidden': 'true' }),
      h(
        'span',
        { class: 'item-text' },
        h('span', { class: 'item-title' }, title, status ? h('span', { class: 'visually-hidden' }, ` (${statusLabel(status)})`) : null),
        h('span', { class: `item-preview${typers.length ? ' is-typing' : ''}` }, preview),
      ),
      unread > 0 ? h('span', { class: 'badge unread', 'data-unread': unread }, unread > 99 ? '99+' : String(unread), h('span', { class: 'visually-hidden' }, ' unread')) : null,
    ),
  );
}

function previewOf(message: Message | null): string {
  if (!message) return 'No messages yet';
  if (message.deletedAt) return 'Message deleted';
  const who = message.senderId === session?.userId ? 'You: ' : '';
  return `${who}${message.body}`.slice(0, 120);
}

ui.newChat.addEventListener('submit', (event) => {
  event.preventDefault();
  const client = chat;
  if (!client) return;
  ui.newChatError.textContent = '';
  const userId = userIdFor(ui.newChatUser.value);
  if (!userId) {
    ui.newChatError.textContent = 'Type a name.';
    return;
  }
  if (userId === session?.userId) {
    ui.newChatError.textContent = 'That is you. Type someone else’s name.';
    return;
  }
  client.request('conversation:open-direct', { userId }).then(
    ({ conversation }) => {
      ui.newChatUser.value = '';
      upsertConversation(conversation);
      openConversation(conversation.id);
    },
    (error: ChatError) => (ui.newChatError.textContent = error.message),
  );
});

// ── the open conversation ────────────────────────────────────────────────────────────────────────

function openConversation(conversationId: string | null): void {
  openId = conversationId;
  setComposerMode(null);
  const view = conversationId ? views.get(conversationId) : undefined;
  document.body.classList.toggle('show-conversation', !!view);
  ui.conversation.hidden = !view;
  ui.placeholder.hidden = !!view;
  history.replaceState(null, '', view ? `#c=${view.conversation.id}` : location.pathname + location.search);
  renderConversationList();
  ui.messages.replaceChildren();
  ui.historyStatus.textContent = '';
  for (const hook of openHooks) hook(view?.conversation ?? null);
  if (!view) return;
  renderHeader();
  renderTyping();
  if (view.messages === null) void loadHistory(view);
  else {
    renderAllMessages(view);
    scrollToBottom();
    if (!view.hasMoreBefore) ui.historyStatus.textContent = 'This is the beginning of the conversation.';
  }
  markReadSoon();
  ui.composerInput.focus({ preventScroll: true });
}

ui.back.addEventListener('click', () => openConversation(null));

function renderHeader(): void {
  const view = openId ? views.get(openId) : undefined;
  if (!view) return;
  ui.title.textContent = titleOf(view.conversation);
  const other = otherMember(view.conversation);
  const status = other ? presenceStatus(other) : null;
  ui.presence.hidden = !status;
  if (status) {
    ui.presence.dataset['status'] = status;
    ui.presence.dataset['user'] = other!;
  }
  ui.subtitle.textContent = status ? presenceText(other!) : `${view.conversation.members.length} members: ${view.conversation.members.map((m) => m.displayName).join(', ')}`;
}

async function loadHistory(view: ConversationView): Promise<void> {
  const client = chat;
  if (!client || view.loadingHistory || (!view.hasMoreBefore && view.messages)) return;
  view.loadingHistory = true;
  const first = view.messages === null;
  ui.historyStatus.textContent = first ? 'Loading messages…' : 'Loading older messages…';
  try {
    const before = Number.isFinite(view.oldestSeq) ? view.oldestSeq : undefined;
    const { messages, hasMore } = await client.request('history:fetch', { conversationId: view.conversation.id, limit: HISTORY_PAGE, ...(before !== undefined && { before }) });
    view.messages ??= new Map();
    for (const message of messages) {
      const known = view.messages.get(message.id);
      if (!known || known.version < message.version) view.messages.set(message.id, message);
      view.oldestSeq = Math.min(view.oldestSeq, message.seq);
      view.lastSeq = Math.max(view.lastSeq, message.seq);
      if (message.senderId !== session?.userId) view.lastOthersSeq = Math.max(view.lastOthersSeq, message.seq);
    }
    view.hasMoreBefore = hasMore;
    if (messages.length === 0) view.oldestSeq = Math.min(view.oldestSeq, 1);
    ui.historyStatus.textContent = hasMore ? '' : 'This is the beginning of the conversation.';
    if (view.conversation.id !== openId) return;
    // Keep what the reader looks at in place while older messages are added above it.
    const fromBottom = ui.scroller.scrollHeight - ui.scroller.scrollTop;
    renderAllMessages(view);
    if (first) scrollToBottom();
    else ui.scroller.scrollTop = ui.scroller.scrollHeight - fromBottom;
    markReadSoon();
  } catch (error) {
    ui.historyStatus.textContent = `Could not load messages: ${(error as Error).message}`;
  } finally {
    view.loadingHistory = false;
  }
  // A first page shorter than the screen leaves the top in view: keep going while it is. Measured
  // now: the observer's last answer may predate this page (and would load everything at once).
  if (view.conversation.id === openId && view.hasMoreBefore && topInView()) void loadHistory(view);
}

const PRELOAD_PX = 200;
const topInView = () => ui.scroller.scrollTop <= PRELOAD_PX;
new IntersectionObserver(
  (entries) => {
    const view = openId ? views.get(openId) : undefined;
    if (entries.some((entry) => entry.isIntersecting) && view?.messages && view.hasMoreBefore) void loadHistory(view);
  },
  { root: ui.scroller, rootMargin: `${PRELOAD_PX}px 0px 0px 0px` },
).observe(ui.sentinel);

function nearBottom(): boolean {
  return ui.scroller.scrollHeight - ui.scroller.scrollTop - ui.scroller.clientHeight < 80;
}

function scrollToBottom(): void {
  ui.scroller.scrollTop = ui.scroller.scrollHeight;
}

function renderAllMessages(view: ConversationView): void {
  const stored = [...(view.messages?.values() ?? [])].sort((a, b) => a.seq - b.seq);
  const pending = [...outbox.values()].filter((entry) => entry.conversationId === view.conversation.id && !stored.some((m) => m.clientMsgId === entry.clientMsgId));
  // A whole page at once (opening, older history) is not news: the live region announces only what
  // arrives after it.
  ui.messagesLog.setAttribute('aria-busy', 'true');
  ui.messages.replaceChildren(...stored.map((message) => messageItem(message)), ...pending.map((entry) => pendingItem(entry)));
  requestAnimationFrame(() => ui.messagesLog.removeAttribute('aria-busy'));
}

function onMessage(message: Message): void {
  const view = views.get(message.conversationId);
  if (!view) {
    // A conversation we learn about from its first message: fetch it (members, title) once.
    void chat?.request('conversation:get', { conversationId: message.conversationId }).then(
      ({ conversation }) => {
        upsertConversation(conversation);
        onMessage(message);
      },
      () => {},
    );
    return;
  }
  if (!view.lastMessage || message.seq >= view.lastMessage.seq) view.lastMessage = message;
  view.lastSeq = Math.max(view.lastSeq, message.seq);
  // A reply also says its sender has read up to it: the SDK moves their watermarks from the message
  // itself and reports the ticks that moved ('receipt' above).
  if (message.senderId !== session?.userId) view.lastOthersSeq = Math.max(view.lastOthersSeq, message.seq);
  if (view.messages) view.messages.set(message.id, message);
  renderConversationList();
  if (message.conversationId !== openId || !view.messages) return;
  const stick = nearBottom() || message.senderId === session?.userId;
  placeMessage(message);
  if (stick) scrollToBottom();
  markReadSoon();
}

/** Inserts (or replaces, including its own pending twin) a message's element in seq order. */
function placeMessage(message: Message): void {
  const element = messageItem(message);
  const existing = ui.messages.querySelector(`[data-id="${message.id}"]`) ?? ui.messages.querySelector(`[data-client-msg-id="${message.clientMsgId}"]`);
  if (existing) {
    existing.replaceWith(element);
    return;
  }
  for (const child of ui.messages.children) {
    const seq = Number((child as HTMLElement).dataset['seq'] ?? Infinity);
    if (seq > message.seq) return void ui.messages.insertBefore(element, child);
  }
  ui.messages.append(element);
}

function onMessageUpdated(message: Message): void {
  const view = views.get(message.conversationId);
  if (!view) return;
  if (view.messages?.has(message.id) || (view.messages && message.seq >= view.oldestSeq)) view.messages.set(message.id, message);
  if (view.lastMessage?.id === message.id) view.lastMessage = message;
  renderConversationItem(message.conversationId);
  if (message.conversationId === openId) {
    if (ui.messages.querySelector(`[data-id="${message.id}"]`)) placeMessage(message);
    // Replies quoting it show the new text.
    for (const quote of ui.messages.querySelectorAll<HTMLElement>(`[data-reply-to="${message.id}"]`)) quote.replaceWith(replyQuote(message.id, view));
  }
}

function onMessageHidden(conversationId: string, messageId: string): void {
  const view = views.get(conversationId);
  view?.messages?.delete(messageId);
  if (view?.lastMessage?.id === messageId) view.lastMessage = null;
  if (conversationId === openId) ui.messages.querySelector(`[data-id="${messageId}"]`)?.remove();
  renderConversationItem(conversationId);
}

function messageItem(message: Message): HTMLLIElement {
  const view = views.get(message.conversationId);
  const mine = message.senderId === session?.userId;
  if (message.kind === 'system') {
    return h('li', { class: 'message system', 'data-id': message.id, 'data-seq': message.seq }, h('p', {}, message.body));
  }
  const deleted = message.deletedAt !== null;
  const author = displayName(message.senderId, view?.conversation);
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
    reactionsOf(message),
    h(
      'p',
      { class: 'meta' },
      h('time', { datetime: message.createdAt }, formatTime(message.createdAt)),
      message.editedAt && !deleted ? h('span', { class: 'edited' }, ' · edited') : null,
      mine ? tick(chat?.statusOf(message).state ?? 'sent', message.clientMsgId) : null,
    ),
    deleted ? null : actionsFor(message, mine),
  );
  return item;
}

function pendingItem(entry: OutgoingMessage): HTMLLIElement {
  const state: Status = entry.state === 'failed' ? 'failed' : 'sending';
  return h(
    'li',
    { class: `message mine pending${state === 'failed' ? ' failed' : ''}`, 'data-client-msg-id': entry.clientMsgId },
    h('p', { class: 'body' }, entry.payload.body),
    h('p', { class: 'meta' }, tick(state, entry.clientMsgId)),
    state === 'failed'
      ? h(
          'p',
          { class: 'failure' },
          h('span', {}, entry.error?.message ?? 'Not sent.'),
          ' ',
          h('button', { type: 'button', class: 'link-button retry', onclick: () => retry(entry.clientMsgId) }, 'Retry'),
          h('button', { type: 'button', class: 'link-button discard', onclick: () => discard(entry.clientMsgId) }, 'Discard'),
        )
      : null,
  );
}

function renderPending(entry: OutgoingMessage): void {
  if (entry.conversationId !== openId) return;
  const stick = nearBottom();
  ui.messages.querySelector(`[data-client-msg-id="${entry.clientMsgId}"]:not([data-id])`)?.replaceWith(pendingItem(entry));
  // The failure line with Retry must not end up below the fold.
  if (stick) scrollToBottom();
}

function retry(clientMsgId: string): void {
  const entry = chat?.retry(clientMsgId);
  if (entry) renderPending(entry);
}

/** Forgets a failed message that cannot succeed as it is (too long, say): the SDK drops it, and so do we. */
function discard(clientMsgId: string): void {
  if (!chat?.discard(clientMsgId)) return;
  outbox.delete(clientMsgId);
  ui.messages.querySelector(`[data-client-msg-id="${clientMsgId}"]:not([data-id])`)?.remove();
  ui.composerInput.focus();
}

function tick(state: Status, clientMsgId: string): HTMLSpanElement {
  return h(
    'span',
    { class: 'status', 'data-status': state, 'data-for': clientMsgId, title: STATUS_TEXT[state] },
    h('span', { 'aria-hidden': 'true' }, STATUS_GLYPH[state]),
    h('span', { class: 'visually-hidden' }, STATUS_TEXT[state]),
  );
}

/** Every own message's tick in the open conversation, from the SDK's watermarks: O(messages × members). */
function refreshTicks(): void {
  const view = openId ? views.get(openId) : undefined;
  if (!view?.messages || !chat) return;
  for (const element of ui.messages.querySelectorAll<HTMLElement>('.message.mine[data-id]')) {
    const message = view.messages.get(element.dataset['id']!);
    if (!message) continue;
    const state = chat.statusOf(message).state;
    const current = element.querySelector<HTMLElement>('.status');
    if (current && current.dataset['status'] !== state) current.replaceWith(tick(state, message.clientMsgId));
  }
  for (const entry of outbox.values()) if (entry.conversationId === openId && entry.state === 'failed') renderPending(entry);
}

function replyQuote(replyToId: string, view: ConversationView): HTMLElement {
  const original = view.messages?.get(replyToId);
  const text = !original ? 'An earlier message' : original.deletedAt ? 'This message was deleted' : original.body;
  const who = original ? displayName(original.senderId, view.conversation) : '';
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

function reactionsOf(message: Message): HTMLElement | null {
  if (message.reactions.length === 0) return null;
  const byEmoji = new Map<string, string[]>();
  for (const reaction of message.reactions) byEmoji.set(reaction.emoji, [...(byEmoji.get(reaction.emoji) ?? []), reaction.userId]);
  const me = session?.userId;
  return h(
    'p',
    { class: 'reactions' },
    ...[...byEmoji].map(([emoji, users]) => {
      const mineToo = users.includes(me ?? '');
      return h(
        'button',
        {
          type: 'button',
          class: 'reaction',
          'aria-pressed': String(mineToo),
          'aria-label': `${emoji} ${users.length}${mineToo ? ', including you' : ''}. ${mineToo ? 'Remove your reaction' : 'React too'}`,
          onclick: () => react(message, emoji, mineToo ? 'remove' : 'add'),
        },
        `${emoji} ${users.length}`,
      );
    }),
  );
}

function actionsFor(message: Message, mine: boolean): HTMLElement {
  const menuId = `actions-${message.id}`;
  const toggle = h('button', { type: 'button', class: 'more icon-button', 'aria-expanded': 'false', 'aria-controls': menuId, 'aria-label': 'Message actions' }, '⋯');
  const alreadyReacted = (emoji: string) => message.reactions.some((r) => r.emoji === emoji && r.userId === session?.userId);
  const menu = h(
    'div',
    { id: menuId, class: 'actions', role: 'group', 'aria-label': 'Message actions', hidden: true },
    h('button', { type: 'button', onclick: () => setComposerMode({ kind: 'reply', message }) }, 'Reply'),
    ...REACTIONS.map((emoji) =>
      h('button', { type: 'button', class: 'react', 'aria-label': `React with ${emoji}`, onclick: () => react(message, emoji, alreadyReacted(emoji) ? 'remove' : 'add') }, emoji),
    ),
    mine ? h('button', { type: 'button', onclick: () => setComposerMode({ kind: 'edit', message }) }, 'Edit') : null,
    mine ? h('button', { type: 'button', class: 'danger', onclick: () => deleteMessage(message, 'everyone') }, 'Delete for everyone') : null,
    h('button', { type: 'button', class: 'danger', onclick: () => deleteMessage(message, 'me') }, 'Delete for me'),
  );
  toggle.addEventListener('click', () => {
    const open = toggle.getAttribute('aria-expanded') !== 'true';
    closeMenus();
    toggle.setAttribute('aria-expanded', String(open));
    menu.hidden = !open;
    if (open) menu.querySelector('button')?.focus();
  });
  menu.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return;
    closeMenus();
    toggle.focus();
  });
  menu.addEventListener('click', (event) => {
    if ((event.target as HTMLElement).closest('button')) closeMenus();
  });
  return h('div', { class: 'message-actions' }, toggle, menu);
}

function closeMenus(): void {
  for (const toggle of ui.messages.querySelectorAll('.more[aria-expanded="true"]')) toggle.setAttribute('aria-expanded', 'false');
  for (const menu of ui.messages.querySelectorAll<HTMLElement>('.actions:not([hidden])')) menu.hidden = true;
}

function react(message: Message, emoji: string, action: 'add' | 'remove'): void {
  chat?.request('message:react', { messageId: message.id, emoji, action }).catch((error: ChatError) => notice(`Could not react: ${error.message}`));
}

function deleteMessage(message: Message, scope: 'everyone' | 'me'): void {
  const question = scope === 'everyone' ? 'Delete this message for everyone?' : 'Delete this message for you? Others still see it.';
  if (!confirm(question)) return;
  chat?.request('message:delete', { messageId: message.id, scope }).catch((error: ChatError) => notice(`Could not delete: ${error.message}`));
}

function notice(text: string): void {
  ui.historyStatus.textContent = text;
}

// ── composing ────────────────────────────────────────────────────────────────────────────────────

function setComposerMode(mode: typeof composerMode): void {
  composerMode = mode;
  ui.composerContext.hidden = !mode;
  ui.composer.dataset['mode'] = mode?.kind ?? 'new';
  if (!mode) {
    ui.composerContextText.textContent = '';
    return;
  }
  const who = displayName(mode.message.senderId, views.get(mode.message.conversationId)?.conversation);
  ui.composerContextText.textContent = mode.kind === 'edit' ? 'Editing your message' : `Replying to ${who}: ${mode.message.body.slice(0, 80)}`;
  if (mode.kind === 'edit') ui.composerInput.value = mode.message.body;
  ui.composerInput.focus();
}

ui.composerCancel.addEventListener('click', () => {
  if (composerMode?.kind === 'edit') ui.composerInput.value = '';
  setComposerMode(null);
  ui.composerInput.focus();
});

ui.composerInput.addEventListener('input', () => {
  if (!chat || !openId) return;
  if (ui.composerInput.value.trim() === '') chat.stopTyping(openId);
  else if (composerMode?.kind !== 'edit') chat.typing(openId);
});

ui.composerInput.addEventListener('keydown', (event) => {
  // Enter sends, Shift+Enter is a new line (as in most chat apps); IME composition is left alone.
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  } else if (event.key === 'Escape' && composerMode) {
    ui.composerCancel.click();
  }
});

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  const client = chat;
  const view = openId ? views.get(openId) : undefined;
  const body = ui.composerInput.value.trim();
  if (!client || !view || !body) return;
  if (body.length > limits.messageBodyHard) return notice('That message is too long.');
  if (composerMode?.kind === 'edit') {
    const { message } = composerMode;
    client.request('message:edit', { messageId: message.id, body }).catch((error: ChatError) => notice(`Could not edit: ${error.message}`));
  } else {
    const outgoing = client.send({ conversationId: view.conversation.id, body, ...(composerMode?.kind === 'reply' && { replyToId: composerMode.message.id }) });
    if (outgoing.state !== 'sent') {
      outbox.set(outgoing.clientMsgId, outgoing);
      if (view.messages) {
        ui.messages.append(pendingItem(outgoing));
        scrollToBottom();
      }
    }
  }
  ui.composerInput.value = '';
  setComposerMode(null);
});

// ── read receipts ────────────────────────────────────────────────────────────────────────────────

let markTimer: ReturnType<typeof setTimeout> | null = null;

/** Marks the open conversation read up to its newest message while the page is in view, coalesced. */
function markReadSoon(): void {
  if (markTimer) return;
  markTimer = setTimeout(() => {
    markTimer = null;
    const view = openId ? views.get(openId) : undefined;
    if (!chat?.connected || !view?.messages || document.visibilityState !== 'visible') return;
    const me = session?.userId;
    const mine = chat.receipts(view.conversation.id).find((receipt) => receipt.userId === me)?.lastReadSeq ?? 0;
    if (mine >= view.lastOthersSeq) return;
    chat.markRead(view.conversation.id, view.lastSeq).then(
      () => renderConversationItem(view.conversation.id),
      () => {},
    );
  }, 250);
}
document.addEventListener('visibilitychange', () => markReadSoon());

// ── typing and presence ──────────────────────────────────────────────────────────────────────────

function renderTyping(): void {
  const view = openId ? views.get(openId) : undefined;
  const typers = view && chat ? chat.typingIn(view.conversation.id) : [];
  if (typers.length === 0) {
    ui.typing.replaceChildren();
    ui.typing.dataset['typing'] = 'false';
    return;
  }
  const names = typers.map((id) => displayName(id, view!.conversation));
  ui.typing.dataset['typing'] = 'true';
  ui.typing.replaceChildren(
    h('span', {}, `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing`),
    h('span', { class: 'dots', 'aria-hidden': 'true' }, h('span', {}, '.'), h('span', {}, '.'), h('span', {}, '.')),
  );
}

// New conversations (the whole list on first connect) ask for their members' presence in one batch.
const presenceWanted = new Set<string>();
let presenceTimer: ReturnType<typeof setTimeout> | null = null;
function presenceLater(userIds: string[]): void {
  for (const id of userIds) presenceWanted.add(id);
  if (presenceTimer !== null) return;
  presenceTimer = setTimeout(() => {
    presenceTimer = null;
    const ids = [...presenceWanted];
    presenceWanted.clear();
    void refreshPresence(ids);
  }, 50);
}

async function refreshPresence(userIds: string[]): Promise<void> {
  const client = chat;
  const wanted = [...new Set(userIds)].filter((id) => id !== session?.userId);
  if (!client?.connected || wanted.length === 0) return;
  for (let i = 0; i < wanted.length; i += limits.presenceQuery) {
    try {
      const { presence: list } = await client.request('presence:get', { userIds: wanted.slice(i, i + limits.presenceQuery) });
      for (const entry of list) presence.set(entry.userId, entry);
    } catch {
      // Presence is decoration: the dots stay grey until the next push or sync.
    }
  }
  for (const id of wanted) renderPresence(id);
}

function presenceStatus(userId: string): string {
  const entry = presence.get(userId);
  return entry?.online ? entry.status : 'offline';
}

function statusLabel(status: string): string {
  return { online: 'online', away: 'away', dnd: 'do not disturb', invisible: 'offline', offline: 'offline' }[status] ?? status;
}

function presenceText(userId: string): string {
  const entry = presence.get(userId);
  const status = presenceStatus(userId);
  if (status !== 'offline') return statusLabel(status)[0]!.toUpperCase() + statusLabel(status).slice(1);
  return entry?.lastSeenAt ? `Last seen ${formatTime(entry.lastSeenAt)}` : 'Offline';
}

function renderPresence(userId: string): void {
  for (const view of views.values()) if (view.conversation.members.some((member) => member.userId === userId)) renderConversationItem(view.conversation.id);
  const open = openId ? views.get(openId) : undefined;
  if (open && otherMember(open.conversation) === userId) renderHeader();
}

ui.myStatus.addEventListener('change', () => {
  const status = ui.myStatus.value as 'online' | 'away' | 'dnd' | 'invisible';
  chat?.request('presence:set-status', { status }).catch((error: ChatError) => notice(`Could not change status: ${error.message}`));
});

// ── start ────────────────────────────────────────────────────────────────────────────────────────

document.addEventListener('click', (event) => {
  if (!(event.target as HTMLElement).closest('.message-actions')) closeMenus();
});

installNotifications(page);
installArchive(page);
installCalls(page);
installSearch(page);
installScheduled(page);

const saved = loadSession();
if (saved) start(saved);
else ui.signinName.focus();
