import { clientEventSchemas, type ClientEventName, type ClientEventResults, type ParsedPayload } from '@chat/protocol';
import type { FastifyInstance } from 'fastify';
import { AppError, parseWith } from '../errors.ts';
import type { ApiCaller } from '../identity/api-caller.ts';
import type { Principal } from '../identity/principal.ts';
import { enforceRateLimit } from './budgets.ts';
import type { ChatSocket } from './socket/types.ts';
import { uploadOperations } from './upload-operations.ts';

export interface OperationContext {
  app: FastifyInstance;
  principal: Principal;
  /** The socket the call came on; null for REST. */
  socket: ChatSocket | null;
  /**
   * Set when a customer's backend acts as `principal` (`/v1/server`): the user's own per-class
   * budgets are not spent (the backend is trusted and limited per address like any REST caller);
   * every other rule applies as if the user had called.
   */
  backend?: ApiCaller;
}

/**
 * The product's API, once: one entry per client event of the protocol, each a thin call into the
 * domain services. Socket handlers and REST routes both run these, so they share validation,
 * authorization, persistence and fan-out. A missing or mistyped entry does not compile.
 */
export type Operations = {
  [E in ClientEventName]: (ctx: OperationContext, payload: ParsedPayload<E>) => Promise<ClientEventResults[E]>;
};

