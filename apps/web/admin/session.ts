/**
 * Where the admin key lives between page loads: this tab's sessionStorage only, so it is gone when
 * the tab closes and never shared with other tabs or written to disk by the page. It is stored only
 * after the node accepted it, and sign-out removes it.
 */
const KEY = 'chat.admin.key';

export function loadKey(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    // Storage switched off: the key stays in memory for this page load only.
    return null;
  }
}

export function storeKey(key: string): void {
  try {
    sessionStorage.setItem(KEY, key);
  } catch {
    // As above: memory only.
  }
}

export function clearKey(): void {
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    // Nothing was stored.
  }
}
