/**
 * Presence and typing: the dots and "last seen" of the people in the list and the header, my own
 * status, and who is typing in the open conversation. Presence is asked for in batches and pushed
 * by the server after that; a resync asks again for everyone shown.
 */
import type { ChatClient, ChatError } from '@chat/client';
import { limits, type Presence, type PresenceStatus } from '@chat/protocol';
import { formatTime, h } from './dom.ts';
import type { Page } from './page.ts';
import { ui } from './ui.ts';

const STATUS_LABEL: Record<Presence['status'], string> = { online: 'online', away: 'away', dnd: 'do not disturb', invisible: 'offline', offline: 'offline' };

export interface PresenceView {
  /** Asks for these users' presence soon, with others asked for at about the same time. */
  later(userIds: string[]): void;
  /** What to show for a user: their status while online, else offline. */
  statusOf(userId: string): Presence['status'];
  label(status: Presence['status']): string;
  /** A line for the header: the status, or when they were last seen. */
  text(userId: string): string;
  renderTyping(): void;
  /** After a (re)sync: my own status, and everyone's shown, which changed unseen while disconnected. */
  afterSync(client: ChatClient): Promise<void>;
}

export function installPresence(page: Page): PresenceView {
  const { state } = page;
  // New conversations (the whole list on first connect) ask for their members' presence in one batch.
  const wanted = new Set<string>();
  let timer: ReturnType<typeof setTimeout> | null = null;

  function renderTyping(): void {
    const view = state.openView;
    const typers = view && state.client ? state.client.typingIn(view.conversation.id) : [];
    if (typers.length === 0) {
      ui.typing.replaceChildren();
      ui.typing.dataset['typing'] = 'false';
      return;
    }
    const names = typers.map((id) => state.displayName(id, view!.conversation));
    ui.typing.dataset['typing'] = 'true';
    ui.typing.replaceChildren(
      h('span', {}, `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing`),
      h('span', { class: 'dots', 'aria-hidden': 'true' }, h('span', {}, '.'), h('span', {}, '.'), h('span', {}, '.')),
    );
  }

  function later(userIds: string[]): void {
    for (const id of userIds) wanted.add(id);
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      const ids = [...wanted];
      wanted.clear();
      void refresh(ids);
    }, 50);
  }

  async function refresh(userIds: string[]): Promise<void> {
    const client = state.client;
    const ids = [...new Set(userIds)].filter((id) => id !== state.session?.userId);
    if (!client?.connected || ids.length === 0) return;
    for (let i = 0; i < ids.length; i += limits.presenceQuery) {
      try {
        const { presence: list } = await client.request('presence:get', { userIds: ids.slice(i, i + limits.presenceQuery) });
        for (const entry of list) state.presence.set(entry.userId, entry);
      } catch {
        // Presence is decoration: the dots stay grey until the next push or sync.
      }
    }
    for (const id of ids) render(id);
  }

  function statusOf(userId: string): Presence['status'] {
    const entry = state.presence.get(userId);
    return entry?.online ? entry.status : 'offline';
  }

  const label = (status: Presence['status']): string => STATUS_LABEL[status] ?? status;

  function text(userId: string): string {
    const entry = state.presence.get(userId);
    const status = statusOf(userId);
    if (status !== 'offline') return label(status)[0]!.toUpperCase() + label(status).slice(1);
    return entry?.lastSeenAt ? `Last seen ${formatTime(entry.lastSeenAt)}` : 'Offline';
  }

  function render(userId: string): void {
    for (const view of state.views.values()) if (view.conversation.members.some((member) => member.userId === userId)) page.list.renderItem(view.conversation.id);
    const open = state.openView;
    if (open && state.otherMember(open.conversation) === userId) page.pane.renderHeader();
  }

  async function afterSync(client: ChatClient): Promise<void> {
    // My own status, as another device (or this tab before a reload) may have set it.
    void client.request('presence:get', { userIds: [client.userId!] }).then(
      ({ presence: [mine] }) => {
        if (mine && mine.status !== 'offline') ui.myStatus.value = mine.status;
      },
      () => {},
    );
    // Presence changes while disconnected were not pushed to us: ask again for everyone we show.
    await refresh([...state.views.values()].flatMap((view) => view.conversation.members.map((member) => member.userId)));
  }

  ui.myStatus.addEventListener('change', () => {
    const status = ui.myStatus.value as PresenceStatus;
    state.client?.request('presence:set-status', { status }).catch((error: ChatError) => page.notice(`Could not change status: ${error.message}`));
  });

  page.onClient((client) => {
    client.on('typing', (event) => {
      if (event.conversationId === state.openId) renderTyping();
      page.list.renderItem(event.conversationId);
    });
    client.on('presence', (next) => {
      state.presence.set(next.userId, next);
      render(next.userId);
    });
  });

  return { later, statusOf, label, text, renderTyping, afterSync };
}
