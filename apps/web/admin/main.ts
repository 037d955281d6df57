/**
 * The admin page: sign in with an admin key, then the nodes table and charts refresh every 2 s while
 * signed in, with a drain button per node, and a user lookup. The key is held in memory and in this
 * tab's sessionStorage (session.ts) only once a node accepted it; sign-out, or a key the node stops
 * accepting, removes it from both.
 */
import { byId } from '../page/dom.ts';
import { AdminApi, AdminApiError } from './api.ts';
import { Charts } from './charts.ts';
import { confirmAction } from './confirm.ts';
import { announce, clearError, showError } from './feedback.ts';
import { NodesTable } from './nodes.ts';
import { clearKey, loadKey, storeKey } from './session.ts';
import { UserLookup } from './users.ts';

const REFRESH_MS = 2000;

let api: AdminApi | null = null;
/** Bumped on every sign-in and sign-out, so a refresh of an earlier session never touches the page. */
let generation = 0;
/** The next refresh, or the next try of a stored key the node did not answer for. */
let timer: ReturnType<typeof setTimeout> | undefined;

const signin = byId('signin');
const signinForm = byId<HTMLFormElement>('signin-form');
const keyInput = byId<HTMLInputElement>('signin-key');
const signinError = byId('signin-error');
const consoleView = byId('console');
const signOutButton = byId<HTMLButtonElement>('sign-out');
const nodesError = byId('nodes-error');
const chartsError = byId('charts-error');

const table = new NodesTable({
  body: byId<HTMLTableSectionElement>('nodes-body'),
  empty: byId('nodes-empty'),
  updated: byId('nodes-updated'),
  onDrain: (nodeId) => void drain(nodeId),
});
const charts = new Charts(byId('charts'));
const users = new UserLookup(() => api);

/** `restoring`: the key came from sessionStorage, so only a refusal (not an unreachable node) drops it. */
async function signIn(key: string, restoring: boolean): Promise<void> {
  clearTimeout(timer);
  const candidate = new AdminApi(key);
  const mine = ++generation;
  clearError(signinError);
  try {
    // The key is checked with a real call; the answer is the table's first content.
    const nodes = await candidate.nodes();
    if (mine !== generation) return;
    api = candidate;
    storeKey(key);
    keyInput.value = '';
    signin.hidden = true;
    consoleView.hidden = false;
    signOutButton.hidden = false;
    table.update(nodes);
    announce(`Signed in. ${nodes.length === 1 ? '1 node' : `${nodes.length} nodes`} reporting.`);
    if (!restoring) byId('nodes-title').focus();
    void refresh(mine);
  } catch (error) {
    if (mine !== generation) return;
    if (restoring && !(error instanceof AdminApiError && error.code === 'unauthorized')) {
      // The stored key was not refused, the node just did not answer (a restart, a 502): try again.
      showError(signinError, error);
      timer = setTimeout(() => void signIn(key, true), REFRESH_MS);
      return;
    }
    signOut();
    showError(signinError, error);
    keyInput.select();
  }
}

function signOut(announcement?: string): void {
  generation++;
  api = null;
  clearKey();
  clearTimeout(timer);
  table.clear();
  charts.clear();
  users.clear();
  for (const element of [nodesError, chartsError]) clearError(element);
  consoleView.hidden = true;
  signOutButton.hidden = true;
  signin.hidden = false;
  if (announcement) announce(announcement);
}

/** One refresh of the table and the charts, then the next one 2 s after this one began. */
async function refresh(mine: number): Promise<void> {
  const current = api;
  if (!current || mine !== generation) return;
  const started = Date.now();
  const [nodes, history] = await Promise.allSettled([current.nodes(), current.history()]);
  if (mine !== generation) return;
  for (const result of [nodes, history]) {
    if (result.status === 'rejected' && result.reason instanceof AdminApiError && result.reason.code === 'unauthorized') {
      signOut('Signed out: the node no longer accepts this key.');
      showError(signinError, result.reason);
      keyInput.focus();
      return;
    }
  }
  if (nodes.status === 'fulfilled') {
    table.update(nodes.value);
    clearError(nodesError);
  } else showError(nodesError, nodes.reason);
  if (history.status === 'fulfilled') {
    charts.update(history.value);
    clearError(chartsError);
  } else showError(chartsError, history.reason);
  timer = setTimeout(() => void refresh(mine), Math.max(0, REFRESH_MS - (Date.now() - started)));
}

async function drain(nodeId: string): Promise<void> {
  const current = api;
  if (!current) return;
  const confirmed = await confirmAction({
    title: `Drain ${nodeId}?`,
    text: `${nodeId} drains as on SIGTERM: it stops taking new connections, its connected users reconnect to the other nodes within seconds, and its process exits (a supervisor may start it again).`,
    action: `Drain ${nodeId}`,
  });
  if (!confirmed || current !== api) return;
  clearError(nodesError);
  try {
    await current.drain(nodeId);
    announce(`${nodeId} is draining: its sockets reconnect to other nodes.`);
  } catch (error) {
    showError(nodesError, error);
  }
}

signinForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) {
    showError(signinError, new AdminApiError('invalid_input', 'Enter an admin key.', 0));
    keyInput.focus();
    return;
  }
  void signIn(key, false);
});

signOutButton.addEventListener('click', () => {
  signOut('Signed out. The key is no longer kept in this tab.');
  keyInput.focus();
});

const stored = loadKey();
if (stored) void signIn(stored, true);
else keyInput.focus();
