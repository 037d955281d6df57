/**
 * Notifications: the bell with my unread count, a dialog listing them (newest first, older ones on
 * demand), mark one or all read, delete; and muting the open conversation. Every change comes back
 * as a push to all my devices, so the list and badge follow what other tabs and phones do too.
 */
import type { ChatClient, ChatError } from '@chat/client';
import type { Conversation, Notification } from '@chat/protocol';
import type { PageApi } from './api.ts';
import { byId, formatTime, h } from './dom.ts';

const PAGE = 30;

export function installNotifications(page: PageApi): void {
  const button = byId<HTMLButtonElement>('notifications-button');
  const badge = byId('notifications-badge');
  const dialog = byId<HTMLDialogElement>('notifications');
  const list = byId<HTMLUListElement>('notifications-list');
  const empty = byId('notifications-empty');
  const readAll = byId<HTMLButtonElement>('notifications-read-all');
  const close = byId<HTMLButtonElement>('notifications-close');
  const mute = byId<HTMLButtonElement>('mute-button');

  /** Newest first; what the dialog shows. */
  let items: Notification[] = [];
  let nextCursor: string | null = null;
  let loaded = false;
  let unread = 0;
  const muted = new Map<string, boolean>();

  const setUnread = (count: number) => {
    unread = count;
    badge.hidden = count === 0;
    badge.textContent = count > 99 ? '99+' : String(count);
    button.querySelector('.visually-hidden')!.textContent = count > 0 ? `Notifications, ${count} unread` : 'Notifications';
    document.title = count > 0 ? `(${count}) Chat` : 'Chat';
  };

  const describe = (notification: Notification): string => {
    const conversation = notification.conversationId ? page.conversation(notification.conversationId) : null;
    const actor = notification.actorId ? page.displayName(notification.actorId, conversation ?? undefined) : 'Someone';
    switch (notification.kind) {
      case 'message':
        return `${actor}: ${notification.preview}`;
      case 'mention':
        return `${actor} mentioned you: ${notification.preview}`;
      case 'reaction':
        return `${actor} reacted ${notification.preview} to your message`;
      case 'group_added':
        return `${actor} added you to ${notification.preview}`;
      default:
        return notification.preview;
    }
  };

  const render = () => {
    list.replaceChildren(...items.map((notification) => item(notification)));
    if (nextCursor) {
      list.append(h('li', { class: 'notification more-notifications' }, h('button', { type: 'button', class: 'link-button', onclick: () => void load(true) }, 'Show older')));
    }
    empty.hidden = items.length > 0;
    readAll.disabled = unread === 0;
  };

  const item = (notification: Notification): HTMLLIElement => {
    const read = notification.readAt !== null;
    const text = describe(notification);
    return h(
      'li',
      { class: 'notification', 'data-id': notification.id, 'data-read': String(read), 'data-kind': notification.kind },
      h('p', { class: 'notification-text' }, h('span', {}, text), h('time', { datetime: notification.createdAt }, formatTime(notification.createdAt))),
      notification.conversationId ? h('button', { type: 'button', class: 'link-button', 'aria-label': `Open: ${text}`, onclick: () => openFrom(notification) }, 'Open') : null,
      read ? null : h('button', { type: 'button', class: 'link-button', 'aria-label': `Mark read: ${text}`, onclick: () => markRead([notification.id]) }, 'Mark read'),
      h('button', { type: 'button', class: 'link-button', 'aria-label': `Delete: ${text}`, onclick: () => remove(notification.id) }, 'Delete'),
    );
  };

  const client = (): ChatClient | null => page.client;
  const failed = (what: string) => (error: ChatError) => page.notice(`Could not ${what}: ${error.message}`);

  async function load(more = false): Promise<void> {
    const chat = client();
    if (!chat) return;
    try {
      const result = await chat.listNotifications({ limit: PAGE, ...(more && nextCursor ? { cursor: nextCursor } : {}) });
      const known = new Set(items.map((n) => n.id));
      items = more ? [...items, ...result.notifications.filter((n) => !known.has(n.id))] : result.notifications;
      nextCursor = result.nextCursor;
      loaded = true;
      button.hidden = false;
      setUnread(result.unreadCount);
      render();
      // The mute toggle waits for the same proof that this server has notifications.
      renderMute(page.openConversation);
    } catch (error) {
      // A server without notifications (older node) answers unavailable: the bell just stays away.
      if ((error as ChatError).code !== 'unavailable') console.warn('notifications:', (error as Error).message);
    }
  }

  function markRead(ids: string[] | 'all'): void {
    client()
      ?.markNotificationsRead(ids)
      .then((result) => applyRead(result.all, result.notificationIds, result.readAt, result.unreadCount), failed('mark read'));
  }

  function remove(id: string): void {
    client()
      ?.deleteNotification(id)
      .then(({ notificationId, unreadCount }) => applyDeleted(notificationId, unreadCount), failed('delete'));
  }

  function openFrom(notification: Notification): void {
    if (notification.readAt === null) markRead([notification.id]);
    dialog.close();
    page.open(notification.conversationId!);
  }

  function applyRead(all: boolean, ids: string[], readAt: string, unreadCount: number): void {
    const changed = new Set(ids);
    items = items.map((n) => (n.readAt === null && (all ? n.createdAt <= readAt : changed.has(n.id)) ? { ...n, readAt } : n));
    setUnread(unreadCount);
    render();
  }

  function applyDeleted(id: string, unreadCount: number): void {
    items = items.filter((n) => n.id !== id);
    setUnread(unreadCount);
    render();
  }

  button.addEventListener('click', () => {
    render();
    dialog.showModal();
    if (!loaded) void load();
  });
  close.addEventListener('click', () => dialog.close());
  readAll.addEventListener('click', () => markRead('all'));
  // A click on the backdrop (outside the dialog's box) closes it, like Escape does.
  dialog.addEventListener('click', (event) => {
    if (event.target === dialog) dialog.close();
  });

  function renderMute(conversation: Conversation | null): void {
    mute.hidden = !conversation || button.hidden;
    if (!conversation) return;
    const isMuted = muted.get(conversation.id) ?? false;
    // A toggle keeps its name; aria-pressed (and the pressed look) says whether it is on.
    mute.setAttribute('aria-pressed', String(isMuted));
  }
  mute.addEventListener('click', () => {
    const conversation = page.openConversation;
    if (!conversation) return;
    const next = !(muted.get(conversation.id) ?? false);
    client()
      ?.muteConversation(conversation.id, next)
      .then(
        ({ conversationId, muted: now }) => {
          muted.set(conversationId, now);
          renderMute(page.openConversation);
        },
        failed(next ? 'mute' : 'unmute'),
      );
  });
  page.onOpen(renderMute);

  page.onClient((chat) => {
    chat.on('synced', () => void load());
    chat.on('notification', ({ notification, unreadCount }) => {
      items = [notification, ...items.filter((n) => n.id !== notification.id)];
      setUnread(unreadCount);
      if (loaded) render();
    });
    chat.on('notificationsRead', ({ all, notificationIds, readAt, unreadCount }) => applyRead(all, notificationIds, readAt, unreadCount));
    chat.on('notificationDeleted', ({ notificationId, unreadCount }) => applyDeleted(notificationId, unreadCount));
    chat.on('conversation', (conversation) => {
      if ('muted' in conversation && typeof conversation.muted === 'boolean') muted.set(conversation.id, conversation.muted);
    });
    chat.on('conversationMuted', ({ conversationId, muted: now }) => {
      muted.set(conversationId, now);
      renderMute(page.openConversation);
    });
  });
}
