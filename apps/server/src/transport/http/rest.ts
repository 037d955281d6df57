import { clientEventSchemas, cursorSchema, deleteScopeSchema, idSchema, limits, userIdSchema, emojiSchema, type ClientEventName } from '@chat/protocol';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { routeSchema } from './route-schema.ts';
import { runOperation } from '../operations.ts';
import { uploadRoutes } from './upload-routes.ts';

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RestRoute {
  method: Method;
  url: string;
  event: ClientEventName;
  summary: string;
  params?: z.ZodObject;
  querystring?: z.ZodObject;
  /** Fields of the event payload that travel in the body (the rest come from the URL). */
  body?: z.ZodObject;
  /** Payload fields implied by the route itself, e.g. a reaction's action. */
  fixed?: Record<string, unknown>;
  /** Status for a successful answer; 200 unless said. */
  status?: (result: Record<string, unknown>) => number;
}

const conversationParams = z.object({ conversationId: idSchema });
const messageParams = z.object({ messageId: idSchema });
const scheduledParams = z.object({ scheduledId: idSchema });
const pageQuery = z.object({ limit: z.coerce.number().int().min(1).max(limits.pageSize).optional() });

/** The event's payload schema without the fields the URL carries, for the body's documentation and first check. */
function bodyOf(event: ClientEventName, ...urlFields: string[]): z.ZodObject {
  const { shape } = clientEventSchemas[event] as z.ZodObject;
  return z.object(Object.fromEntries(Object.entries(shape).filter(([key]) => !urlFields.includes(key)))).strict();
}

/**
 * The REST fallback: every operation a client needs without a socket, each mapped onto the same
 * operation a socket event runs (operations.ts), so validation, authorization, persistence and the
 * real-time fan-out are shared. The URL's fields and the body merge into the event's payload, which
 * the event's own zod schema validates.
 */
