/**
 * Who is signed in: a name, and a development token minted for it by `POST /v1/dev/token` (on only
 * in development set-ups). Kept in localStorage so a reload stays signed in; the token is minted
 * again when it is about to expire, which is also what the SDK calls before every reconnect.
 */
export interface Session {
  userId: string;
  displayName: string;
  token: string;
  expiresAt: number;
}

const KEY = 'chat.session';
const STICKY_KEY = 'chat.sticky';
const STICKY = /^[A-Za-z0-9_-]{1,64}$/;
// Refresh a little early: a token that expires during the handshake would be refused.
const REFRESH_MARGIN_MS = 60_000;

/** A name as a user id: lower case, runs of other characters as one `-`. */
export function userIdFor(name: string): string {
  return name
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9_.@-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 128);
}

export function loadSession(): Session | null {
  try {
    const value = JSON.parse(localStorage.getItem(KEY) ?? 'null') as Session | null;
    return value && typeof value.userId === 'string' && typeof value.token === 'string' ? value : null;
  } catch {
    return null;
  }
}

export function clearSession(): void {
  localStorage.removeItem(KEY);
}

export async function signIn(name: string): Promise<Session> {
  const displayName = name.trim();
  const userId = userIdFor(displayName);
  if (!userId) throw new Error('Use at least one letter or digit.');
  return mint(userId, displayName);
}

/** The session's token, minted again when it is close to expiry. */
export async function freshToken(session: Session): Promise<string> {
  if (session.expiresAt - Date.now() > REFRESH_MARGIN_MS) return session.token;
  const next = await mint(session.userId, session.displayName);
  Object.assign(session, next);
  return session.token;
}

async function mint(userId: string, displayName: string): Promise<Session> {
  const response = await fetch('/v1/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ userId, displayName }),
  });
  const body = (await response.json().catch(() => null)) as { ok?: boolean; token?: string; expiresAt?: string; error?: { message?: string } } | null;
  if (response.status === 404) throw new Error('This server does not mint development tokens (DEV_TOKENS is off).');
  if (!response.ok || !body?.ok || !body.token || !body.expiresAt) throw new Error(body?.error?.message ?? `Sign-in failed (HTTP ${response.status}).`);
  const session: Session = { userId, displayName, token: body.token, expiresAt: Date.parse(body.expiresAt) };
  localStorage.setItem(KEY, JSON.stringify(session));
  return session;
}

/**
 * The SDK's `sticky` id, which nginx hashes to pick a node: `?sticky=` in the page's address wins
 * (to pin a tab to a node), else the one this tab used before (a reload returns to the same node),
 * else a new random one.
 */
export function stickyId(): string {
  const fromUrl = new URLSearchParams(location.search).get('sticky');
  const stored = sessionStorage.getItem(STICKY_KEY);
  const sticky = fromUrl && STICKY.test(fromUrl) ? fromUrl : stored && STICKY.test(stored) ? stored : crypto.randomUUID();
  sessionStorage.setItem(STICKY_KEY, sticky);
  return sticky;
}
