/**
 * What a reader can do to one message: the reaction chips under it, its ⋯ menu (reply, the feature
 * modules' entries (addMessageAction), react, edit, delete for everyone or for me), and Retry or
 * Discard on an own message that failed. Menus close on Escape, on a choice and on a click elsewhere.
 */
import type { ChatError, OutgoingMessage } from '@chat/client';
import type { ClientPayload, Message } from '@chat/protocol';
import { h } from './dom.ts';
import type { Page } from './page.ts';
import { ui } from './ui.ts';

const REACTIONS = ['👍', '❤️', '😂', '😮', '😢'];

/** The reaction chips of a message, each toggling my own reaction; null without reactions. */
export function reactionsOf(page: Page, message: Message): HTMLElement | null {
  if (message.reactions.length === 0) return null;
  const byEmoji = new Map<string, string[]>();
  for (const reaction of message.reactions) byEmoji.set(reaction.emoji, [...(byEmoji.get(reaction.emoji) ?? []), reaction.userId]);
  const me = page.state.session?.userId;
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
          onclick: () => react(page, message, emoji, mineToo ? 'remove' : 'add'),
        },
        `${emoji} ${users.length}`,
      );
    }),
  );
}

/** The ⋯ button and the menu it opens. */
export function actionsFor(page: Page, message: Message, mine: boolean): HTMLElement {
  const menuId = `actions-${message.id}`;
  const toggle = h('button', { type: 'button', class: 'more icon-button', 'aria-expanded': 'false', 'aria-controls': menuId, 'aria-label': 'Message actions' }, '⋯');
  const alreadyReacted = (emoji: string) => message.reactions.some((r) => r.emoji === emoji && r.userId === page.state.session?.userId);
  const menu = h(
    'div',
    { id: menuId, class: 'actions', role: 'group', 'aria-label': 'Message actions', hidden: true },
    h('button', { type: 'button', onclick: () => page.composer.setMode({ kind: 'reply', message }) }, 'Reply'),
    ...page.messageActions.map((action) => action(message)).map((entry) => entry && h('button', { type: 'button', onclick: () => entry.run() }, entry.label)),
    ...REACTIONS.map((emoji) =>
      h('button', { type: 'button', class: 'react', 'aria-label': `React with ${emoji}`, onclick: () => react(page, message, emoji, alreadyReacted(emoji) ? 'remove' : 'add') }, emoji),
    ),
    mine ? h('button', { type: 'button', onclick: () => page.composer.setMode({ kind: 'edit', message }) }, 'Edit') : null,
    mine ? h('button', { type: 'button', class: 'danger', onclick: () => deleteMessage(page, message, 'everyone') }, 'Delete for everyone') : null,
    h('button', { type: 'button', class: 'danger', onclick: () => deleteMessage(page, message, 'me') }, 'Delete for me'),
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

/** Why an own message was not sent, with Retry and Discard (each given its clientMsgId). */
export function failureLine(entry: OutgoingMessage, retry: (clientMsgId: string) => void, discard: (clientMsgId: string) => void): HTMLElement {
  return h(
    'p',
    { class: 'failure' },
    h('span', {}, entry.error?.message ?? 'Not sent.'),
    ' ',
    h('button', { type: 'button', class: 'link-button retry', onclick: () => retry(entry.clientMsgId) }, 'Retry'),
    h('button', { type: 'button', class: 'link-button discard', onclick: () => discard(entry.clientMsgId) }, 'Discard'),
  );
}

export function closeMenus(): void {
  for (const toggle of ui.messages.querySelectorAll('.more[aria-expanded="true"]')) toggle.setAttribute('aria-expanded', 'false');
  for (const menu of ui.messages.querySelectorAll<HTMLElement>('.actions:not([hidden])')) menu.hidden = true;
}

function react(page: Page, message: Message, emoji: string, action: ClientPayload<'message:react'>['action']): void {
  page.state.client?.request('message:react', { messageId: message.id, emoji, action }).catch((error: ChatError) => page.notice(`Could not react: ${error.message}`));
}

function deleteMessage(page: Page, message: Message, scope: ClientPayload<'message:delete'>['scope']): void {
  const question = scope === 'everyone' ? 'Delete this message for everyone?' : 'Delete this message for you? Others still see it.';
  if (!confirm(question)) return;
  page.state.client?.request('message:delete', { messageId: message.id, scope }).catch((error: ChatError) => page.notice(`Could not delete: ${error.message}`));
}
