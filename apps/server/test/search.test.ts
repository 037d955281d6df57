import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { ClientEventResults, ClientPayload, SearchHit } from '@chat/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WASM_ENGINE_TIMEOUT_MS } from '@chat/testkit/timeouts';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { connectDevice, uniqueUser, type Device } from '@chat/testkit/users';

type Search = ClientPayload<'message:search'>;
type Page = ClientEventResults['message:search'];

let node: TestNode;
const devices: Device[] = [];
let alice: Device;
let bob: Device;
let stranger: Device;
let groupId: string;

beforeAll(async () => {
  node = await startNode();
  [alice, bob, stranger] = await Promise.all([connectDevice(node.url, uniqueUser('alice')), connectDevice(node.url, uniqueUser('bob')), connectDevice(node.url, uniqueUser('stranger'))]);
  devices.push(alice, bob, stranger);
  groupId = (await alice.ok('conversation:create-group', { title: 'search', memberIds: [bob.userId] })).conversation.id;
});
afterAll(async () => {
  for (const device of devices) device.close();
  await node?.close();
});

let sent = 0;
async function send(device: Device, body: string, extra: { conversationId?: string; attachments?: Array<{ url: string; mime: string; size: number; name: string }> } = {}) {
  sent += 1;
  const { message } = await device.ok('message:send', {
    conversationId: extra.conversationId ?? groupId,
    clientMsgId: `search-${sent}-${randomUUID().slice(0, 8)}`,
    body,
    ...(extra.attachments && { attachments: extra.attachments }),
  });
  return message;
}
const bodies = (page: Page) => page.results.map((hit) => hit.message.body);
const search = (device: Device, payload: Search) => device.ok('message:search', payload);
const highlighted = (hit: SearchHit) => hit.snippet.highlights.map(([start, end]) => hit.snippet.text.slice(start, end));

