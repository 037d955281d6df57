// The browser client (apps/web) in a real Chromium: two browser contexts as two users, each pinned to
// a different node of a real 2-node cluster behind the repository's nginx, driven only through the
// page — what a person sees and clicks. Screenshots go to reports/web/*.png.
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { io as ioClient } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatClient } from '@chat/client';
import type { Ack, ClientEventResults } from '@chat/protocol';
import { startCluster, type Cluster } from '@chat/testkit/cluster';
import { eventually } from '@chat/testkit/eventually';
import { testEnv } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { buildWeb } from '../src/build.ts';
import { accessibilityViolations, CHROMIUM, CHROMIUM_ARGS as BROWSER_ARGS, SHOTS, SKIP } from './chromium.ts';

const CHROMIUM_ARGS = [
  ...BROWSER_ARGS,
  // Host candidates on 127.0.0.1, so the call's media stays on loopback (see the init script below).
  '--allow-loopback-in-peer-connection',
];

/**
 * Only loopback ICE candidates reach the peer connection: both browsers run on this machine, and its
 * other interfaces are no target for tests. Test instrumentation, not part of the page.
 */
const LOOPBACK_ICE_ONLY = `(() => {
  const add = RTCPeerConnection.prototype.addIceCandidate;
  RTCPeerConnection.prototype.addIceCandidate = function (candidate, ...rest) {
    const line = candidate && typeof candidate === 'object' ? candidate.candidate : '';
    if (line && !/ (127\\.0\\.0\\.1|::1) /.test(line)) return Promise.resolve();
    return add.call(this, candidate, ...rest);
  };
})();`;

interface Person {
  name: string;
  userId: string;
  context: BrowserContext;
  page: Page;
  node: string;
  errors: string[];
  /** The page's console warnings and errors, for failure messages. */
  warnings: string[];
  /** Every WebSocket frame the page sent, as text. */
  frames: string[];
}

