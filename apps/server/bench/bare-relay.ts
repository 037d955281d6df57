/**
 * The baseline for `npm run bench`: the simplest Socket.IO chat relay from the seed guides. No
 * persistence, no token verification, no validation, no rate limits, no idempotency. It speaks just
 * enough of our protocol for the SDK and the load generator to run the same scenario against it:
 * conversations, a seq counter per conversation, acks, and fan-out to the members' rooms. Comparing
 * against it shows what persistence, auth, validation and the cluster cost.
 *
 * Two modes:
 * - one process (no REDIS_URL): in-memory adapter, conversations and seqs in Maps: the relay the
 *   scaling targets are stated against;
 * - a cluster (REDIS_URL set, behind nginx like our nodes): the least a Socket.IO cluster must add,
 *   and nothing more. Socket.IO's sharded Redis adapter (dynamic subscriptions: a publish reaches only
 *   the nodes holding a member's room), conversations registered in Redis once and cached by every
 *   node, and the seq from one INCR per message. `npm run bench:scaling` runs it at every node count as
 *   the control for ours: what a replica costs any Socket.IO cluster on the same machine. Seqs of one
 *   conversation sent on two nodes at once may arrive out of order; nothing here orders them.
 *
 *   PORT=3999 [REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX=bare:] node --import tsx apps/server/bench/bare-relay.ts
 */
import { randomUUID } from 'node:crypto';
import type { ConversationKind } from '@chat/protocol';
import { createServer } from 'node:http';
import { createShardedAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';

interface Conversation {
  id: string;
  kind: ConversationKind;
  title: string | null;
  members: Map<string, { delivered: number; read: number }>;
  lastSeq: number;
}

/** This node's conversations: all of them in one process, a cache of the Redis registry in a cluster. */
const conversations = new Map<string, Conversation>();
/** The answer to any event naming a conversation this relay does not know. */
const NOT_FOUND = { ok: false, error: { code: 'not_found', message: 'Conversation not found', retryable: false } };
const directs = new Map<string, string>();

const redisUrl = process.env['REDIS_URL'];
const prefix = process.env['REDIS_KEY_PREFIX'] ?? 'bare:';
const redis = redisUrl ? new Redis(redisUrl, { enableAutoPipelining: true }) : null;

/** The conversation, from this node's cache or (in a cluster) the registry. */
async function lookup(id: string): Promise<Conversation | undefined> {
  const cached = conversations.get(id);
  if (cached || !redis) return cached;
  const stored = await redis.get(`${prefix}conv:${id}`);
  if (!stored) return undefined;
  const { kind, title, memberIds } = JSON.parse(stored) as { kind: ConversationKind; title: string | null; memberIds: string[] };
  const conversation: Conversation = { id, kind, title, members: new Map(memberIds.map((m) => [m, { delivered: 0, read: 0 }])), lastSeq: 0 };
  conversations.set(id, conversation);
  return conversation;
}

/** No verification: the "token" is only where the user id is carried (`sub` of an unsigned JWT). */
function userOf(token: unknown): string | null {
  if (typeof token !== 'string') return null;
  try {
    const sub = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()).sub;
    return typeof sub === 'string' ? sub : null;
  } catch {
    return null;
  }
}

function wire(conversation: Conversation) {
  return {
    id: conversation.id,
    kind: conversation.kind,
    title: conversation.title,
    ownerId: null,
    members: [...conversation.members].map(([userId, m]) => ({ userId, displayName: userId, role: 'member', joinedAt: new Date(0).toISOString(), lastDeliveredSeq: m.delivered, lastReadSeq: m.read })),
    lastSeq: conversation.lastSeq,
    version: conversation.lastSeq,
    lastActivityAt: new Date().toISOString(),
    createdAt: new Date(0).toISOString(),
  };
}

async function create(kind: Conversation['kind'], memberIds: string[], title: string | null): Promise<Conversation> {
  const conversation: Conversation = { id: randomUUID(), kind, title, members: new Map(memberIds.map((id) => [id, { delivered: 0, read: 0 }])), lastSeq: 0 };
  conversations.set(conversation.id, conversation);
  await redis?.set(`${prefix}conv:${conversation.id}`, JSON.stringify({ kind, title, memberIds }));
  return conversation;
}

