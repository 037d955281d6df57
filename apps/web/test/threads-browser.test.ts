// Threads on the browser page in a real Chromium: two users on one node behind the repository's nginx,
// driven only through the page. A reply sent from the thread pane shows as "1 reply" under its root on
// the other side, never in the main timeline; the other opens the pane and reads it, and the unread
// marker goes, live and after a reload (thread:list). A long thread comes a page at a time.
import { mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatClient } from '@chat/client';
import { startCluster, type Cluster } from '@chat/testkit/cluster';
import { testEnv } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { buildWeb } from '../src/build.ts';
import { accessibilityViolations, CHROMIUM, CHROMIUM_ARGS, SHOTS, SKIP, signedIn } from './chromium.ts';

describe.skipIf(SKIP !== '')(`threads on the browser page${SKIP}`, () => {
  let cluster: Cluster;
  let browser: Browser;
  const run = Date.now().toString(36);
  const sdkClients: ChatClient[] = [];

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    await buildWeb();
    cluster = await startCluster({ nodes: 1, env: testEnv({ LOG_LEVEL: 'warn', DEV_TOKENS: 'true', SHUTDOWN_TIMEOUT_MS: '3000' }) });
    browser = await chromium.launch({ executablePath: CHROMIUM!, args: CHROMIUM_ARGS });
  });
  afterAll(async () => {
    for (const client of sdkClients) client.close();
    await browser?.close();
    await cluster?.stop();
  });

  const signIn = (name: string) => signedIn(browser, cluster.url, name, { viewport: { width: 1280, height: 800 } });

  /** A message of the main timeline by its exact text. */
  const inTimeline = (page: Page, text: string) => page.locator('#messages .message').filter({ has: page.locator('.body', { hasText: new RegExp(`^${text}$`) }) });
  /** The thread pane's replies, in the order shown. */
  const paneReplies = (page: Page) => page.locator('#thread-replies .message .body');
  const replyBox = (page: Page) => page.getByRole('textbox', { name: 'Reply in thread' });
  /** Whether the page's client has received a message with this text (in the open conversation's state). */
  const received = (page: Page, text: string) =>
    page.evaluate((body) => {
      const chatPage = (globalThis as unknown as { chatPage: { state: { openView?: { messages: Map<string, { body: string }> | null } } } }).chatPage;
      return [...(chatPage.state.openView?.messages?.values() ?? [])].some((message) => message.body === body);
    }, text);

  it('replies from the pane; the other sees the count, not the reply in the timeline, reads it in the pane, and the marker goes', async () => {
    const alice = await signIn(`Alice ${run}`);
    const bob = await signIn(`Bob ${run}`);
    await alice.page.getByLabel('Chat with').fill(`Bob ${run}`);
    await alice.page.getByRole('button', { name: 'Start' }).click();
    await alice.page.getByRole('textbox', { name: 'Message', exact: true }).fill('Lunch at noon?');
    await alice.page.getByRole('textbox', { name: 'Message', exact: true }).press('Enter');
    await bob.page
      .locator('.conversation-item')
      .filter({ hasText: `Alice ${run}` })
      .click();
    const bobsRoot = inTimeline(bob.page, 'Lunch at noon\\?');
    await bobsRoot.waitFor();

    // Alice replies in the thread, from the pane the message's menu opens.
    const alicesRoot = inTimeline(alice.page, 'Lunch at noon\\?');
    await alicesRoot.hover();
    await alicesRoot.getByRole('button', { name: 'Message actions' }).click();
    await alicesRoot.getByRole('button', { name: 'Reply in thread' }).click();
    await alice.page.locator('#thread #thread-root', { hasText: 'Lunch at noon?' }).waitFor();
    await replyBox(alice.page).fill('Yes, the usual place');
    await replyBox(alice.page).press('Enter');
    await paneReplies(alice.page).filter({ hasText: 'Yes, the usual place' }).waitFor();
    await alicesRoot.locator('.thread-link[data-unread="false"]', { hasText: '1 reply' }).waitFor();
    expect(await replyBox(alice.page).inputValue()).toBe('');

    // Bob, with the conversation open: the count and the unread marker on the root; the reply itself is
    // in his client, but not in the timeline.
    const bobsLink = bobsRoot.locator('.thread-link', { hasText: '1 reply' });
    await bobsLink.locator('.thread-unread').waitFor();
    await expect.poll(() => received(bob.page, 'Yes, the usual place')).toBe(true);
    expect(await inTimeline(bob.page, 'Yes, the usual place').count()).toBe(0);
    expect(await bob.page.locator('#messages .message .body').allTextContents()).toEqual(['Lunch at noon?']);
    expect(await accessibilityViolations(bob.page), 'timeline with a thread link').toEqual([]);
    await bob.page.emulateMedia({ colorScheme: 'dark' });
    expect(await accessibilityViolations(bob.page), 'thread link, dark colours').toEqual([]);
    await bob.page.emulateMedia({ colorScheme: 'light' });

    // He opens the thread: the reply is there, and reading it clears the marker.
    await bobsLink.click();
    await paneReplies(bob.page).filter({ hasText: 'Yes, the usual place' }).waitFor();
    await bobsRoot.locator('.thread-link[data-unread="false"]', { hasText: '1 reply' }).waitFor();
    expect(await bobsRoot.locator('.thread-unread').count()).toBe(0);
    await bob.page.screenshot({ path: `${SHOTS}thread-pane.png` });
    expect(await accessibilityViolations(bob.page), 'thread pane').toEqual([]);
    await bob.page.setViewportSize({ width: 375, height: 740 });
    await bob.page.screenshot({ path: `${SHOTS}thread-pane-phone.png` });
    expect(await accessibilityViolations(bob.page), 'thread pane, phone size').toEqual([]);
    await bob.page.setViewportSize({ width: 1280, height: 800 });

    // Bob answers in the pane; Alice, who has it open, gets it live, after hers, and as text.
    await replyBox(bob.page).fill('Noon <b>works</b>');
    await replyBox(bob.page).press('Enter');
    await paneReplies(alice.page).filter({ hasText: 'Noon <b>works</b>' }).waitFor();
    expect(await paneReplies(alice.page).allTextContents()).toEqual(['Yes, the usual place', 'Noon <b>works</b>']);
    expect(await alice.page.locator('#thread-replies b').count()).toBe(0);
    await alicesRoot.locator('.thread-link[data-unread="false"]', { hasText: '2 replies' }).waitFor();

    // With her pane closed, Bob's next reply is unread for Alice, before and after a reload (thread:list).
    await alice.page.getByRole('button', { name: 'Close thread' }).click();
    await alice.page.locator('#thread').waitFor({ state: 'hidden' });
    await replyBox(bob.page).fill('See you there');
    await replyBox(bob.page).press('Enter');
    await alicesRoot.locator('.thread-link[data-unread="true"]', { hasText: '3 replies' }).waitFor();
    await alice.page.reload();
    await alice.page.locator('#connection[data-state="online"]').waitFor();
    const reloadedLink = alicesRoot.locator('.thread-link', { hasText: '3 replies' });
    await reloadedLink.locator('.thread-unread').waitFor();
    expect(await alice.page.locator('#messages .message .body').allTextContents()).toEqual(['Lunch at noon?']);
    await reloadedLink.click();
    await expect.poll(() => paneReplies(alice.page).allTextContents()).toEqual(['Yes, the usual place', 'Noon <b>works</b>', 'See you there']);
    await alicesRoot.locator('.thread-link[data-unread="false"]', { hasText: '3 replies' }).waitFor();
    // Read on the server too: what the next load of the page starts from.
    const listed = await alice.page.evaluate(async () => {
      const chatPage = (globalThis as unknown as { chatPage: { openConversation: { id: string }; client: { listThreads(id: string): Promise<{ threads: Array<{ unreadCount: number }> }> } } })
        .chatPage;
      return (await chatPage.client.listThreads(chatPage.openConversation.id)).threads.map((thread) => thread.unreadCount);
    });
    expect(listed).toEqual([0]);

    expect(alice.errors).toEqual([]);
    expect(bob.errors).toEqual([]);
  }, 90_000);

  it('pages a long thread in seq order with Show more replies, and reads it to its end', async () => {
    const dana = await signIn(`Dana ${run}`);
    // Carol (an SDK client, not a browser) starts a thread of 55 replies, more than one page.
    const carol = new ChatClient({ url: cluster.url, token: signToken({ sub: `carol-${run}`, name: `Carol ${run}` }) });
    sdkClients.push(carol);
    await carol.connect();
    const { conversation } = await carol.request('conversation:open-direct', { userId: `dana-${run}` });
    const root = await carol.send({ conversationId: conversation.id, body: 'A long thread' }).acked;
    const replies = Array.from({ length: 55 }, (_, i) => `reply ${i + 1}`);
    await Promise.all(replies.map((body) => carol.send({ conversationId: conversation.id, body, threadRootId: root.id }).acked));

    await dana.page
      .locator('.conversation-item')
      .filter({ hasText: `Carol ${run}` })
      .click();
    const link = inTimeline(dana.page, 'A long thread').locator('.thread-link', { hasText: '55 replies' });
    await link.locator('.thread-unread').waitFor();
    expect(await dana.page.locator('#messages .message .body').allTextContents()).toEqual(['A long thread']);
    await link.click();
    await expect.poll(() => paneReplies(dana.page).allTextContents()).toEqual(replies.slice(0, 50));
    await dana.page.getByRole('button', { name: 'Show more replies' }).click();
    await expect.poll(() => paneReplies(dana.page).allTextContents()).toEqual(replies);
    await dana.page.locator('#thread-more').waitFor({ state: 'hidden' });
    await inTimeline(dana.page, 'A long thread').locator('.thread-link[data-unread="false"]', { hasText: '55 replies' }).waitFor();
    expect(dana.errors).toEqual([]);
  }, 60_000);
});