describe('message:search', () => {
  it('finds by words (all of them), by quoted phrase, and leaves out -excluded words', async () => {
    await send(alice, 'the quick brown fox');
    await send(bob, 'a brown fox, never as quick as ever');
    await send(alice, 'quick red fox');
    await send(alice, 'nothing relevant here');
    expect(bodies(await search(alice, { query: 'quick fox' })).sort()).toEqual(['a brown fox, never as quick as ever', 'quick red fox', 'the quick brown fox']);
    expect(bodies(await search(alice, { query: '"quick brown"' }))).toEqual(['the quick brown fox']);
    expect(bodies(await search(bob, { query: 'fox -brown' }))).toEqual(['quick red fox']);
    expect(bodies(await search(alice, { query: 'QUICK Red' }))).toEqual(['quick red fox']);
    // The best match first: the phrase as typed outranks the words far apart.
    expect(bodies(await search(alice, { query: 'quick brown fox' }))[0]).toBe('the quick brown fox');
  });

  it('searches only current memberships: a stranger finds nothing, and naming the conversation answers like a missing id', async () => {
    await send(alice, 'confidential merger plans');
    expect((await search(stranger, { query: 'confidential merger' })).results).toEqual([]);
    const real = await stranger.call('message:search', { query: 'merger', conversationId: groupId });
    const missing = await stranger.call('message:search', { query: 'merger', conversationId: randomUUID() });
    expect(real).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(real).toEqual(missing);

    // Someone who leaves stops finding the conversation's messages, old ones included.
    const leaver = await connectDevice(node.url, uniqueUser('leaver'));
    devices.push(leaver);
    const other = (await alice.ok('conversation:create-group', { title: 'short stay', memberIds: [leaver.userId] })).conversation.id;
    await send(alice, 'farewell zeppelin', { conversationId: other });
    expect(bodies(await search(leaver, { query: 'zeppelin' }))).toEqual(['farewell zeppelin']);
    await leaver.ok('conversation:leave', { conversationId: other });
    expect((await search(leaver, { query: 'zeppelin' })).results).toEqual([]);
    expect(await leaver.call('message:search', { query: 'zeppelin', conversationId: other })).toEqual(await leaver.call('message:search', { query: 'zeppelin', conversationId: randomUUID() }));
  });

  it('leaves out messages deleted for everyone, and messages deleted for me (only for me)', async () => {
    const gone = await send(alice, 'vanishing walrus');
    await alice.ok('message:delete', { messageId: gone.id, scope: 'everyone' });
    expect((await search(alice, { query: 'walrus' })).results).toEqual([]);
    const hidden = await send(alice, 'hidden narwhal');
    await bob.ok('message:delete', { messageId: hidden.id, scope: 'me' });
    expect((await search(bob, { query: 'narwhal' })).results).toEqual([]);
    expect(bodies(await search(alice, { query: 'narwhal' }))).toEqual(['hidden narwhal']);
  });

  it('filters by conversation, sender, time and attachment', async () => {
    const direct = (await alice.ok('conversation:open-direct', { userId: bob.userId })).conversation.id;
    const first = await send(alice, 'filterword one');
    await new Promise((resolve) => setTimeout(resolve, 20));
    const second = await send(bob, 'filterword two', { attachments: [{ url: 'https://files.example/a.png', mime: 'image/png', size: 10, name: 'a.png' }] });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const third = await send(alice, 'filterword three', { conversationId: direct });
    const ids = (page: Page) => page.results.map((hit) => hit.message.id).sort();
    expect(ids(await search(bob, { query: 'filterword' }))).toEqual([first.id, second.id, third.id].sort());
    expect(ids(await search(bob, { query: 'filterword', conversationId: direct }))).toEqual([third.id]);
    expect(ids(await search(bob, { query: 'filterword', senderId: alice.userId }))).toEqual([first.id, third.id].sort());
    expect(ids(await search(bob, { query: 'filterword', after: first.createdAt }))).toEqual([second.id, third.id].sort());
    expect(ids(await search(bob, { query: 'filterword', before: third.createdAt, after: first.createdAt }))).toEqual([second.id]);
    expect(ids(await search(bob, { query: 'filterword', hasAttachment: true }))).toEqual([second.id]);
    expect(ids(await search(bob, { query: 'filterword', hasAttachment: false }))).toEqual([first.id, third.id].sort());
    const withFile = (await search(bob, { query: 'filterword', hasAttachment: true })).results[0]!;
    expect(withFile.message.attachments).toEqual([{ url: 'https://files.example/a.png', mime: 'image/png', size: 10, name: 'a.png' }]);
  });

  it('pages with a cursor without duplicates or gaps, ties broken by time then id', async () => {
    const expected: string[] = [];
    for (let i = 0; i < 23; i += 1) expected.push((await send(i % 2 ? bob : alice, `pagination kumquat number ${i}${i % 5 === 0 ? ' kumquat' : ''}`)).id);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await search(alice, { query: 'kumquat', limit: 5, ...(cursor && { cursor }) });
      seen.push(...page.results.map((hit) => hit.message.id));
      const ranks = page.results.map((hit) => hit.rank);
      expect(ranks).toEqual([...ranks].sort((a, b) => b - a));
      cursor = page.nextCursor ?? undefined;
      pages += 1;
    } while (cursor && pages < 10);
    expect(pages).toBe(5);
    expect(new Set(seen).size).toBe(seen.length);
    expect([...seen].sort()).toEqual([...expected].sort());
    // Messages with the word twice rank first.
    expect(seen.slice(0, 5).sort()).toEqual(expected.filter((_id, i) => i % 5 === 0).sort());
    const bad = await alice.call('message:search', { query: 'kumquat', cursor: 'not-a-cursor' });
    expect(bad).toMatchObject({ ok: false, error: { code: 'validation' } });
  });

  it('returns plain-text snippets with highlight ranges; hostile bodies come back inert and intact', async () => {
    const hostile = '<script>alert("x")</script> <img src=x onerror=alert(1)> tom & jerry &amp; needle <b>bold</b>';
    await send(alice, hostile);
    const [hit] = (await search(bob, { query: 'needle' })).results;
    expect(hit!.message.body).toBe(hostile);
    // A short body comes whole, as typed, markup characters included.
    expect(hit!.snippet.text).toBe(hostile);
    expect(highlighted(hit!)).toEqual(['needle']);
    // Words inside what looks like markup are indexed too: the body is plain text.
    expect(bodies(await search(bob, { query: 'script onerror' }))).toEqual([hostile]);
    expect(highlighted((await search(bob, { query: '<script>' })).results[0]!)).toContain('script');

    // A long body gives an excerpt around the match; the sentinels the server uses cannot be forged.
    const long = `${'filler '.repeat(200)}the haystack \u0004fake\u0005 needleinside ${'filler '.repeat(200)}`;
    await send(alice, long);
    const [excerpt] = (await search(bob, { query: 'needleinside' })).results;
    expect(excerpt!.snippet.text.length).toBeLessThan(400);
    expect(highlighted(excerpt!)).toEqual(['needleinside']);
    expect(excerpt!.snippet.text).toContain('haystack fake needleinside');
  });

  it('answers the REST route exactly as the socket event', async () => {
    await send(alice, 'restful capybara with file', { attachments: [{ url: 'https://files.example/c.pdf', mime: 'application/pdf', size: 3, name: 'c.pdf' }] });
    await send(bob, 'restful capybara');
    const token = signToken({ sub: bob.userId, name: bob.userId });
    for (const payload of [{ query: 'capybara' }, { query: 'capybara', hasAttachment: true, conversationId: groupId, limit: 1 }, { query: 'capybara', senderId: bob.userId }] as Search[]) {
      const query = new URLSearchParams(Object.entries(payload).map(([k, v]): [string, string] => [k, String(v)]));
      const response = await node.app.inject({ method: 'GET', url: `/v1/search/messages?${query}`, headers: { authorization: `Bearer ${token}` } });
      expect(response.statusCode, response.body).toBe(200);
      expect(response.json()).toEqual({ ok: true, ...(await search(bob, payload)) });
    }
    const missing = await node.app.inject({ method: 'GET', url: `/v1/search/messages?query=x&conversationId=${randomUUID()}`, headers: { authorization: `Bearer ${token}` } });
    expect([missing.statusCode, missing.json().error.code]).toEqual([404, 'not_found']);
    const huge = await node.app.inject({ method: 'GET', url: `/v1/search/messages?query=${'a'.repeat(10_000)}`, headers: { authorization: `Bearer ${token}` } });
    expect([huge.statusCode, huge.json().error.code]).toEqual([400, 'validation']);
  });

  it('answers syntax errors, SQL metacharacters and 10 KB queries with a catalogued error or a valid result, and keeps serving', async () => {
    await send(alice, "o'reilly said 50% of_all \\ backslashes");
    const nasty = [
      "'; DROP TABLE messages; --",
      "o'reilly",
      '50%',
      'of_all',
      '\\',
      '"unbalanced quote',
      '""',
      '-',
      '- - -',
      'or',
      'or or or',
      '!!!',
      '&&& ||| !(',
      'a:* & b:B <-> c <2> d',
      ')))(((',
      '\u0000\u0001',
      '😀 👍',
      '%s%s%n',
      "$1 $$ ' || pg_sleep(5) --",
      `-"${'x '.repeat(100)}"`,
    ];
    for (const query of nasty) {
      const ack = await alice.call('message:search', { query });
      if (ack.ok) expect(Array.isArray(ack.results), query).toBe(true);
      else expect(ack.error.code, query).toBe('validation');
    }
    expect(bodies(await search(alice, { query: "o'reilly" }))).toEqual(["o'reilly said 50% of_all \\ backslashes"]);
    for (const query of ['a'.repeat(10_000), 'word '.repeat(2_000), `"${'x '.repeat(5_000)}"`]) {
      expect(await alice.call('message:search', { query })).toMatchObject({ ok: false, error: { code: 'validation' } });
    }
    for (const payload of [
      { query: '' },
      { query: '   ' },
      { query: 'x', limit: 0 },
      { query: 'x', limit: 51 },
      { query: 'x', before: 'yesterday' },
      { query: 'x', extra: 1 },
      { query: 'x', conversationId: 'nope' },
    ]) {
      expect(await alice.call('message:search', payload as Search), JSON.stringify(payload)).toMatchObject({ ok: false, error: { code: 'validation' } });
    }
    expect(bodies(await search(alice, { query: '"quick brown"' }))).toEqual(['the quick brown fox']);
  });
});

