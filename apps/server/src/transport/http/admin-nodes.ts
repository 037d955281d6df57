import { z } from 'zod';
import { NODE_ID } from '../../config.ts';
import { keyRoute, type KeyRoute } from './key-routes.ts';

const nodeParams = z.object({ id: z.string().regex(NODE_ID, 'a node id: letters, digits, dot, dash or underscore, at most 64') });

/** The operator's console: the cluster's nodes, as any node sees them, and draining one. */
export const adminNodeRoutes: KeyRoute[] = [
  keyRoute({
    scope: 'admin',
    method: 'GET',
    url: '/v1/admin/nodes',
    action: 'nodes.list',
    summary: 'Every live node with its status: readiness, drain, sockets, users, load and latency of the last 2 s, sorted by id',
    handler: async (app) => ({ result: { nodes: await app.nodeAdmin.list() } }),
  }),
  keyRoute({
    scope: 'admin',
    method: 'GET',
    url: '/v1/admin/nodes/history',
    action: 'nodes.history',
    summary: "Each live node's samples of the last 10 minutes (one per 2 s, at most 300), oldest first: sockets, messages in and out per second, ack p99",
    handler: async (app) => ({ result: { intervalMs: app.nodeAdmin.intervalMs, nodes: await app.nodeAdmin.history() } }),
  }),
  keyRoute({
    scope: 'admin',
    method: 'POST',
    url: '/v1/admin/nodes/:id/drain',
    action: 'nodes.drain',
    summary: 'Drains a live node exactly as SIGTERM does (its sockets reconnect to the others; the process exits when done); 202, also when it already drains; 404 for an unknown or dead node',
    params: nodeParams,
    handler: async (app, { params, caller }) => {
      await app.nodeAdmin.drain(params.id, caller.keyId);
      return { status: 202, result: { node: params.id, draining: true } };
    },
  }),
];