export const routes: readonly RestRoute[] = [
  {
    method: 'GET',
    url: '/v1/conversations',
    event: 'conversation:list',
    summary: 'My conversations by last activity, with last message and unread count; ?archived=true for the archived ones',
    querystring: pageQuery.extend({
      cursor: cursorSchema.optional(),
      archived: z
        .enum(['true', 'false'])
        .transform((v) => v === 'true')
        .optional(),
    }),
  },
  {
    method: 'POST',
    url: '/v1/conversations/direct',
    event: 'conversation:open-direct',
    summary: 'Open (or get) the direct conversation with a user',
    body: bodyOf('conversation:open-direct'),
    status: (r) => (r['created'] ? 201 : 200),
  },
  { method: 'POST', url: '/v1/conversations/groups', event: 'conversation:create-group', summary: 'Create a group; the caller owns it', body: bodyOf('conversation:create-group'), status: () => 201 },
  { method: 'GET', url: '/v1/conversations/:conversationId', event: 'conversation:get', summary: 'One conversation with its members and their watermarks', params: conversationParams },
  {
    method: 'PATCH',
    url: '/v1/conversations/:conversationId',
    event: 'conversation:rename',
    summary: 'Rename a group (owner)',
    params: conversationParams,
    body: bodyOf('conversation:rename', 'conversationId'),
  },
  {
    method: 'POST',
    url: '/v1/conversations/:conversationId/members',
    event: 'conversation:add-members',
    summary: 'Add members to a group (owner)',
    params: conversationParams,
    body: bodyOf('conversation:add-members', 'conversationId'),
  },
  {
    method: 'DELETE',
    url: '/v1/conversations/:conversationId/members/:userId',
    event: 'conversation:remove-member',
    summary: 'Remove a member from a group (owner)',
    params: conversationParams.extend({ userId: userIdSchema }),
  },
  { method: 'POST', url: '/v1/conversations/:conversationId/leave', event: 'conversation:leave', summary: 'Leave a group', params: conversationParams },
  {
    method: 'GET',
    url: '/v1/conversations/:conversationId/messages',
    event: 'history:fetch',
    summary: 'History by seq cursor (before or after), ascending seq',
    params: conversationParams,
    querystring: pageQuery.extend({ before: z.coerce.number().int().min(0).optional(), after: z.coerce.number().int().min(0).optional() }),
  },
  {
    method: 'POST',
    url: '/v1/conversations/:conversationId/messages',
    event: 'message:send',
    summary: 'Send a message (idempotent per clientMsgId; 201 when stored, 200 for a retry)',
    params: conversationParams,
    body: bodyOf('message:send', 'conversationId'),
    status: (r) => (r['duplicate'] ? 200 : 201),
  },
  {
    method: 'POST',
    url: '/v1/conversations/:conversationId/receipts',
    event: 'receipt:mark',
    summary: 'Move my delivered/read watermarks forward',
    params: conversationParams,
    body: bodyOf('receipt:mark', 'conversationId'),
  },
  { method: 'GET', url: '/v1/conversations/:conversationId/typing', event: 'typing:list', summary: 'Who is typing now', params: conversationParams },
  { method: 'PUT', url: '/v1/conversations/:conversationId/typing', event: 'typing:set', summary: 'Set my typing state', params: conversationParams, body: bodyOf('typing:set', 'conversationId') },
  { method: 'PATCH', url: '/v1/messages/:messageId', event: 'message:edit', summary: 'Edit my message (history kept)', params: messageParams, body: bodyOf('message:edit', 'messageId') },
  {
    method: 'DELETE',
    url: '/v1/messages/:messageId',
    event: 'message:delete',
    summary: 'Delete for everyone (sender; leaves a tombstone) or for me',
    params: messageParams,
    querystring: z.object({ scope: deleteScopeSchema.default('everyone') }),
  },
  {
    method: 'PUT',
    url: '/v1/messages/:messageId/reactions/:emoji',
    event: 'message:react',
    summary: 'Add my reaction',
    params: messageParams.extend({ emoji: emojiSchema }),
    fixed: { action: 'add' },
  },
  {
    method: 'DELETE',
    url: '/v1/messages/:messageId/reactions/:emoji',
    event: 'message:react',
    summary: 'Remove my reaction',
    params: messageParams.extend({ emoji: emojiSchema }),
    fixed: { action: 'remove' },
  },
  {
    method: 'GET',
    url: '/v1/search/messages',
    event: 'message:search',
    summary: 'Ranked full-text search of my conversations\' messages (web-search syntax: words, "phrases", -exclusions), with highlight ranges',
    querystring: bodyOf('message:search', 'limit', 'hasAttachment').extend({
      limit: z.coerce.number().int().min(1).max(limits.searchPage).optional(),
      hasAttachment: z
        .enum(['true', 'false'])
        .transform((v) => v === 'true')
        .optional(),
    }),
  },
  {
    method: 'GET',
    url: '/v1/messages/:rootId/thread',
    event: 'thread:fetch',
    summary: "A thread's root and its replies after a seq (ascending), with my read state of it",
    params: z.object({ rootId: idSchema }),
    querystring: pageQuery.extend({ after: z.coerce.number().int().min(0).optional() }),
  },
  {
    method: 'POST',
    url: '/v1/messages/:rootId/thread/read',
    event: 'thread:mark-read',
    summary: 'Move my read watermark of a thread forward (to a reply seq)',
    params: z.object({ rootId: idSchema }),
    body: bodyOf('thread:mark-read', 'rootId'),
  },
  {
    method: 'GET',
    url: '/v1/conversations/:conversationId/threads',
    event: 'thread:list',
    summary: "A conversation's threads, the most recently replied first, with my unread count in each",
    params: conversationParams,
    querystring: pageQuery.extend({ cursor: cursorSchema.optional() }),
  },
  { method: 'POST', url: '/v1/sync', event: 'sync:changes', summary: 'Everything changed since the versions I hold (resync)', body: bodyOf('sync:changes') },
  {
    method: 'PUT',
    url: '/v1/conversations/:conversationId/mute',
    event: 'conversation:mute',
    summary: 'Mute or unmute a conversation for me (no notifications while muted)',
    params: conversationParams,
    body: bodyOf('conversation:mute', 'conversationId'),
  },
  {
    method: 'PUT',
    url: '/v1/conversations/:conversationId/archive',
    event: 'conversation:archive',
    summary: 'Archive or unarchive a conversation for me (out of my default list until a new message, unless muted)',
    params: conversationParams,
    body: bodyOf('conversation:archive', 'conversationId'),
  },
  {
    method: 'POST',
    url: '/v1/conversations/:conversationId/scheduled-messages',
    event: 'message:schedule',
    summary: 'Schedule a message for sendAt (idempotent per clientMsgId; 201 when stored, 200 for a retry)',
    params: conversationParams,
    body: bodyOf('message:schedule', 'conversationId'),
    status: (r) => (r['duplicate'] ? 200 : 201),
  },
  {
    method: 'GET',
    url: '/v1/scheduled-messages',
    event: 'message:scheduled-list',
    summary: 'My pending scheduled messages, soonest first; ?conversationId= for one conversation',
    querystring: pageQuery.extend({ conversationId: idSchema.optional(), cursor: z.string().max(200).optional() }),
  },
  {
    method: 'PATCH',
    url: '/v1/scheduled-messages/:scheduledId',
    event: 'message:scheduled-edit',
    summary: 'Change the body or time of a pending scheduled message of mine',
    params: scheduledParams,
    body: bodyOf('message:scheduled-edit', 'scheduledId'),
  },
  {
    method: 'DELETE',
    url: '/v1/scheduled-messages/:scheduledId',
    event: 'message:scheduled-cancel',
    summary: 'Cancel a pending scheduled message of mine (it is never sent)',
    params: scheduledParams,
  },
  {
    method: 'GET',
    url: '/v1/notifications',
    event: 'notification:list',
    summary: 'My notifications, newest first, with my unread count',
    querystring: pageQuery.extend({
      cursor: cursorSchema.optional(),
      unreadOnly: z
        .enum(['true', 'false'])
        .transform((v) => v === 'true')
        .optional(),
    }),
  },
  {
    method: 'POST',
    url: '/v1/notifications/read',
    event: 'notification:mark-read',
    summary: 'Mark notifications read: { notificationIds } or { all: true }',
    body: z.object({ notificationIds: z.array(idSchema).optional(), all: z.literal(true).optional() }).strict(),
  },
  { method: 'DELETE', url: '/v1/notifications/:notificationId', event: 'notification:delete', summary: 'Delete one of my notifications', params: z.object({ notificationId: idSchema }) },
  { method: 'GET', url: '/v1/calls/:callId', event: 'call:get', summary: 'A call I am a party of (calls themselves are placed over the socket)', params: z.object({ callId: idSchema }) },
  ...uploadRoutes,
];

export async function restRoutes(app: FastifyInstance): Promise<void> {
  const typed = app.withTypeProvider<ZodTypeProvider>();
  for (const route of routes) {
    typed.route({
      method: route.method,
      url: route.url,
      schema: routeSchema({ ...route, tag: route.url.split('/')[2] ?? 'v1', security: 'bearer' }),
      preHandler: app.authenticate,
      handler: async (request, reply) => {
        const principal = request.principal!;
        await app.services.users.ensure(principal);
        const payload = {
          ...(request.params as object),
          ...(request.query as object),
          ...(request.body as object | undefined),
          ...route.fixed,
        };
        const result = (await runOperation({ app, principal, socket: null }, route.event, payload)) as Record<string, unknown>;
        reply.code(route.status?.(result) ?? 200);
        return { ok: true, ...result };
      },
    });
  }
}
