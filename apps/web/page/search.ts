/**
 * Search: a dialog with a query box and the ranked results of `message:search`, more on demand.
 * Snippets arrive as plain text plus highlight ranges; they are rendered as text nodes with <mark>
 * elements built here, so nothing a message says is ever parsed as HTML.
 */
import type { ChatError } from '@chat/client';
import { limits, type SearchHit } from '@chat/protocol';
import type { PageApi } from './api.ts';
import { byId, formatTime, h } from './dom.ts';

const PAGE = 20;

/** The snippet's text with each highlight range wrapped in <mark>, as DOM nodes. */
export function highlightedSnippet(snippet: SearchHit['snippet']): Array<Node | string> {
  const parts: Array<Node | string> = [];
  let at = 0;
  for (const [start, end] of snippet.highlights) {
    if (start < at || end <= start || end > snippet.text.length) continue;
    if (start > at) parts.push(snippet.text.slice(at, start));
    parts.push(h('mark', {}, snippet.text.slice(start, end)));
    at = end;
  }
  if (at < snippet.text.length) parts.push(snippet.text.slice(at));
  return parts;
}

export function installSearch(page: PageApi): void {
  const button = byId<HTMLButtonElement>('search-button');
  const dialog = byId<HTMLDialogElement>('search');
  const form = byId<HTMLFormElement>('search-form');
  const input = byId<HTMLInputElement>('search-query');
  const scope = byId<HTMLInputElement>('search-here');
  const list = byId<HTMLUListElement>('search-results');
  const status = byId('search-status');
  const close = byId<HTMLButtonElement>('search-close');
  input.maxLength = limits.searchQuery;

  let query = '';
  let conversationId: string | undefined;
  let hits: SearchHit[] = [];
  let nextCursor: string | null = null;
  /** Answers of an older search arriving late are dropped. */
  let generation = 0;

  const item = (hit: SearchHit): HTMLLIElement => {
    const conversation = page.conversation(hit.message.conversationId);
    const where = conversation ? (conversation.title ?? page.displayName(page.otherMember(conversation) ?? '', conversation)) : 'Conversation';
    const author = page.displayName(hit.message.senderId, conversation ?? undefined);
    return h(
      'li',
      { class: 'search-result', 'data-id': hit.message.id },
      h('p', { class: 'search-meta' }, h('span', {}, `${author} in ${where}`), h('time', { datetime: hit.message.createdAt }, formatTime(hit.message.createdAt))),
      h('p', { class: 'search-snippet' }, ...highlightedSnippet(hit.snippet)),
      h(
        'button',
        {
          type: 'button',
          class: 'link-button',
          onclick: () => {
            dialog.close();
            page.open(hit.message.conversationId);
          },
        },
        'Open',
      ),
    );
  };

  const render = () => {
    list.replaceChildren(...hits.map(item));
    if (nextCursor) list.append(h('li', { class: 'search-result' }, h('button', { type: 'button', class: 'link-button', onclick: () => void run(true) }, 'More results')));
    status.textContent = hits.length === 0 ? 'No messages found.' : `${hits.length}${nextCursor ? '+' : ''} message${hits.length === 1 ? '' : 's'} found.`;
  };

  async function run(more: boolean): Promise<void> {
    const chat = page.client;
    if (!chat || !query) return;
    const mine = ++generation;
    status.textContent = 'Searching…';
    try {
      const page_ = await chat.search(query, { limit: PAGE, ...(conversationId && { conversationId }), ...(more && nextCursor ? { cursor: nextCursor } : {}) });
      if (mine !== generation) return;
      hits = more ? [...hits, ...page_.results] : page_.results;
      nextCursor = page_.nextCursor;
      render();
    } catch (error) {
      if (mine === generation) status.textContent = `Search failed: ${(error as ChatError).message}`;
    }
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    query = input.value.trim();
    conversationId = scope.checked ? page.openConversation?.id : undefined;
    hits = [];
    nextCursor = null;
    list.replaceChildren();
    void run(false);
  });
  button.addEventListener('click', () => {
    scope.disabled = page.openConversation === null;
    if (scope.disabled) scope.checked = false;
    dialog.showModal();
    input.focus();
  });
  close.addEventListener('click', () => dialog.close());
  page.onClient(() => {
    button.hidden = false;
  });
}