describe.skipIf(SKIP !== '')(`the browser client in Chromium: two users on two nodes behind nginx${SKIP}`, () => {
  let cluster: Cluster;
  let browser: Browser;
  let alice: Person;
  let bob: Person;
  const run = Date.now().toString(36);
  const sdkClients: ChatClient[] = [];

  /** Which node nginx sends a sticky id to: asked through nginx, as the page will connect. */
  async function nodeFor(sticky: string): Promise<string> {
    const socket = ioClient(cluster.url, { auth: { token: signToken({ sub: `probe-${run}`, name: 'probe' }) }, query: { sticky }, transports: ['websocket'], reconnection: false, forceNew: true });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('connect_error', reject);
      });
      const ack = (await socket.timeout(5000).emitWithAck('session:info', {})) as Ack<ClientEventResults['session:info']>;
      if (!ack.ok) throw new Error(ack.error.message);
      return ack.nodeId;
    } finally {
      socket.close();
    }
  }

  /** Opens the page in a fresh context on the given sticky id and signs in with a name. */
  async function signIn(name: string, sticky: string, viewport: { width: number; height: number }): Promise<Person> {
    const context = await browser.newContext({ viewport, permissions: ['camera', 'microphone'] });
    await context.addInitScript(LOOPBACK_ICE_ONLY);
    // Under the test's own timeout, so a failure names the locator that did not appear.
    context.setDefaultTimeout(10_000);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    const warnings: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'warning' || message.type() === 'error') warnings.push(message.text());
    });
    const frames: string[] = [];
    page.on('websocket', (socket) => socket.on('framesent', ({ payload }) => frames.push(String(payload))));
    await page.goto(`${cluster.url}/?sticky=${sticky}`);
    expect(await accessibilityViolations(page), 'sign-in form').toEqual([]);
    await page.getByLabel('Your name').fill(name);
    // Keyboard only: Enter submits the form.
    await page.getByLabel('Your name').press('Enter');
    const connection = page.locator('#connection[data-state="online"][data-node]');
    await connection.waitFor();
    const node = (await connection.getAttribute('data-node'))!;
    return { name, userId: name.toLowerCase().replace(/[^a-z0-9_.@-]+/g, '-'), context, page, node, errors, warnings, frames };
  }

  const composer = (person: Person) => person.page.getByRole('textbox', { name: 'Message', exact: true });
  const bodies = (person: Person, text: string) => person.page.locator('#messages .message .body').filter({ hasText: new RegExp(`^${text}$`) });
  const myMessage = (person: Person, text: string) => person.page.locator('#messages .message.mine').filter({ has: person.page.locator('.body', { hasText: new RegExp(`^${text}$`) }) });

  async function send(person: Person, text: string): Promise<void> {
    await composer(person).fill(text);
    await composer(person).press('Enter');
  }

  async function shot(person: Person, name: string): Promise<void> {
    await person.page.screenshot({ path: `${SHOTS}${name}.png` });
  }

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    // The page as this checkout's sources build it, not whatever an earlier build left in dist/.
    await buildWeb();
    // A short MESSAGE_MAX_LENGTH gives the page a send the server refuses for good (failed, then retry).
    cluster = await startCluster({ nodes: 2, env: testEnv({ LOG_LEVEL: 'warn', DEV_TOKENS: 'true', SHUTDOWN_TIMEOUT_MS: '3000', MESSAGE_MAX_LENGTH: '1000' }) });
    browser = await chromium.launch({ executablePath: CHROMIUM!, args: CHROMIUM_ARGS });

    // Two sticky ids that nginx hashes onto different nodes, so every message crosses Redis.
    const first = randomUUID();
    const firstNode = await nodeFor(first);
    let second: string | undefined;
    for (let attempt = 0; attempt < 40 && !second; attempt++) {
      const candidate = randomUUID();
      if ((await nodeFor(candidate)) !== firstNode) second = candidate;
    }
    if (!second) throw new Error('no sticky id reached the second node in 40 tries');
    [alice, bob] = await Promise.all([signIn(`Alice ${run}`, first, { width: 1180, height: 760 }), signIn(`Bob ${run}`, second, { width: 375, height: 740 })]);
  });

  afterAll(async () => {
    for (const client of sdkClients) client.close();
    await browser?.close();
    await cluster?.stop();
  });

  it('signs both in on different nodes, into a page with landmarks a screen reader can navigate', async () => {
    expect(alice.node).not.toBe(bob.node);
    for (const person of [alice, bob]) {
      for (const [role, name] of [
        ['banner', undefined],
        ['main', undefined],
        ['navigation', 'Conversations'],
        ['status', undefined],
      ] as const) {
        expect(await person.page.getByRole(role, name ? { name } : {}).count(), `${role} ${name ?? ''}`).toBeGreaterThan(0);
      }
    }
    expect(cluster.nodes.map((node) => node.id)).toEqual(expect.arrayContaining([alice.node, bob.node]));
  });

  it('chats both ways with typing dots, presence dots and read ticks', async () => {
    await alice.page.getByLabel('Chat with').fill(bob.name);
    await alice.page.getByRole('button', { name: 'Start' }).click();
    await alice.page.locator('#conversation-title', { hasText: bob.name }).waitFor();
    // Presence: each sees the other online, in the open conversation and in the list.
    await alice.page.locator(`#conversation-presence[data-user="${bob.userId}"][data-status="online"]`).waitFor();
    await bob.page.locator(`.conversation-item .presence-dot[data-user="${alice.userId}"][data-status="online"]`).waitFor();
    await shot(bob, 'phone-list');
    await bob.page.locator('.conversation-item').filter({ hasText: alice.name }).click();
    expect(await bob.page.getByRole('log', { name: 'Messages' }).count()).toBe(1);

    // Typing dots on the other node while alice types, gone once she sends.
    await composer(alice).pressSequentially('Hello Bob', { delay: 20 });
    await bob.page.locator('#typing[data-typing="true"]', { hasText: `${alice.name} is typing` }).waitFor();
    await bob.page.locator('#typing .dots').waitFor();
    await composer(alice).press('Enter');
    await bodies(bob, 'Hello Bob').waitFor();
    await bob.page.locator('#typing[data-typing="false"]').waitFor();
    // Bob has the conversation open and in view: his read receipt turns alice's tick to read.
    await myMessage(alice, 'Hello Bob').locator('.status[data-status="read"]').waitFor();

    await send(bob, 'Hi Alice, from the other node');
    await bodies(alice, 'Hi Alice, from the other node').waitFor();
    await myMessage(bob, 'Hi Alice, from the other node').locator('.status[data-status="read"]').waitFor();
    expect(await bodies(alice, 'Hello Bob').count()).toBe(1);

    // A status change reaches the other user's dot.
    await bob.page.getByLabel('My status').selectOption('away');
    await alice.page.locator(`#conversation-presence[data-user="${bob.userId}"][data-status="away"]`).waitFor();
    await bob.page.getByLabel('My status').selectOption('online');
    await alice.page.locator(`#conversation-presence[data-user="${bob.userId}"][data-status="online"]`).waitFor();
    await shot(alice, 'desktop-chat');
    await shot(bob, 'phone-chat');
    // WCAG 2.1 A/AA as axe-core checks it (contrast, names, roles, landmarks), on both screen sizes.
    expect(await accessibilityViolations(alice.page)).toEqual([]);
    expect(await accessibilityViolations(bob.page)).toEqual([]);
    await bob.page.emulateMedia({ colorScheme: 'dark' });
    await shot(bob, 'phone-chat-dark');
    expect(await accessibilityViolations(bob.page), 'dark colours').toEqual([]);
    await bob.page.emulateMedia({ colorScheme: 'light' });
  });

  it('marks a message the server refuses as failed, retries it on request, and discards it', async () => {
    const tooLong = `${'x'.repeat(1200)} too long`;
    await send(alice, tooLong);
    const failed = alice.page.locator('#messages .message.failed');
    await failed.locator('.status[data-status="failed"]').waitFor();
    await failed.locator('.failure', { hasText: /1000/ }).waitFor();
    await shot(alice, 'desktop-failed');
    expect(await accessibilityViolations(alice.page), 'failed message').toEqual([]);
    const sends = () => alice.frames.filter((frame) => frame.includes('"message:send"') && frame.includes('too long'));
    expect(sends()).toHaveLength(1);
    // Retry sends it again, with the same clientMsgId; the server refuses it again.
    await failed.getByRole('button', { name: 'Retry' }).click();
    await eventually(() => expect(sends()).toHaveLength(2));
    const clientMsgIds = sends().map((frame) => /"clientMsgId":"([^"]+)"/.exec(frame)?.[1]);
    expect(clientMsgIds[0]).toBeTruthy();
    expect(clientMsgIds[1]).toBe(clientMsgIds[0]);
    await failed.locator('.status[data-status="failed"]').waitFor();
    await failed.getByRole('button', { name: 'Discard' }).click();
    await failed.waitFor({ state: 'detached' });
    expect(await bob.page.locator('#messages .message', { hasText: 'too long' }).count()).toBe(0);
  });

  it('reacts, replies, edits and deletes, seen on the other node', async () => {
    const bobsMessage = alice.page.locator('#messages .message').filter({ hasText: 'Hi Alice, from the other node' });
    await bobsMessage.hover();
    await bobsMessage.getByRole('button', { name: 'Message actions' }).click();
    await bobsMessage.getByRole('button', { name: 'React with 👍' }).click();
    await bob.page.locator('#messages .message.mine .reaction', { hasText: '👍 1' }).waitFor();

    await bobsMessage.getByRole('button', { name: 'Message actions' }).click();
    await bobsMessage.getByRole('button', { name: 'Reply', exact: true }).click();
    await alice.page.locator('#composer-context-text', { hasText: `Replying to ${bob.name}` }).waitFor();
    await send(alice, 'This is a reply');
    await bob.page.locator('#messages .message').filter({ hasText: 'This is a reply' }).locator('.reply-quote', { hasText: 'Hi Alice, from the other node' }).waitFor();

    const own = bob.page.locator('#messages .message.mine').filter({ hasText: 'Hi Alice, from the other node' });
    await own.getByRole('button', { name: 'Message actions' }).click();
    await own.getByRole('button', { name: 'Edit' }).click();
    await composer(bob).fill('Hi Alice (edited text)');
    await composer(bob).press('Enter');
    await alice.page.locator('#messages .message', { hasText: 'Hi Alice (edited text)' }).locator('.edited').waitFor();
    // The quote in alice's reply follows the edit.
    await bob.page.locator('.reply-quote', { hasText: 'Hi Alice (edited text)' }).waitFor();

    await send(bob, 'Oops, wrong chat');
    await bodies(alice, 'Oops, wrong chat').waitFor();
    const oops = bob.page.locator('#messages .message.mine').filter({ hasText: 'Oops, wrong chat' });
    bob.page.once('dialog', (dialog) => void dialog.accept());
    await oops.getByRole('button', { name: 'Message actions' }).click();
    await oops.getByRole('button', { name: 'Delete for everyone' }).click();
    await alice.page.locator('#messages .message.deleted', { hasText: 'This message was deleted' }).waitFor();
    expect(await bodies(alice, 'Oops, wrong chat').count()).toBe(0);
  });

  it('shows unread counts and scrolls back through a long history', async () => {
    // Carol (an SDK client, not a browser) writes 120 messages to alice while alice is elsewhere.
    const carol = new ChatClient({ url: cluster.url, token: signToken({ sub: `carol-${run}`, name: `Carol ${run}` }) });
    sdkClients.push(carol);
    await carol.connect();
    const { conversation } = await carol.request('conversation:open-direct', { userId: alice.userId });
    for (let i = 1; i <= 120; i++) await carol.send({ conversationId: conversation.id, body: `history ${i}` }).acked;

    const item = alice.page.locator(`[data-conversation="${conversation.id}"]`);
    await item.locator('.badge.unread[data-unread="120"]').waitFor();
    await item.getByRole('button').click();
    await bodies(alice, 'history 120').waitFor();
    // Meanwhile bob writes in the conversation alice is not looking at: delivered to her, not read.
    await send(bob, 'Are you there?');
    await myMessage(bob, 'Are you there\\?').locator('.status[data-status="delivered"]').waitFor();
    expect(await alice.page.locator('#messages .message').count()).toBeLessThan(120);
    // Scrolling up loads older pages (history:fetch before the oldest seq) until the beginning.
    await eventually(
      async () => {
        await alice.page.locator('#scroller').evaluate((element) => (element.scrollTop = 0));
        expect(await alice.page.locator('#history-status').textContent()).toBe('This is the beginning of the conversation.');
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    expect(await alice.page.locator('#messages .message').count()).toBe(120);
    const order = await alice.page.locator('#messages .message .body').allTextContents();
    expect(order).toEqual(Array.from({ length: 120 }, (_, i) => `history ${i + 1}`));
    await item.locator('.badge.unread').waitFor({ state: 'detached' });
    await eventually(async () => {
      const receipts = carol.receipts(conversation.id).find((receipt) => receipt.userId === alice.userId);
      expect(receipts?.lastReadSeq).toBe(120);
    });
    expect(await myMessage(bob, 'Are you there\\?').locator('.status').getAttribute('data-status')).toBe('delivered');
    await alice.page.locator('.conversation-item').filter({ hasText: bob.name }).click();
    await myMessage(bob, 'Are you there\\?').locator('.status[data-status="read"]').waitFor();
  });

  it('restores the conversation, its history, its mute and my status after a reload', async () => {
    const mute = bob.page.getByRole('button', { name: 'Mute' });
    await mute.click();
    await bob.page.locator('#mute-button[aria-pressed="true"]').waitFor();
    await bob.page.getByLabel('My status').selectOption('dnd');
    await alice.page.locator(`#conversation-presence[data-user="${bob.userId}"][data-status="dnd"]`).waitFor();
    await bob.page.reload();
    await bob.page.locator('#connection[data-state="online"]').waitFor();
    // Same tab, same sticky id: the same node as before.
    expect(await bob.page.locator('#connection').getAttribute('data-node')).toBe(bob.node);
    await bob.page.locator('#conversation-title', { hasText: alice.name }).waitFor();
    await bodies(bob, 'Hello Bob').waitFor();
    const texts = await bob.page.locator('#messages .message .body').allTextContents();
    expect(texts).toEqual(['Hello Bob', 'Hi Alice (edited text)', 'This is a reply', 'This message was deleted', 'Are you there?']);
    await myMessage(bob, 'Hi Alice \\(edited text\\)').locator('.status[data-status="read"]').waitFor();
    await bob.page.locator('#mute-button[aria-pressed="true"]').waitFor();
    await eventually(async () => expect(await bob.page.getByLabel('My status').inputValue()).toBe('dnd'));
    await bob.page.getByLabel('My status').selectOption('online');
    await mute.click();
    await bob.page.locator('#mute-button[aria-pressed="false"]').waitFor();
  });

  it('archives a conversation out of the list, shows it under Archived, and a new message from the other brings it back', async () => {
    const archive = bob.page.getByRole('button', { name: 'Archive', exact: true });
    const archivedView = bob.page.getByRole('button', { name: 'Archived', exact: true });
    const item = bob.page.locator('.conversation-item').filter({ hasText: alice.name });
    await archive.click();
    await bob.page.locator('#archive-button[aria-pressed="true"]').waitFor();
    await bob.page.locator('#back').click();
    await item.waitFor({ state: 'detached' });
    await archivedView.click();
    await item.waitFor();
    await archivedView.click();
    await item.waitFor({ state: 'detached' });
    // Alice's side is unaffected, and her message unarchives it for bob (he has not muted it).
    await alice.page.locator('#archive-button[aria-pressed="false"]').waitFor();
    await send(alice, 'Archived? Not any more');
    await item.waitFor();
    await item.click();
    await bodies(bob, 'Archived\\? Not any more').waitFor();
    await bob.page.locator('#archive-button[aria-pressed="false"]').waitFor();
  });

  it('schedules the composer text for later, lists it above the composer on every tab, and cancels it', async () => {
    // Bob's conversation with Alice is open. The default time is an hour ahead: nothing is sent here.
    await composer(bob).fill('See you tomorrow');
    await bob.page.getByRole('button', { name: 'Send later', exact: true }).click();
    await bob.page.getByLabel('Send at').waitFor();
    expect(await bob.page.getByLabel('Send at').inputValue()).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/);
    expect(await accessibilityViolations(bob.page), 'send-later panel').toEqual([]);
    await bob.page.getByRole('button', { name: 'Schedule', exact: true }).click();
    const item = bob.page.locator('#scheduled-list .scheduled-item').filter({ hasText: 'See you tomorrow' });
    await item.waitFor();
    expect(await composer(bob).inputValue()).toBe('');
    await bob.page.locator('#send-later-panel').waitFor({ state: 'hidden' });
    expect(await accessibilityViolations(bob.page), 'scheduled list').toEqual([]);
    // Bob's second tab follows through the SDK's scheduledUpdated.
    const tab = await bob.context.newPage();
    await tab.goto(bob.page.url());
    await tab.locator('#connection[data-state="online"]').waitFor();
    // The page reopens the conversation it had open.
    const mirrored = tab.locator('#scheduled-list .scheduled-item').filter({ hasText: 'See you tomorrow' });
    await mirrored.waitFor();
    // A time in the past is refused with the reason, and the text stays.
    await composer(bob).fill('Yesterday');
    await bob.page.getByRole('button', { name: 'Send later', exact: true }).click();
    await bob.page.getByLabel('Send at').fill('2020-01-01T10:00');
    await bob.page.getByRole('button', { name: 'Schedule', exact: true }).click();
    await bob.page.locator('#history-status').filter({ hasText: 'Pick a time from now on' }).waitFor();
    expect(await composer(bob).inputValue()).toBe('Yesterday');
    await composer(bob).fill('');
    await bob.page.getByRole('button', { name: 'Send later', exact: true }).click();

    await bob.page.getByRole('button', { name: 'Cancel scheduled message: See you tomorrow' }).click();
    await item.waitFor({ state: 'detached' });
    await mirrored.waitFor({ state: 'detached' });
    await bob.page.locator('#scheduled').waitFor({ state: 'hidden' });
    await tab.close();
    // Never sent: Alice has no such message.
    expect(await bodies(alice, 'See you tomorrow').count()).toBe(0);
  });

  it('replaces a stored token the server refuses with a fresh one, staying signed in', async () => {
    await bob.page.evaluate(() => {
      const session = JSON.parse(localStorage.getItem('chat.session')!) as { token: string };
      session.token = 'not-a-token';
      localStorage.setItem('chat.session', JSON.stringify(session));
    });
    await bob.page.reload();
    await bob.page.locator('#connection[data-state="online"]').waitFor();
    expect(await bob.page.locator('#my-name').textContent()).toBe(bob.name);
    expect(await bob.page.evaluate(() => (JSON.parse(localStorage.getItem('chat.session')!) as { token: string }).token)).not.toBe('not-a-token');
    await bodies(bob, 'Hello Bob').waitFor();
  });

  it('resyncs after going offline and back online, without losing or repeating a message', async () => {
    await alice.context.setOffline(true);
    await alice.page.locator('#connection[data-state="offline"]').waitFor();
    // The server has seen her go (bob is told): only from here on do bob's messages find no device of hers.
    // (Attached, not visible: on bob's phone layout the open conversation hides the list.)
    await bob.page.locator(`.conversation-item .presence-dot[data-user="${alice.userId}"][data-status="offline"]`).waitFor({ state: 'attached' });
    const whileAway = ['while you were away 1', 'while you were away 2', 'while you were away 3'];
    for (const text of whileAway) {
      await send(bob, text);
      await myMessage(bob, text).locator('.status[data-status="sent"]').waitFor();
    }
    // Alice writes offline too: her message waits, marked sending, and goes out on reconnect.
    await send(alice, 'written offline');
    await myMessage(alice, 'written offline').locator('.status[data-status="sending"]').waitFor();
    await shot(alice, 'desktop-offline');
    expect(await bodies(alice, whileAway[0]!).count()).toBe(0);

    await alice.context.setOffline(false);
    await alice.page.locator('#connection[data-state="online"]').waitFor();
    for (const text of whileAway) await bodies(alice, text).waitFor();
    await bodies(bob, 'written offline').waitFor();
    await myMessage(alice, 'written offline').locator('.status[data-status="read"]').waitFor();
    for (const text of whileAway) await myMessage(bob, text).locator('.status[data-status="read"]').waitFor();
    for (const text of [...whileAway, 'Hello Bob', 'written offline']) {
      expect(await bodies(alice, text).count(), text).toBe(1);
      expect(await bodies(bob, text).count(), text).toBe(1);
    }
    // With no device connected, bob's messages became notifications: the bell counts them, the list shows them.
    await eventually(
      async () =>
        expect(
          Number(await alice.page.locator('#notifications-badge').textContent()),
          `alice's page said: ${alice.warnings.join(' | ') || 'nothing'}; the nodes' last lines:\n${cluster.nodes
            .flatMap((node, i) =>
              cluster
                .logs(i)
                .slice(-10)
                .map((line) => `[${node.id}] ${line}`),
            )
            .join('\n')}`,
        ).toBeGreaterThanOrEqual(3),
      { timeoutMs: 10_000 },
    );
    await alice.page.getByRole('button', { name: /^Notifications, \d+ unread$/ }).click();
    const dialog = alice.page.getByRole('dialog', { name: 'Notifications' });
    for (const text of whileAway) await dialog.locator('.notification[data-read="false"]', { hasText: `${bob.name}: ${text}` }).waitFor();
    await shot(alice, 'desktop-notifications');
    expect(await accessibilityViolations(alice.page), 'notifications dialog').toEqual([]);
    await dialog.getByRole('button', { name: 'Mark all read' }).click();
    await alice.page.locator('#notifications-badge').waitFor({ state: 'hidden' });
    expect(await dialog.locator('.notification[data-read="false"]').count()).toBe(0);
    await dialog.getByRole('button', { name: 'Close' }).click();
    const seqs = await alice.page.locator('#messages .message').evaluateAll((items) => items.map((item) => Number((item as unknown as { dataset: Record<string, string> }).dataset['seq'])));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  });

  it('places a video call that the other user answers, up to a connected peer connection', async () => {
    await alice.page.getByRole('button', { name: 'Start a video call' }).click();
    await bob.page.locator('#call-state[data-state="ringing"]', { hasText: `${alice.name} is calling` }).waitFor();
    await shot(bob, 'phone-incoming-call');
    expect(await accessibilityViolations(bob.page), 'incoming call').toEqual([]);
    await bob.page.getByRole('button', { name: 'Accept' }).click();
    await alice.page.locator('#call-state[data-state="connected"]').waitFor({ timeout: 20_000 });
    await bob.page.locator('#call-state[data-state="connected"]').waitFor({ timeout: 20_000 });
    const states = await Promise.all(
      [alice, bob].map((person) => person.page.evaluate(() => (globalThis as unknown as { chatCall(): { connectionState: string } | null }).chatCall()?.connectionState)),
    );
    expect(states).toEqual(['connected', 'connected']);
    // The media never left this machine: only loopback candidates are signalled (LOOPBACK_ICE_ONLY), but
    // a connectivity check sent from a socket on another local interface to 127.0.0.1 makes that
    // socket's address a (host-internal) peer-reflexive path, so each end's local address is checked
    // against this machine's own. (Local, because the browser redacts peer-reflexive remote addresses.)
    const own = new Set(Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((entry) => entry.address)));
    for (const person of [alice, bob]) {
      const local = await person.page.evaluate(async () => {
        const pc = (globalThis as unknown as { chatCall(): { getStats(): Promise<Map<string, Record<string, unknown>>> } }).chatCall();
        const stats = [...(await pc.getStats()).values()];
        const selected = stats.find((entry) => entry['type'] === 'candidate-pair' && entry['nominated'] && entry['state'] === 'succeeded');
        return stats.find((entry) => entry['id'] === selected?.['localCandidateId'])?.['address'];
      });
      expect(own.has(String(local)), `${person.name}: ${String(local)}`).toBe(true);
    }
    // Fake camera frames arrive on both sides.
    for (const person of [alice, bob]) {
      await eventually(
        async () => {
          const width = await person.page.locator('#remote-video').evaluate((video) => (video as unknown as { videoWidth: number }).videoWidth);
          expect(width).toBeGreaterThan(0);
        },
        { timeoutMs: 10_000, intervalMs: 100 },
      );
    }
    await shot(alice, 'desktop-call');
    await shot(bob, 'phone-call');
    await alice.page.getByRole('button', { name: 'Hang up' }).click();
    await bob.page.locator('#call-state[data-state="closed"]', { hasText: 'Call ended' }).waitFor();
    for (const person of [alice, bob]) expect(await person.page.evaluate(() => (globalThis as unknown as { chatCall(): unknown }).chatCall())).toBeNull();

    // A second call, declined: the caller is told, nobody keeps a camera open.
    await alice.page.getByRole('button', { name: 'Start a video call' }).click();
    await bob.page.getByRole('button', { name: 'Decline' }).click();
    await alice.page.locator('#call-state[data-state="closed"]', { hasText: 'Call declined' }).waitFor();
    await alice.page.locator('#call').waitFor({ state: 'hidden' });
    expect(await alice.page.locator('#local-video').evaluate((video) => (video as unknown as { srcObject: unknown }).srcObject)).toBeNull();
  });

  it('searches messages with highlighted snippets, and a hostile body stays text', async () => {
    await send(bob, '<img src=x onerror="globalThis.pwned=1"> findme <b>please</b>');
    await alice.page.locator('#messages .message .body').filter({ hasText: 'findme' }).waitFor();
    await alice.page.getByRole('button', { name: 'Search messages' }).click();
    await alice.page.getByLabel('Words, "a phrase", -excluded').fill('findme -nothing');
    await alice.page.getByRole('button', { name: 'Search', exact: true }).click();
    const result = alice.page.locator('#search-results .search-result').first();
    await result.locator('mark', { hasText: 'findme' }).waitFor();
    expect(await result.locator('.search-snippet').textContent()).toContain('<img src=x onerror="globalThis.pwned=1"> findme <b>please</b>');
    expect(await alice.page.locator('#search-results img, #search-results b').count()).toBe(0);
    expect(await alice.page.evaluate(() => (globalThis as unknown as { pwned?: number }).pwned)).toBeUndefined();
    expect(await accessibilityViolations(alice.page)).toEqual([]);
    await result.getByRole('button', { name: 'Open' }).click();
    await alice.page.locator('#search').waitFor({ state: 'hidden' });
  });

  it('raised no page errors', () => {
    expect([...alice.errors, ...bob.errors]).toEqual([]);
  });
});
