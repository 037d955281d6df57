import { clientEventSchemas, idSchema, SYSTEM_SENDER_ID, userIdSchema, type ClientEventName, type ClientEventResults, type ClientPayload } from '@chat/protocol';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiCaller } from '../../identity/api-caller.ts';
import { runOperation } from '../operations.ts';
import { keyRoute, type KeyRoute } from './key-routes.ts';

/**
 * Runs `event` exactly as `userId`'s own REST call would (same operation, schema, membership and
 * ownership rules, persistence and fan-out), except that the user's per-class budgets are not
 * spent: the caller is the trusted backend, limited per address like any REST caller.
 */
function actAs<E extends ClientEventName>(app: FastifyInstance, caller: ApiCaller, userId: string, event: E, payload: ClientPayload<E>): Promise<ClientEventResults[E]> {
  // A principal for this one call: no token stands behind it, so nothing reads its name or expiry.
  const principal = { userId, displayName: userId, issuedAt: Date.now(), expiresAt: Date.now() };
  return runOperation({ app, principal, socket: null, backend: caller }, event, payload);
}

const conversationParams = z.object({ conversationId: idSchema });
/** Who a message is posted as: a member of the conversation, or the system sender. */
const senderSchema = z.union([z.literal(SYSTEM_SENDER_ID), userIdSchema]);

/**
 * The backend API (`/v1/server/*`, SERVER_API_KEYS): a customer's servers act on behalf of their
 * users. Each route names the acting user and runs that user's operation (operations.ts), and its
 * audit line names that user; the bodies are the events' own payload schemas, less what the URL
 * carries, plus who acts.
 */
export const serverApiRoutes: readonly KeyRoute[] = [
  keyRoute({
    scope: 'server',
    method: 'POST',
    url: '/v1/server/conversations/direct',
    action: 'conversation:open-direct',
    summary: 'Open (or get) the direct conversation of two users; 201 when created',
    body: z.object({ userIds: z.array(clientEventSchemas['conversation:open-direct'].shape.userId).length(2) }).strict(),
    handler: async (app, { body, caller }) => {
      const [userId, otherId] = body.userIds as [string, string];
      await app.services.users.ensureIds([userId]);
      const result = await actAs(app, caller, userId, 'conversation:open-direct', { userId: otherId });
      return { status: result.created ? 201 : 200, result, audit: { as: userId } };
    },
  }),
  keyRoute({
    scope: 'server',
    method: 'POST',
    url: '/v1/server/conversations/groups',
    action: 'conversation:create-group',
    summary: 'Create a group owned by ownerId, with memberIds',
    body: clientEventSchemas['conversation:create-group'].extend({ ownerId: userIdSchema }),
    handler: async (app, { body: { ownerId, ...payload }, caller }) => {
      await app.services.users.ensureIds([ownerId]);
      return { status: 201, result: await actAs(app, caller, ownerId, 'conversation:create-group', payload), audit: { as: ownerId } };
    },
  }),
  // Listed before adding members: the key-API suite walks this list in order, and its examples
  // remove the fixture's member and add it back.
  keyRoute({
    scope: 'server',
    method: 'DELETE',
    url: '/v1/server/conversations/:conversationId/members/:userId',
    action: 'conversation:remove-member',
    summary: 'Remove a member from a group, as the group owner `as`',
    params: clientEventSchemas['conversation:remove-member'],
    querystring: z.object({ as: userIdSchema }).strict(),
    handler: async (app, { params, query, caller }) => ({ result: await actAs(app, caller, query.as, 'conversation:remove-member', params), audit: { as: query.as } }),
  }),
  keyRoute({
    scope: 'server',
    method: 'POST',
    url: '/v1/server/conversations/:conversationId/members',
    action: 'conversation:add-members',
    summary: 'Add members to a group, as the group owner `as`',
    params: conversationParams,
    body: clientEventSchemas['conversation:add-members'].omit({ conversationId: true }).extend({ as: userIdSchema }),
    handler: async (app, { params, body: { as, ...payload }, caller }) => ({
      result: await actAs(app, caller, as, 'conversation:add-members', { ...payload, ...params }),
      audit: { as },
    }),
  }),
  keyRoute({
    scope: 'server',
    method: 'POST',
    url: '/v1/server/conversations/:conversationId/messages',
    action: 'message:send',
    summary: `Post a message as the member \`as\`, or as "${SYSTEM_SENDER_ID}" into any conversation; idempotent per (as, clientMsgId): 201 when stored, 200 for a retry`,
    params: conversationParams,
    body: clientEventSchemas['message:send'].omit({ conversationId: true }).extend({ as: senderSchema }),
    handler: async (app, { params, body: { as, ...payload }, caller }) => {
      const result = await actAs(app, caller, as, 'message:send', { ...payload, ...params });
      return { status: result.duplicate ? 200 : 201, result, audit: { as, messageId: result.message.id } };
    },
  }),
  keyRoute({
    scope: 'server',
    method: 'POST',
    url: '/v1/server/presence',
    action: 'presence:list',
    summary: 'Presence of each listed user, whoever they share conversations with (invisible users look offline)',
    body: clientEventSchemas['presence:get'],
    handler: async (app, { body }) => ({ result: { presence: await app.services.presence.list(body.userIds) } }),
  }),
];