const http = createServer((request, response) => {
  // The load generator mints tokens here, as it does from our dev endpoint.
  if (request.method === 'POST' && request.url === '/v1/dev/token') {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk));
    request.on('end', () => {
      const userId = (JSON.parse(body || '{}') as { userId?: string }).userId ?? `u-${randomUUID()}`;
      const token = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: userId })).toString('base64url')}.`;
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, token, userId }));
    });
    return;
  }
  if (request.url === '/healthz' || request.url === '/readyz') return void response.writeHead(200).end('{"ok":true}');
  response.writeHead(404).end();
});

const io = new Server(http, { serveClient: false });
if (redis) io.adapter(createShardedAdapter(redis, redis.duplicate(), { channelPrefix: `${prefix}socket.io`, subscriptionMode: 'dynamic' }));
io.on('connection', (socket) => {
  const userId = userOf(socket.handshake.auth['token']) ?? `anon-${socket.id}`;
  void socket.join(`user:${userId}`);
  const rooms = (c: Conversation) => [...c.members.keys()].map((id) => `user:${id}`);
  type Ack = (response: object) => void;

  socket.on('session:info', (_p: unknown, ack: Ack) => ack({ ok: true, user: { id: userId, displayName: userId }, nodeId: 'bare', socketId: socket.id, expiresAt: null }));
  // A direct conversation per pair and node: the load generator opens each pair once.
  socket.on('conversation:open-direct', async (p: { userId: string }, ack: Ack) => {
    const key = [userId, p.userId].sort().join('\u0000');
    let conversation = conversations.get(directs.get(key) ?? '');
    const created = !conversation;
    if (!conversation) {
      conversation = await create('direct', [userId, p.userId], null);
      directs.set(key, conversation.id);
    }
    ack({ ok: true, conversation: wire(conversation), created });
  });
  socket.on('conversation:create-group', async (p: { title: string; memberIds: string[] }, ack: Ack) => {
    ack({ ok: true, conversation: wire(await create('group', [...new Set([userId, ...p.memberIds])], p.title)) });
  });
  socket.on('conversation:get', async (p: { conversationId: string }, ack: Ack) => {
    const conversation = await lookup(p.conversationId);
    ack(conversation ? { ok: true, conversation: wire(conversation) } : NOT_FOUND);
  });
  socket.on('conversation:list', (_p: unknown, ack: Ack) => ack({ ok: true, conversations: [], nextCursor: null }));
  socket.on('sync:changes', (_p: unknown, ack: Ack) => ack({ ok: true, conversations: [], removedConversationIds: [], receipts: [] }));
  type Send = { conversationId: string; clientMsgId: string; body: string; kind?: string };
  const relay = (conversation: Conversation, seq: number, p: Send, ack: Ack) => {
    const message = {
      id: randomUUID(),
      conversationId: conversation.id,
      seq,
      version: seq,
      senderId: userId,
      clientMsgId: p.clientMsgId,
      kind: p.kind ?? 'text',
      body: p.body,
      attachments: [],
      replyToId: null,
      reactions: [],
      createdAt: new Date().toISOString(),
      editedAt: null,
      deletedAt: null,
    };
    ack({ ok: true, message, duplicate: false });
    io.to(rooms(conversation)).emit('message:new', message);
  };
  socket.on('message:send', (p: Send, ack: Ack) => {
    // One process: synchronous, a counter per conversation. A cluster: any node may send into any
    // conversation, so the seq is one INCR.
    if (!redis) {
      const conversation = conversations.get(p.conversationId);
      if (!conversation) return ack(NOT_FOUND);
      conversation.lastSeq += 1;
      return relay(conversation, conversation.lastSeq, p, ack);
    }
    void lookup(p.conversationId).then(async (conversation) => {
      if (!conversation) return ack(NOT_FOUND);
      conversation.lastSeq = await redis.incr(`${prefix}seq:${conversation.id}`);
      relay(conversation, conversation.lastSeq, p, ack);
    });
  });
  // Receipts and typing go by this node's copy of the conversation (receipts are not shared between nodes).
  socket.on('receipt:mark', (p: { conversationId: string; delivered?: number; read?: number }, ack: Ack) => {
    const member = conversations.get(p.conversationId)?.members.get(userId);
    if (!member) return ack(NOT_FOUND);
    member.read = Math.max(member.read, p.read ?? 0);
    member.delivered = Math.max(member.delivered, p.delivered ?? 0, member.read);
    const receipt = { conversationId: p.conversationId, userId, lastDeliveredSeq: member.delivered, lastReadSeq: member.read };
    ack({ ok: true, receipt });
    io.to(rooms(conversations.get(p.conversationId)!)).emit('receipt:updated', receipt);
  });
  socket.on('typing:set', (p: { conversationId: string; typing: boolean }, ack: Ack) => {
    const conversation = conversations.get(p.conversationId);
    if (conversation) socket.to(rooms(conversation)).emit('typing:updated', { conversationId: p.conversationId, userId, typing: p.typing });
    ack({ ok: true, conversationId: p.conversationId, typing: p.typing });
  });
  socket.on('presence:set-status', (p: { status: string }, ack: Ack) => ack({ ok: true, status: p.status }));
});

const port = Number(process.env['PORT'] ?? 3999);
http.listen(port, process.env['HOST'] ?? '127.0.0.1', () => console.log(JSON.stringify({ msg: `bare relay listening at http://127.0.0.1:${port}` })));
const stop = () => io.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
