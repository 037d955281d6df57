import { h } from '../page/dom.ts';
import { AdminApiError } from './api.ts';

/**
 * How the admin page tells the reader what happened: results go to the polite status region in the
 * header; errors go to the alert paragraph beside the control that caused them, as the API's
 * catalogued code followed by its message.
 */
export function announce(text: string): void {
  const notice = document.getElementById('notice');
  if (!notice) return;
  // Cleared first, so the same text twice in a row is announced twice.
  notice.textContent = '';
  setTimeout(() => (notice.textContent = text), 50);
}

/** Shows `error` in `target`; the same error again leaves it untouched, so a failing refresh is announced once, not every 2 s. */
export function showError(target: HTMLElement, error: unknown): void {
  const code = error instanceof AdminApiError ? error.code : 'page_error';
  const message = error instanceof Error ? error.message : String(error);
  if (target.dataset['code'] === code && target.textContent === `${code} ${message}`) return;
  target.replaceChildren(h('code', { class: 'error-code' }, code), ` ${message}`);
  target.dataset['code'] = code;
}

export function clearError(target: HTMLElement): void {
  target.replaceChildren();
  delete target.dataset['code'];
}
