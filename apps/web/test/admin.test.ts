// The admin page (apps/web/admin) in a real Chromium against a real 2-node cluster behind the
// repository's nginx, driven only through the page: sign-in with a wrong and a right key, the live
// nodes table and its sparklines, a user lookup with disconnect and revoke, draining a node, sign-out.
// axe-core's WCAG 2.1 A/AA rules run on every state shown, and any violation, whatever its impact,
// fails the test. Screenshots go to reports/admin/*.png.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { io as ioClient, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatClient } from '@chat/client';
import type { SessionEnding } from '@chat/protocol';
import { findNginx, startCluster, type Cluster } from '@chat/testkit/cluster';
import { eventually } from '@chat/testkit/eventually';
import { findChromium } from '@chat/testkit/executables';
import { testEnv } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { buildWeb } from '../src/build.ts';
import { accessibilityViolations } from './chromium.ts';

const NGINX = findNginx();
const CHROMIUM = findChromium();
const SKIP = !NGINX ? ' (skipped: no nginx binary; `apt-get install -y nginx`)' : !CHROMIUM ? ' (skipped: no Chromium at /usr/bin/chromium; `apt-get install -y chromium`)' : '';
const SHOTS = fileURLToPath(new URL('../../../reports/admin/', import.meta.url));
const CHROMIUM_ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking'];

