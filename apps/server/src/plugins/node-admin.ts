import type { AdminNodeSample, AdminNodeStatus } from '@chat/protocol';
import fp from 'fastify-plugin';
import serverPackage from '../../package.json' with { type: 'json' };
import type { Config } from '../config.ts';
import { NodeStatusSampler } from '../domain/node-status.ts';
import { AppError } from '../errors.ts';
import { MemoryNodeStatusStore, type NodeStatusStore } from '../state/node-status.ts';
import { RedisNodeStatusStore } from '../state/node-status-redis.ts';
import type { DrainRequest } from './lifecycle.ts';

/**
 * How often each node reports its status (and adds a sample to its history): every 2 s, or twice
 * per PRESENCE_NODE_TTL_MS when that is shorter, so a live node is never taken for dead.
 */
export function nodeStatusIntervalMs(ttlMs: number): number {
  return Math.min(2000, Math.floor(ttlMs / 2));
}

/** The operator's view of the cluster's nodes, answered by any node for all of them. */
export interface NodeAdmin {
  readonly intervalMs: number;
  /** Every live node's last report, sorted by id (without Redis: this node alone). */
  list(): Promise<AdminNodeStatus[]>;
  /** Each live node's samples of the last 10 minutes, oldest first. */
  history(): Promise<Record<string, AdminNodeSample[]>>;
  /**
   * Asks a live node (this one included) to drain as on SIGTERM. Throws `not_found` for a node that
   * is not live, `unavailable` when the node is listed but no subscriber received the request.
   */
  drain(nodeId: string, keyId: string): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    nodeAdmin: NodeAdmin;
  }
}

/**
 * Every {@link nodeStatusIntervalMs} the node publishes its status report to the shared store, from
 * start-up (onReady) until it closes, when it removes its entry: a node that stops cleanly leaves the
 * list at once, one that dies leaves it after PRESENCE_NODE_TTL_MS. It acts on drain requests from
 * the other nodes, which come through the cluster control channel.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const ttlMs = config.presence.nodeTtlMs;
    const intervalMs = nodeStatusIntervalMs(ttlMs);
    const store: NodeStatusStore = app.redis ? new RedisNodeStatusStore(app.redis, { keyPrefix: config.redis?.keyPrefix ?? 'chat:', ttlMs }) : new MemoryNodeStatusStore({ ttlMs });
    const sampler = new NodeStatusSampler(app.metrics, {
      nodeId: app.nodeId,
      version: serverPackage.version,
      startedAt: new Date(),
      draining: () => app.lifecycle.draining,
      ready: async () => !app.lifecycle.draining && Object.values(await app.lifecycle.checkDependencies(1000)).every((state) => state === 'up'),
      connections: () => {
        const sockets = app.io.of('/').sockets;
        const users = new Set<string>();
        for (const socket of sockets.values()) users.add(socket.data.principal.userId);
        return { sockets: sockets.size, users: users.size };
      },
    });

    let publishing: Promise<void> | null = null;
    let closed = false;
    // One warning per outage, not one per interval.
    let failing = false;
    const publish = (): Promise<void> => {
      if (publishing || closed) return publishing ?? Promise.resolve();
      publishing = sampler
        .sample()
        .then((report) => store.publish(report))
        .then(
          () => {
            if (failing) app.log.info('node status: reports published again');
            failing = false;
          },
          (error: unknown) => {
            if (!failing) app.log.warn({ err: error }, "node status: could not publish this node's report; retrying every interval");
            failing = true;
          },
        )
        .finally(() => (publishing = null));
      return publishing;
    };
    let timer: NodeJS.Timeout | undefined;
    // Not awaited: a node starts while Redis is away (its reports resume with Redis).
    app.addHook('onReady', async () => {
      void publish();
      timer = setInterval(() => void publish(), intervalMs);
      timer.unref();
    });

    const onDrain = (request: DrainRequest) => {
      app.log.info({ keyId: request.keyId, via: request.via }, 'drain requested through the admin API');
      if (!app.lifecycle.requestDrain(request)) return;
      // The drain starts on the next turn (requestDrain); the report after it says draining.
      setImmediate(() => void publish());
    };

    // A drain request travels on the cluster control channel, which every node hears; only the named
    // node acts on it, and its answer is what tells the caller the request arrived.
    app.control.handle('drain', (payload) => {
      const { nodeId, keyId, via } = payload as { nodeId: string } & DrainRequest;
      if (nodeId !== app.nodeId) return { accepted: false };
      onDrain({ keyId, via });
      return { accepted: true };
    });

    // Leaves the list at once when Redis answers; otherwise the entry ages out after the TTL (waiting
    // on a Redis that is away would hold the drain for its retries).
    app.addHook('preClose', async () => {
      closed = true;
      clearInterval(timer);
      sampler.stop();
      if (app.redis && app.redis.status !== 'ready') return;
      await publishing;
      await store.remove(app.nodeId).catch((error: unknown) => app.log.warn({ err: error }, "node status: could not remove this node's report"));
    });

    app.decorate<NodeAdmin>('nodeAdmin', {
      intervalMs,
      list: () => store.list(),
      history: () => store.history(),
      drain: async (nodeId, keyId) => {
        if (!(await store.list()).some((node) => node.id === nodeId)) throw new AppError('not_found', `No live node ${nodeId}`);
        const request = { keyId, via: app.nodeId };
        if (nodeId === app.nodeId) return onDrain(request);
        const { answers } = await app.control.request<{ accepted: boolean }>('drain', { nodeId, ...request });
        if (!answers.some(({ result }) => result.accepted)) throw new AppError('unavailable', `Node ${nodeId} did not receive the request (not subscribed right now); retry`);
      },
    });
  },
  { name: 'node-admin', dependencies: ['lifecycle', 'metrics', 'redis', 'realtime', 'control'] },
);
