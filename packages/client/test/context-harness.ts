// The client's modules wired as ChatClient wires them, over a context whose `request` is a function of
// the test instead of a socket: the outbox, change and gap logic run without a server.
import type { ClientEventName, Conversation, Message } from '@chat/protocol';
import { Changes } from '../src/changes.ts';
import { ClientContext, closedError, type Requester } from '../src/context.ts';
import type { ChatClientEvents } from '../src/events.ts';
import { type ChatClientOptions, resolveOptions } from '../src/options.ts';
import { Outbox } from '../src/outbox.ts';
import { Receipts } from '../src/receipts.ts';
import { Sync } from '../src/sync.ts';

/** Plays the server: the ok-result of one request, or a thrown ChatError. */
// biome-ignore lint/suspicious/noExplicitAny: each test answers the few events it expects, untyped.
export type Server = (event: ClientEventName, payload: any) => unknown;

export interface Harness {
  ctx: ClientContext;
  outbox: Outbox;
  changes: Changes;
  sync: Sync;
  receipts: Receipts;
  /** Every request the modules made, in order. */
  requests: Array<{ event: ClientEventName; payload: unknown }>;
  /** Every event reported to the app, in order. */
  events: Array<{ event: keyof ChatClientEvents; args: unknown[] }>;
  /** The arguments of every report of one event, in order. */
  reported<E extends keyof ChatClientEvents>(event: E): Array<ChatClientEvents[E][0]>;
}

/** A connected session of user `me`; `server` answers the requests. */
export function harness(server: Server, options: Partial<ChatClientOptions> = {}): Harness {
  const requests: Harness['requests'] = [];
  const events: Harness['events'] = [];
  // Like ChatClient.request: refused once closed, and an ok-result updates the state as a push would.
  const request = (async (event: ClientEventName, payload: unknown) => {
    if (ctx.closed) throw closedError();
    requests.push({ event, payload });
    let result: object;
    try {
      result = (await server(event, payload)) as object;
    } catch (thrown) {
      if (ctx.closed) throw closedError();
      throw thrown;
    }
    changes.live(() => changes.absorb(event, result, Date.now()));
    return result;
  }) as Requester;
  const ctx = new ClientContext(resolveOptions({ url: 'http://server.invalid', token: 'token', ...options }), (event, ...args) => events.push({ event, args }), request);
  ctx.userId = 'me';
  ctx.connected = true;
  const receipts = new Receipts(ctx);
  const outbox = new Outbox(ctx, receipts.typing);
  const changes: Changes = new Changes(ctx, { outbox, receipts, gapOpened: () => sync.scheduleGapFill() });
  const sync = new Sync(ctx, changes);
  const reported = <E extends keyof ChatClientEvents>(event: E) => events.filter((entry) => entry.event === event).map((entry) => entry.args[0] as ChatClientEvents[E][0]);
  return { ctx, outbox, changes, sync, receipts, requests, events, reported };
}

export function message(conversationId: string, seq: number, senderId = 'bob', clientMsgId = `${conversationId}-c${seq}`): Message {
  return {
    id: `${conversationId}-m${seq}`,
    conversationId,
    seq,
    version: seq,
    senderId,
    clientMsgId,
    kind: 'text',
    body: `message ${seq}`,
    attachments: [],
    replyToId: null,
    threadRootId: null,
    thread: null,
    reactions: [],
    createdAt: '2026-01-01T00:00:00.000Z',
    editedAt: null,
    deletedAt: null,
  };
}

/** A direct conversation of `me` and `bob` whose last message is `lastSeq`, nobody having delivered or read anything. */
export function conversation(id: string, lastSeq: number): Conversation {
  const at = '2026-01-01T00:00:00.000Z';
  const member = (userId: string) => ({ userId, displayName: userId, role: 'member' as const, joinedAt: at, lastDeliveredSeq: 0, lastReadSeq: 0 });
  return { id, kind: 'direct', title: null, ownerId: null, members: [member('me'), member('bob')], lastSeq, version: lastSeq, lastActivityAt: at, createdAt: at };
}