describe.skipIf(SKIP !== '')(`the admin page in Chromium, against 2 nodes behind nginx${SKIP}`, () => {
  const secret = randomBytes(24).toString('base64url');
  const run = Date.now().toString(36);
  let cluster: Cluster;
  let browser: Browser;
  let page: Page;
  const errors: string[] = [];
  const sockets: Socket[] = [];
  const clients: ChatClient[] = [];

  const activeId = () => page.evaluate(() => (globalThis as unknown as { document: { activeElement: { id: string } | null } }).document.activeElement?.id);
  const storedKeys = () => page.evaluate(() => ({ session: Object.keys(sessionStorage), local: Object.keys(localStorage) }));
  const row = (nodeId: string) => page.locator(`#nodes-body tr[data-node="${nodeId}"]`);
  const shot = (name: string) => page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });

  /** A raw Socket.IO connection through nginx with `token`, recording what the server tells it. */
  async function connectUser(token: string): Promise<{ socket: Socket; endings: SessionEnding[] }> {
    const socket = ioClient(cluster.url, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
    sockets.push(socket);
    const endings: SessionEnding[] = [];
    socket.on('session:ending', (ending: SessionEnding) => endings.push(ending));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', reject);
    });
    return { socket, endings };
  }

  /** Whether the nodes accept `token` for a new connection: true, or the refusal's message. */
  async function tryConnect(token: string): Promise<true | string> {
    const socket = ioClient(cluster.url, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
    try {
      return await new Promise<true | string>((resolve) => {
        socket.once('connect', () => resolve(true));
        socket.once('connect_error', (error) => resolve(error.message));
      });
    } finally {
      socket.close();
    }
  }

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    await buildWeb();
    // DRAIN_DELAY_MS keeps a drained node listed as draining for a few refreshes before it closes.
    cluster = await startCluster({ nodes: 2, env: testEnv({ LOG_LEVEL: 'warn', SHUTDOWN_TIMEOUT_MS: '10000', DRAIN_DELAY_MS: '4000', ADMIN_API_KEYS: `ops:${secret}` }) });
    browser = await chromium.launch({ executablePath: CHROMIUM!, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
    page.on('pageerror', (error) => errors.push(String(error)));
    // The page works under its CSP: anything it blocks (an inline style or script) is reported here.
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) errors.push(message.text());
    });
  });

  afterAll(async () => {
    for (const socket of sockets) socket.close();
    for (const client of clients) client.close();
    await browser?.close();
    await cluster?.stop();
  });

  it('refuses a wrong key with the catalogued error and stores nothing', async () => {
    await page.goto(`${cluster.url}/admin`);
    expect(await accessibilityViolations(page), 'sign-in form').toEqual([]);
    // Keyboard only: the key field has focus on load, Enter submits.
    expect(await activeId()).toBe('signin-key');
    await page.keyboard.type('not-the-admin-key-but-long-enough-to-look-like-one');
    await page.keyboard.press('Enter');
    const error = page.locator('#signin-error[data-code="unauthorized"]');
    await error.waitFor();
    expect(await error.getAttribute('role')).toBe('alert');
    expect(await error.textContent()).toMatch(/^unauthorized The key is not one of ADMIN_API_KEYS/);
    expect(await storedKeys()).toEqual({ session: [], local: [] });
    expect(await page.locator('#console').isHidden()).toBe(true);
    await shot('signin-refused');
    expect(await accessibilityViolations(page), 'sign-in error').toEqual([]);
  });

  it('signs in with the right key and shows every node in a table that refreshes every 2 s', async () => {
    await page.getByLabel('Admin key').fill(secret);
    await page.getByRole('button', { name: 'Sign in' }).click();
    for (const node of cluster.nodes) await row(node.id).locator('td.state[data-state="ready"]').waitFor();
    expect(await page.locator('#signin-error').textContent()).toBe('');
    // This tab's sessionStorage holds it (a reload stays signed in); nothing is in localStorage.
    expect(await storedKeys()).toEqual({ session: ['chat.admin.key'], local: [] });
    await page.locator('#notice', { hasText: /^Signed in\. 2 nodes reporting\.$/ }).waitFor();

    const table = page.getByRole('table', { name: /^Every node of the cluster/ });
    expect(await table.locator('caption').count()).toBe(1);
    const headers = await table.locator('thead th').evaluateAll((cells) => cells.map((cell) => cell.getAttribute('scope')));
    expect(headers.every((scope) => scope === 'col')).toBe(true);
    expect(await table.locator('tbody th[scope="row"]').allTextContents()).toEqual(cluster.nodes.map((node) => node.id));

    // Live: the uptime and the refresh time move without a reload.
    const uptime = row(cluster.nodes[0]!.id).locator('td.uptime');
    const before = await uptime.textContent();
    const refreshed = await page.locator('#nodes-updated').textContent();
    await eventually(
      async () => {
        expect(await uptime.textContent()).not.toBe(before);
        expect(await page.locator('#nodes-updated').textContent()).not.toBe(refreshed);
      },
      { timeoutMs: 8000, intervalMs: 250 },
    );

    await page.reload();
    for (const node of cluster.nodes) await row(node.id).waitFor();
    expect(await page.locator('#signin').isHidden()).toBe(true);

    // A reload while the node does not answer keeps the key and tries again; only a refusal drops it.
    let failures = 2;
    await page.route('**/v1/admin/nodes', (route) => (failures-- > 0 ? route.abort('connectionrefused') : route.continue()));
    await page.reload();
    await page.locator('#signin-error[data-code="network"]').waitFor();
    expect(await storedKeys()).toEqual({ session: ['chat.admin.key'], local: [] });
    for (const node of cluster.nodes) await row(node.id).waitFor();
    await page.unroute('**/v1/admin/nodes');
    expect(await page.locator('#signin').isHidden()).toBe(true);
  });

  it('draws a sparkline per node and metric, with data points and a min/max/last text alternative', async () => {
    // Some traffic, so the message rates have something to show.
    const [carol, dave] = [`carol-${run}`, `dave-${run}`].map((id) => new ChatClient({ url: cluster.url, token: signToken({ sub: id, name: id }) })) as [ChatClient, ChatClient];
    clients.push(carol, dave);
    await Promise.all([carol.connect(), dave.connect()]);
    const { conversation } = await carol.request('conversation:open-direct', { userId: `dave-${run}` });
    for (let i = 0; i < 40; i++) {
      await carol.send({ conversationId: conversation.id, body: `rate ${i}` }).acked;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await eventually(
      async () => {
        const labels = await page.locator('svg[data-metric="msgs"]').evaluateAll((charts) => charts.map((chart) => chart.getAttribute('aria-label') ?? ''));
        expect(labels.some((label) => /in: min [\d.]+ msgs\/s, max (?!0 )[\d.]+ msgs\/s/.test(label))).toBe(true);
      },
      { timeoutMs: 10_000, intervalMs: 250 },
    );

    for (const node of cluster.nodes) {
      const group = page.locator(`.node-charts[data-node="${node.id}"]`);
      await group.getByRole('heading', { name: node.id }).waitFor();
      for (const metric of ['msgs', 'sockets', 'ack']) {
        const chart = group.locator(`svg[data-metric="${metric}"]`);
        await eventually(async () => expect(Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(2), { timeoutMs: 10_000, intervalMs: 250 });
        expect(await chart.getAttribute('role')).toBe('img');
        expect(await chart.locator('polyline').count()).toBeGreaterThan(0);
        const label = (await chart.getAttribute('aria-label'))!;
        expect(label).toContain(`on ${node.id}, last 10 minutes: `);
        expect(label).toMatch(/min [\d.,]+.*, max [\d.,]+.*, last [\d.,]+/);
        expect(await chart.locator('title').textContent()).toBe(label);
      }
      expect(await group.locator('svg[data-metric="msgs"]').getAttribute('aria-label')).toMatch(/in: min .*; out: min /);
    }
    await shot('nodes');
    expect(await accessibilityViolations(page), 'signed in, light').toEqual([]);
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot('nodes-dark');
    expect(await accessibilityViolations(page), 'signed in, dark').toEqual([]);
    await page.emulateMedia({ colorScheme: 'light' });
    // A phone: the tables scroll sideways inside their focusable regions.
    await page.setViewportSize({ width: 375, height: 800 });
    expect(await page.evaluate(() => (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
    await shot('nodes-phone');
    expect(await accessibilityViolations(page), 'phone size').toEqual([]);
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('looks up a connected user and disconnects them with revoke', async () => {
    const userId = `dana-${run}`;
    const token = signToken({ sub: userId, name: `Dana ${run}` });
    const dana = await connectUser(token);

    await page.getByLabel('User id').fill(`nobody-${run}`);
    await page.getByLabel('User id').press('Enter');
    await page.locator('#lookup-error[data-code="not_found"]').waitFor();
    expect(await page.locator('#user').isHidden()).toBe(true);

    await page.getByLabel('User id').fill(userId);
    await page.getByRole('button', { name: 'Look up' }).click();
    await page.getByRole('heading', { name: `Dana ${run} (${userId})` }).waitFor();
    const devices = page.getByRole('table', { name: 'Connected devices' }).locator('tbody tr');
    await eventually(async () => expect(await devices.count()).toBe(1));
    expect(cluster.nodes.map((node) => node.id)).toContain(await devices.first().getAttribute('data-node'));
    expect(await page.locator('#lookup-error').textContent()).toBe('');
    await shot('user');
    expect(await accessibilityViolations(page), 'user found').toEqual([]);

    await page.getByRole('button', { name: 'Disconnect and revoke tokens' }).click();
    const dialog = page.getByRole('dialog', { name: `Disconnect and revoke ${userId}?` });
    await dialog.waitFor();
    // Cancel has focus, so a stray Enter is harmless.
    expect(await activeId()).toBe('confirm-cancel');
    await shot('revoke-dialog');
    expect(await accessibilityViolations(page), 'revoke dialog').toEqual([]);
    await dialog.getByRole('button', { name: 'Disconnect and revoke', exact: true }).click();
    await dialog.waitFor({ state: 'hidden' });

    await page.locator('#notice', { hasText: new RegExp(`^Disconnected 1 device of ${userId}; tokens issued before .+ are refused\\.$`) }).waitFor();
    await eventually(() => expect(dana.endings.map((ending) => ending.reason)).toEqual(['token_revoked']));
    await eventually(() => expect(dana.socket.connected).toBe(false));
    // The old token is refused from now on; the page shows the revocation and no device.
    expect(await tryConnect(token)).toMatch(/revoked/i);
    await page.locator('#devices-empty').waitFor();
    expect(await page.locator('#user-revoked').textContent()).not.toBe('none revoked');
  });

  it('drains a node from the page after a confirmation: it leaves the table, its sockets move to the other node', async () => {
    // Erin's SDK client is pinned (sticky id) to the node that is about to drain.
    const target = cluster.nodes[1]!.id;
    let erin: ChatClient | undefined;
    for (let attempt = 0; attempt < 40 && !erin; attempt++) {
      const client = new ChatClient({ url: cluster.url, token: signToken({ sub: `erin-${run}`, name: `Erin ${run}` }), sticky: randomUUID() });
      await client.connect();
      if ((await client.request('session:info', {})).nodeId === target) erin = client;
      else client.close();
    }
    if (!erin) throw new Error(`no sticky id reached ${target} in 40 tries`);
    clients.push(erin);
    const reconnected = new Promise<void>((resolve) => erin.on('connected', ({ reconnect }) => reconnect && resolve()));
    await eventually(async () => expect(Number(await row(target).locator('td.sockets').textContent())).toBeGreaterThanOrEqual(1), { timeoutMs: 8000, intervalMs: 250 });

    // Keyboard: Tab from the row above reaches this row's Drain button (named with its node), its focus
    // visible, and Enter opens the dialog.
    const drain = row(target).getByRole('button', { name: `Drain ${target}` });
    await row(cluster.nodes[0]!.id)
      .getByRole('button', { name: `Drain ${cluster.nodes[0]!.id}` })
      .focus();
    await page.keyboard.press('Tab');
    expect(await drain.evaluate((button) => button.matches(':focus') && button.matches(':focus-visible'))).toBe(true);
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog', { name: `Drain ${target}?` });
    await dialog.waitFor();
    // Escape cancels: nothing is drained, and focus is back on the button.
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    expect(await drain.evaluate((button) => button.matches(':focus'))).toBe(true);
    await page.waitForTimeout(2500);
    expect(await row(target).locator('td.state').getAttribute('data-state')).toBe('ready');

    await page.keyboard.press('Enter');
    await dialog.waitFor();
    await shot('drain-dialog');
    expect(await accessibilityViolations(page), 'drain dialog').toEqual([]);
    await dialog.getByRole('button', { name: `Drain ${target}` }).click();
    await page.locator('#notice', { hasText: `${target} is draining: its sockets reconnect to other nodes.` }).waitFor();
    // The node reports itself draining (its button disabled) until it has closed, then leaves the list.
    await row(target).locator('td.state[data-state="draining"]', { hasText: 'Draining' }).waitFor();
    expect(await drain.isDisabled()).toBe(true);
    await shot('draining');
    await row(target).waitFor({ state: 'detached', timeout: 20_000 });
    await page.locator(`.node-charts[data-node="${target}"]`).waitFor({ state: 'detached', timeout: 10_000 });
    expect(await page.locator('#nodes-body th[scope="row"]').allTextContents()).toEqual(cluster.nodes.filter((node) => node.id !== target).map((node) => node.id));
    expect(await page.locator('#nodes-error').textContent()).toBe('');

    await Promise.race([reconnected, new Promise((_, reject) => setTimeout(() => reject(new Error('erin did not reconnect within 15 s')), 15_000))]);
    expect((await erin.request('session:info', {})).nodeId).not.toBe(target);
    await shot('drained');
    expect(await accessibilityViolations(page), 'after the drain').toEqual([]);
  });

  it('signs out: the key leaves sessionStorage and memory, and a reload stays signed out', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Admin key').waitFor();
    expect(await activeId()).toBe('signin-key');
    expect(await storedKeys()).toEqual({ session: [], local: [] });
    expect(await page.locator('#nodes-body tr').count()).toBe(0);
    await page.locator('#notice', { hasText: 'Signed out.' }).waitFor();
    await page.reload();
    await page.getByLabel('Admin key').waitFor();
    expect(await page.locator('#console').isHidden()).toBe(true);
    expect(await storedKeys()).toEqual({ session: [], local: [] });
  });

  it('raised no page errors and no content security policy violations', () => {
    expect(errors).toEqual([]);
  });
});