export const operations: Operations = {
  'session:info': async ({ app, principal, socket }) => ({
    user: { id: principal.userId, displayName: principal.displayName },
    nodeId: app.nodeId,
    socketId: socket?.id ?? '',
    expiresAt: new Date(principal.expiresAt).toISOString(),
  }),

  'conversation:open-direct': ({ app, principal }, { userId }) => app.services.conversations.openDirect(principal.userId, userId),
  'conversation:create-group': async ({ app, principal }, { title, memberIds }) => ({
    conversation: await app.services.conversations.createGroup(principal.userId, title, memberIds),
  }),
  'conversation:add-members': async ({ app, principal }, { conversationId, userIds }) => ({
    conversation: await app.services.conversations.addMembers(principal.userId, conversationId, userIds),
  }),
  'conversation:remove-member': async ({ app, principal }, { conversationId, userId }) => ({
    conversation: await app.services.conversations.removeMember(principal.userId, conversationId, userId),
  }),
  'conversation:rename': async ({ app, principal }, { conversationId, title }) => ({
    conversation: await app.services.conversations.rename(principal.userId, conversationId, title),
  }),
  'conversation:leave': async ({ app, principal }, { conversationId }) => {
    await app.services.conversations.leave(principal.userId, conversationId);
    return { conversationId };
  },
  'conversation:get': async ({ app, principal }, { conversationId }) => ({
    conversation: await app.services.conversations.get(principal.userId, conversationId),
  }),
  'conversation:list': ({ app, principal }, { cursor, limit, archived }) => app.services.conversations.list(principal.userId, cursor, limit, archived),

  'message:send': async ({ app, principal, socket }, payload) => {
    const result = await app.services.messages.send(principal.userId, { ...payload, origin: socket?.id });
    // Only a device that said it was typing here has typing state to clear: one store call less per
    // message for all the others (REST callers cannot say, so theirs is always cleared).
    if (!socket || socket.data.typingIn.delete(payload.conversationId)) app.services.typing.stoppedBySend(principal.userId, payload.conversationId);
    return result;
  },
  'message:edit': async ({ app, principal }, { messageId, body }) => ({ message: await app.services.messages.edit(principal.userId, messageId, body) }),
  'message:delete': async ({ app, principal }, { messageId, scope }) => ({ message: await app.services.messages.delete(principal.userId, messageId, scope) }),
  'message:react': async ({ app, principal }, { messageId, emoji, action }) => ({
    message: await app.services.messages.react(principal.userId, messageId, emoji, action),
  }),

  'typing:set': async ({ app, principal, socket }, { conversationId, typing }) => {
    await app.services.typing.set(principal.userId, conversationId, typing);
    // Remembered per socket so a disconnect can end this device's typing at once.
    if (typing) socket?.data.typingIn.add(conversationId);
    else socket?.data.typingIn.delete(conversationId);
    return { conversationId, typing };
  },
  'presence:set-status': async ({ app, principal }, { status }) => ({ status: await app.services.presence.setStatus(principal.userId, status) }),
  'presence:get': async ({ app, principal }, { userIds }) => ({ presence: await app.services.presence.get(principal.userId, userIds) }),
  'typing:list': async ({ app, principal }, { conversationId }) => ({
    conversationId,
    userIds: await app.services.typing.list(principal.userId, conversationId),
  }),

  'receipt:mark': async ({ app, principal, socket }, payload) => ({ receipt: await app.services.receipts.mark(principal.userId, payload, socket?.id) }),
  'history:fetch': ({ app, principal }, payload) => app.services.messages.history(principal.userId, payload),
  'sync:changes': ({ app, principal }, payload) => app.services.sync.changes(principal.userId, payload),
  'message:search': ({ app, principal }, query) => app.services.search.search(principal.userId, query),
  'thread:fetch': ({ app, principal }, query) => app.services.threads.fetch(principal.userId, query),
  'thread:list': ({ app, principal }, query) => app.services.threads.list(principal.userId, query),
  'thread:mark-read': ({ app, principal, socket }, input) => app.services.threads.markRead(principal.userId, input, socket?.id),

  'notification:list': ({ app, principal }, query) => app.services.notificationInbox.list(principal.userId, query),
  'notification:mark-read': ({ app, principal, socket }, which) => app.services.notificationInbox.markRead(principal.userId, which, socket?.id),
  'notification:delete': ({ app, principal, socket }, { notificationId }) => app.services.notificationInbox.delete(principal.userId, notificationId, socket?.id),
  'conversation:mute': ({ app, principal, socket }, { conversationId, muted }) => app.services.notificationInbox.mute(principal.userId, conversationId, muted, socket?.id),
  'conversation:archive': ({ app, principal, socket }, { conversationId, archived }) => app.services.conversations.archive(principal.userId, conversationId, archived, socket?.id),

  'message:schedule': ({ app, principal, socket }, payload) => app.services.scheduled.schedule(principal.userId, { ...payload, origin: socket?.id }),
  'message:scheduled-list': ({ app, principal }, query) => app.services.scheduled.list(principal.userId, query),
  'message:scheduled-edit': ({ app, principal, socket }, { scheduledId, ...change }) => app.services.scheduled.edit(principal.userId, scheduledId, change, socket?.id),
  'message:scheduled-cancel': ({ app, principal, socket }, { scheduledId }) => app.services.scheduled.cancel(principal.userId, scheduledId, socket?.id),

  'call:invite': async ({ app, principal, socket }, { calleeId, media }) => ({
    call: await app.services.calls.invite(principal.userId, deviceOf(socket), calleeId, media),
  }),
  'call:accept': async ({ app, principal, socket }, { callId }) => ({ call: await app.services.calls.accept(principal.userId, deviceOf(socket), callId) }),
  'call:reject': async ({ app, principal, socket }, { callId }) => ({ call: await app.services.calls.reject(principal.userId, callId, socket?.id) }),
  'call:cancel': async ({ app, principal, socket }, { callId }) => ({ call: await app.services.calls.cancel(principal.userId, callId, socket?.id) }),
  'call:end': async ({ app, principal, socket }, { callId }) => ({ call: await app.services.calls.end(principal.userId, callId, socket?.id) }),
  'call:signal': async ({ app, principal, socket }, { callId, signal }) => {
    await app.services.calls.signal(principal.userId, deviceOf(socket), callId, signal);
    return { callId };
  },
  'call:get': async ({ app, principal }, { callId }) => ({ call: await app.services.calls.get(principal.userId, callId) }),

  ...uploadOperations,
};

/** Placing, answering and signaling a call happen on a device: its socket is where the peer's signals go. */
function deviceOf(socket: ChatSocket | null): string {
  if (!socket) throw new AppError('validation', 'Calls are placed, answered and signaled over a socket connection, not REST');
  return socket.id;
}

/**
 * The one way in for both transports: the caller's budget for the event's class (not for a backend
 * acting as the user), then the event's schema, then the operation. The budget comes first so a
 * flood of invalid payloads is limited too.
 */
export async function runOperation<E extends ClientEventName>(ctx: OperationContext, event: E, raw: unknown): Promise<ClientEventResults[E]> {
  if (!ctx.backend) await enforceRateLimit(ctx.app, ctx.principal.userId, event);
  const payload = parseWith(clientEventSchemas[event], raw);
  const operation = operations[event] as (ctx: OperationContext, payload: unknown) => Promise<ClientEventResults[E]>;
  return operation(ctx, payload);
}
