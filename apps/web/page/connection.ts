/**
 * Signing in and out, and the connection: the client's lifecycle, what the header says about it,
 * reconnecting with back-off where the SDK stops, and following the browser's online/offline events.
 */
import { ChatClient, type ChatError } from '@chat/client';
import { backoffDelay } from '@chat/protocol';
import type { Page } from './page.ts';
import { clearSession, freshToken, signIn, stickyId, type Session } from './session.ts';
import { ui } from './ui.ts';

type ConnectionState = 'idle' | 'connecting' | 'online' | 'reconnecting' | 'offline';

export interface Connection {
  /** Shows the chat for this session and connects its new client. */
  start(session: Session): void;
}

export function installConnection(page: Page): Connection {
  const { state } = page;
  let nodeId: string | null = null;
  let wantOffline = false;
  let reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  let reconnectAttempts = 0;
  let tokenRefusals = 0;

  ui.signinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    ui.signinError.textContent = '';
    const button = ui.signinForm.querySelector('button')!;
    button.disabled = true;
    signIn(ui.signinName.value)
      .then((next) => start(next))
      .catch((error: unknown) => (ui.signinError.textContent = error instanceof Error ? error.message : String(error)))
      .finally(() => (button.disabled = false));
  });

  ui.signOut.addEventListener('click', () => {
    clearSession();
    location.hash = '';
    location.reload();
  });

  function start(next: Session): void {
    state.session = next;
    ui.signin.hidden = true;
    ui.chat.hidden = false;
    ui.me.hidden = false;
    ui.myName.textContent = next.displayName;
    setConnection('connecting', 'Connecting…');

    const client = new ChatClient({ url: location.origin, token: () => freshToken(next), sticky: stickyId() });
    state.client = client;
    client.on('connected', () => setConnection('connecting', 'Syncing…'));
    client.on('disconnected', ({ willReconnect }) => {
      nodeId = null;
      if (wantOffline) return;
      setConnection('reconnecting', 'Reconnecting… messages you send now go out once connected');
      if (!willReconnect) scheduleReconnect();
    });
    client.on('synced', () => void afterSync(client));
    client.on('error', (error) => {
      console.warn('chat:', error.code, error.message);
      // A refused token: the next handshake mints a fresh one (a restarted server may sign with a new
      // secret). The token callback itself failing means this server mints no tokens for us any more.
      if (error.code.startsWith('token_')) next.expiresAt = 0;
      if (error.code === 'unauthorized' && client === state.client) signOutLocally(error.message);
    });
    page.clientCreated(client);
    connect();
  }

  function connect(): void {
    const client = state.client;
    if (!client || wantOffline || client.connected) return;
    client.connect().then(
      () => {
        reconnectAttempts = 0;
        tokenRefusals = 0;
      },
      (error: ChatError) => {
        if (client !== state.client) return;
        if (error.code === 'unauthorized' || (error.code.startsWith('token_') && ++tokenRefusals >= 3)) {
          // Fresh tokens did not help (or none can be minted): sign in again.
          return signOutLocally(error.message);
        }
        if (error.code.startsWith('token_') && state.session) state.session.expiresAt = 0;
        scheduleReconnect();
      },
    );
  }

  /** Back to the sign-in form, saying why; what this tab held is dropped with the client. */
  function signOutLocally(reason: string): void {
    state.client?.close();
    state.client = null;
    state.session = null;
    clearSession();
    state.views.clear();
    state.outbox.clear();
    page.pane.open(null);
    ui.chat.hidden = true;
    ui.me.hidden = true;
    ui.signin.hidden = false;
    ui.signinError.textContent = `Signed out: ${reason}`;
    setConnection('idle', 'Not signed in');
    ui.signinName.focus();
  }

  /** The SDK stops after a failed connect() or a refusal it cannot retry; the page keeps trying, with back-off. */
  function scheduleReconnect(): void {
    if (reconnectTimer || wantOffline) return;
    const delay = backoffDelay(++reconnectAttempts, { initialMs: 500, maxMs: 10_000 });
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      connect();
    }, delay);
  }

  // A phone that loses its network tells the page at once, while the WebSocket would notice only at its
  // next missed heartbeat (up to a minute): disconnect now, show it, and reconnect — with a resync of
  // everything missed — as soon as the browser is online again.
  window.addEventListener('offline', () => {
    wantOffline = true;
    state.client?.disconnect();
    nodeId = null;
    setConnection('offline', 'Offline — messages you send now go out once you are back online');
  });
  window.addEventListener('online', () => {
    wantOffline = false;
    reconnectAttempts = 0;
    setConnection('reconnecting', 'Reconnecting…');
    connect();
  });

  async function afterSync(client: ChatClient): Promise<void> {
    try {
      nodeId = (await client.request('session:info', {})).nodeId;
    } catch {
      nodeId = null;
    }
    if (client.connected) setConnection('online', nodeId ? `Connected · ${nodeId}` : 'Connected');
    await page.presence.afterSync(client);
    page.pane.afterSync();
  }

  function setConnection(next: ConnectionState, text: string): void {
    ui.connection.dataset['state'] = next;
    // Presence shown while disconnected is stale: the dots fade until the next sync.
    document.body.dataset['connection'] = next;
    if (nodeId) ui.connection.dataset['node'] = nodeId;
    else delete ui.connection.dataset['node'];
    ui.connection.textContent = text;
  }

  return { start };
}
