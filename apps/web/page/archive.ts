/**
 * Archive: a toggle on the open conversation that archives it for me (on all my devices), and an
 * "Archived" toggle on the list that shows the archived conversations instead of the others. A new
 * message from another member unarchives a conversation unless I muted it; the SDK's
 * `conversationArchived` event tells this page, which moves it back to the list.
 */
import type { ChatError } from '@chat/client';
import type { Conversation } from '@chat/protocol';
import type { PageApi } from './api.ts';
import { byId } from './dom.ts';

export function installArchive(page: PageApi): void {
  const toggle = byId<HTMLButtonElement>('archive-button');
  const view = byId<HTMLButtonElement>('archived-view');
  let showArchived = false;

  const isArchived = (conversationId: string) => page.client?.isArchived(conversationId) ?? false;

  const renderList = () => {
    view.setAttribute('aria-pressed', String(showArchived));
    page.filterList((id) => isArchived(id) === showArchived, showArchived ? 'No archived conversations.' : 'No conversations yet.');
  };

  function renderToggle(conversation: Conversation | null): void {
    toggle.hidden = !conversation;
    if (!conversation) return;
    // A toggle keeps its name; aria-pressed (and the pressed look) says whether it is on.
    toggle.setAttribute('aria-pressed', String(isArchived(conversation.id)));
  }

  toggle.addEventListener('click', () => {
    const conversation = page.openConversation;
    const chat = page.client;
    if (!conversation || !chat) return;
    const next = !isArchived(conversation.id);
    // The SDK's conversationArchived event re-renders; only a failure needs handling here.
    chat.archive(conversation.id, next).catch((error: ChatError) => page.notice(`Could not ${next ? 'archive' : 'unarchive'}: ${error.message}`));
  });
  view.addEventListener('click', () => {
    showArchived = !showArchived;
    renderList();
  });
  page.onOpen(renderToggle);
  page.onClient((chat) => {
    chat.on('conversationArchived', () => {
      renderList();
      renderToggle(page.openConversation);
    });
    chat.on('synced', renderList);
  });
  renderList();
}
