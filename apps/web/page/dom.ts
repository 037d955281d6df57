/** The few DOM helpers the page needs: no framework, so the bundle stays small and start-up fast. */

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/**
 * Creates an element. `on*` function attributes become listeners; `true` sets a boolean attribute,
 * `false`/null/undefined leave it out. Text children are text nodes: nothing is ever parsed as HTML.
 */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === 'function') element.addEventListener(name.slice(2).toLowerCase(), value);
    else if (value === true) element.setAttribute(name, '');
    else if (value !== false && value !== null && value !== undefined) element.setAttribute(name, String(value));
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) element.append(child);
  return element;
}

/** The element with this id, which the page's HTML is known to contain. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from index.html`);
  return element as T;
}

/**
 * Puts a message's element into a list kept in seq order by `data-seq` (elements without one, own
 * messages still sending, stay last): in place of the element with its `data-id`, else of the one
 * with its `data-client-msg-id` (its pending twin), else before the first element of a later seq.
 */
export function placeBySeq(list: Element, element: HTMLElement): void {
  const { id, clientMsgId } = element.dataset;
  const existing = (id && list.querySelector(`[data-id="${id}"]`)) || (clientMsgId && list.querySelector(`[data-client-msg-id="${clientMsgId}"]`));
  if (existing) {
    existing.replaceWith(element);
    return;
  }
  const seqOf = (item: Element) => Number((item as HTMLElement).dataset['seq'] ?? Infinity);
  const later = [...list.children].find((child) => seqOf(child) > seqOf(element));
  list.insertBefore(element, later ?? null);
}

/** Short local time, e.g. 14:05; with the date when not today. */
export function formatTime(iso: string): string {
  const date = new Date(iso);
  const today = new Date().toDateString() === date.toDateString();
  return today ? timeFormat.format(date) : dateTimeFormat.format(date);
}
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
