/**
 * Send later: a clock button in the composer opens a time field; "Schedule" hands the composer's text
 * to the server, which sends it at that time, exactly once, whether or not this page is open then.
 * Above the composer, the open conversation's pending scheduled messages of mine, each with Cancel.
 * The SDK's `scheduledUpdated` event (this device, another of mine, or the server sending one) re-renders it.
 */
import type { ChatError } from '@chat/client';
import type { Conversation, ScheduledMessage } from '@chat/protocol';
import type { PageApi } from './api.ts';
import { byId, formatTime, h } from './dom.ts';

/** A datetime-local value (the reader's own time zone) an hour from now, to the minute. */
function inAnHour(): string {
  const at = new Date(Date.now() + 3600_000);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T${pad(at.getHours())}:${pad(at.getMinutes())}`;
}

export function installScheduled(page: PageApi): void {
  const toggle = byId<HTMLButtonElement>('send-later');
  const panel = byId<HTMLDivElement>('send-later-panel');
  const when = byId<HTMLInputElement>('send-later-at');
  const confirm = byId<HTMLButtonElement>('send-later-confirm');
  const input = byId<HTMLTextAreaElement>('composer-input');
  const section = byId<HTMLElement>('scheduled');
  const list = byId<HTMLUListElement>('scheduled-list');
  /** The open conversation's pending ones, by id. */
  let pending = new Map<string, ScheduledMessage>();
  /** The conversation they are of (the open one, once loaded). */
  let shownFor: string | null = null;

  function render(): void {
    const items = [...pending.values()].sort((a, b) => a.sendAt.localeCompare(b.sendAt) || a.id.localeCompare(b.id));
    section.hidden = items.length === 0;
    list.replaceChildren(
      ...items.map((scheduled) => {
        const cancel = h('button', { type: 'button', class: 'link-button', 'aria-label': `Cancel scheduled message: ${scheduled.body}` }, 'Cancel');
        cancel.addEventListener('click', () => {
          page.client?.cancelScheduled(scheduled.id).catch((error: ChatError) => page.notice(`Could not cancel: ${error.message}`));
        });
        return h(
          'li',
          { class: 'scheduled-item', 'data-id': scheduled.id },
          h('time', { datetime: scheduled.sendAt }, formatTime(scheduled.sendAt)),
          h('span', { class: 'body' }, scheduled.body),
          cancel,
        );
      }),
    );
  }

  async function load(conversation: Conversation | null): Promise<void> {
    pending = new Map();
    shownFor = conversation?.id ?? null;
    render();
    const chat = page.client;
    if (!conversation || !chat) return;
    const { scheduled } = await chat.listScheduled({ conversationId: conversation.id, limit: 100 });
    if (page.openConversation?.id !== conversation.id) return;
    pending = new Map(scheduled.map((s) => [s.id, s]));
    render();
  }

  function setOpen(open: boolean): void {
    panel.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    if (open) {
      when.value = inAnHour();
      when.focus();
    }
  }

  toggle.addEventListener('click', () => setOpen(panel.hidden));
  confirm.addEventListener('click', () => {
    const conversation = page.openConversation;
    const chat = page.client;
    const body = input.value.trim();
    if (!conversation || !chat) return;
    if (!body) return page.notice('Write the message first, then pick when to send it.');
    const sendAt = new Date(when.value);
    if (Number.isNaN(sendAt.getTime())) return page.notice('Pick a date and time to send it at.');
    chat
      .schedule({ conversationId: conversation.id, body, sendAt })
      .then(() => {
        // The SDK's scheduledUpdated lists it.
        input.value = '';
        setOpen(false);
      })
      .catch((error: ChatError) => page.notice(error.code === 'send_at_out_of_range' ? `Pick a time from now on, at most a few weeks ahead.` : `Could not schedule: ${error.message}`));
  });

  page.onOpen((conversation) => {
    // Also called when the open conversation is only updated: reload on a switch only.
    if ((conversation?.id ?? null) === shownFor) return;
    void load(conversation).catch((error: ChatError) => page.notice(`Could not load scheduled messages: ${error.message}`));
  });
  page.onClient((chat) => {
    chat.on('scheduledUpdated', (scheduled) => {
      if (scheduled.conversationId !== page.openConversation?.id) return;
      if (scheduled.status === 'pending' || scheduled.status === 'sending') pending.set(scheduled.id, scheduled);
      else pending.delete(scheduled.id);
      render();
    });
    // After a reconnect, whatever changed meanwhile (sent, canceled elsewhere) is read afresh.
    chat.on('synced', () => void load(page.openConversation).catch(() => {}));
  });
}