describe('message:search on the embedded PGlite database', () => {
  it(
    'finds, highlights and filters like PostgreSQL',
    async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'chat-search-embedded-'));
      const embedded = await startNode({ DATABASE_URL: undefined, REDIS_URL: undefined, DATA_DIR: dataDir });
      try {
        const [me, peer] = await Promise.all([connectDevice(embedded.url, 'embedded-me'), connectDevice(embedded.url, 'embedded-peer')]);
        devices.push(me, peer);
        const { conversation } = await me.ok('conversation:open-direct', { userId: peer.userId });
        await me.ok('message:send', { conversationId: conversation.id, clientMsgId: 'embedded-search-1', body: 'embedded <b>lighthouse</b> keeper' });
        await peer.ok('message:send', { conversationId: conversation.id, clientMsgId: 'embedded-search-2', body: 'lighthouse' });
        const page = await peer.ok('message:search', { query: 'lighthouse keeper' });
        expect(page.results.map((hit) => [hit.snippet.text, highlighted(hit)])).toEqual([['embedded <b>lighthouse</b> keeper', ['lighthouse', 'keeper']]]);
        expect((await peer.ok('message:search', { query: 'lighthouse', senderId: peer.userId })).results).toHaveLength(1);
        expect((await peer.ok('message:search', { query: 'lighthouse -keeper' })).results.map((hit) => hit.message.body)).toEqual(['lighthouse']);
      } finally {
        await embedded.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
      // Booting migrates a fresh PGlite through the wasm schema engine.
    },
    WASM_ENGINE_TIMEOUT_MS,
  );
});
