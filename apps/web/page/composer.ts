/**
 * The composer: a new message, a reply or an edit, with typing indicators while writing. Enter sends,
 * Shift+Enter is a new line, Escape cancels a reply or edit.
 */
import type { ChatError } from '@chat/client';
import { limits, type Message } from '@chat/protocol';
import type { Page } from './page.ts';
import { ui } from './ui.ts';

export type ComposerMode = { kind: 'reply' | 'edit'; message: Message } | null;

export interface Composer {
  /** Starts a reply to or an edit of a message; null: back to a new message. */
  setMode(mode: ComposerMode): void;
}

export function installComposer(page: Page): Composer {
  const { state } = page;
  let mode: ComposerMode = null;

  function setMode(next: ComposerMode): void {
    mode = next;
    ui.composerContext.hidden = !next;
    ui.composer.dataset['mode'] = next?.kind ?? 'new';
    if (!next) {
      ui.composerContextText.textContent = '';
      return;
    }
    const who = state.displayName(next.message.senderId, state.views.get(next.message.conversationId)?.conversation);
    ui.composerContextText.textContent = next.kind === 'edit' ? 'Editing your message' : `Replying to ${who}: ${next.message.body.slice(0, 80)}`;
    if (next.kind === 'edit') ui.composerInput.value = next.message.body;
    ui.composerInput.focus();
  }

  ui.composerCancel.addEventListener('click', () => {
    if (mode?.kind === 'edit') ui.composerInput.value = '';
    setMode(null);
    ui.composerInput.focus();
  });

  ui.composerInput.addEventListener('input', () => {
    const { client, openId } = state;
    if (!client || !openId) return;
    if (ui.composerInput.value.trim() === '') client.stopTyping(openId);
    else if (mode?.kind !== 'edit') client.typing(openId);
  });

  ui.composerInput.addEventListener('keydown', (event) => {
    // Enter sends, Shift+Enter is a new line (as in most chat apps); IME composition is left alone.
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.composer.requestSubmit();
    } else if (event.key === 'Escape' && mode) {
      ui.composerCancel.click();
    }
  });

  ui.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    const client = state.client;
    const view = state.openView;
    const body = ui.composerInput.value.trim();
    if (!client || !view || !body) return;
    if (body.length > limits.messageBodyHard) return page.notice('That message is too long.');
    if (mode?.kind === 'edit') {
      const { message } = mode;
      client.request('message:edit', { messageId: message.id, body }).catch((error: ChatError) => page.notice(`Could not edit: ${error.message}`));
    } else {
      const outgoing = client.send({ conversationId: view.conversation.id, body, ...(mode?.kind === 'reply' && { replyToId: mode.message.id }) });
      if (outgoing.state !== 'sent') {
        state.outbox.set(outgoing.clientMsgId, outgoing);
        if (view.messages) page.messages.appendPending(outgoing);
      }
    }
    ui.composerInput.value = '';
    setMode(null);
  });

  return { setMode };
}
