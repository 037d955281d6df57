import { createAdapter, createShardedAdapter } from '@socket.io/redis-adapter';
import fp from 'fastify-plugin';
import { Server } from 'socket.io';
import type { Config } from '../config.ts';
import { connectionsKeyParts, type RedisClient } from '../state/index.ts';
import { handleConnections, userRoom } from '../transport/socket/connection.ts';
import { LocalDelivery } from '../transport/socket/local-delivery.ts';
import { NodeBus } from '../transport/socket/node-bus.ts';
import type { ChatServer } from '../transport/socket/types.ts';
import { closeRedis, createRedis } from './redis.ts';
import { stateKeyPrefix } from './state.ts';

declare module 'fastify' {
  interface FastifyInstance {
    io: ChatServer;
    /** The routed fan-out's parts (REDIS_ADAPTER=routed, the cluster default); null otherwise. */
    nodeRouting: Routing | null;
  }
}

export interface Routing {
  local: LocalDelivery;
  bus: NodeBus;
}

/**
 * Socket.IO on the Fastify HTTP server, and how a node reaches the others:
 * - `routed` (the default with Redis): Socket.IO keeps its in-memory adapter; fan-outs go through
 *   RoutedFanout, which publishes only to the nodes that hold a recipient, on this node's own channel
 *   (subscribed before the node accepts sockets).
 * - `classic` / `sharded`: @socket.io/redis-adapter, every node receives every broadcast.
 * - no Redis (single-node mode): the in-memory adapter alone.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const io: ChatServer = new Server(app.server, {
      path: '/socket.io/',
      serveClient: false,
      maxHttpBufferSize: config.limits.socketPayloadBytes,
      pingInterval: config.socket.pingIntervalMs,
      pingTimeout: config.socket.pingTimeoutMs,
      // An engine connection that has not joined a namespace (sent CONNECT) by then is closed.
      connectTimeout: config.socket.connectTimeoutMs,
      cors: config.corsOrigins ? { origin: config.corsOrigins, credentials: true } : { origin: false },
    });

    const adapterClients: RedisClient[] = [];
    let routing: Routing | null = null;
    const onError = (error: unknown) => {
      app.metrics.clusterPublishFailures.inc();
      app.log.warn({ err: error }, 'cluster bus command failed; local sockets still served');
    };
    if (config.redis?.adapter === 'routed') {
      const pub = createRedis(config.redis.target, app.log, 'bus-pub');
      // Subscriptions wait for the connection instead of failing: ioredis re-subscribes on reconnect.
      const sub = createRedis(config.redis.target, app.log, 'bus-sub', { maxRetriesPerRequest: null, shardedSubscribers: true });
      adapterClients.push(pub, sub);
      const local = new LocalDelivery(io);
      const bus = new NodeBus(pub, sub, {
        channelPrefix: `${config.redis.keyPrefix}bus:`,
        nodeId: app.nodeId,
        connections: connectionsKeyParts(stateKeyPrefix(config)),
        roomPrefix: userRoom(''),
        onError,
      });
      routing = { local, bus };
      // Not awaited, so a node starts while Redis is away (not ready meanwhile); the handshake waits
      // for the first subscription instead (see connection.ts).
      bus.listen((target, packet) => {
        app.metrics.fanoutFrames.inc({ direction: 'received' });
        local.deliver(target, packet);
      });
      app.lifecycle.addCheck('cluster bus', async () => {
        if (!bus.listening) throw new Error("not subscribed to this node's channel");
      });
    } else if (config.redis) {
      const pub = guardFireAndForget(createRedis(config.redis.target, app.log, 'adapter-pub'), ['publish', 'spublish'], onError);
      // Subscriptions wait for the connection instead of failing: ioredis re-subscribes on reconnect.
      const sub = guardFireAndForget(
        createRedis(config.redis.target, app.log, 'adapter-sub', { maxRetriesPerRequest: null, shardedSubscribers: config.redis.adapter === 'sharded' }),
        ['psubscribe', 'subscribe', 'punsubscribe', 'unsubscribe', 'ssubscribe', 'sunsubscribe'],
        onError,
      );
      adapterClients.push(pub, sub);
      const key = `${config.redis.keyPrefix}socket.io`;
      // Sharded pub/sub (Redis >= 7, SSUBSCRIBE/SPUBLISH) spreads channels over a Redis Cluster's
      // shards instead of broadcasting every message to every shard.
      io.adapter(config.redis.adapter === 'sharded' ? createShardedAdapter(pub, sub, { channelPrefix: key }) : createAdapter(pub, sub, { key }));
    }

    app.decorate('io', io);
    app.decorate('nodeRouting', routing);
    handleConnections(app, io);

    // Before the HTTP server stops: close engine connections, or server.close() would wait on them.
    app.addHook('preClose', async () => {
      // Closing without a drain (tests, start-up failures): the same rules as the last drain step.
      app.lifecycle.stopAcceptingWork();
      io.local.disconnectSockets(true);
      io.engine.close();
    });
    app.addHook('onClose', async () => {
      await io.close();
      // The fan-outs of the last writes (a drain lets in-flight ones finish) still reach the other nodes.
      await routing?.bus.settled();
      await Promise.all(adapterClients.map(closeRedis));
    });
  },
  { name: 'realtime', dependencies: ['lifecycle', 'auth', 'metrics'] },
);

/**
 * The redis adapter sends these commands without awaiting them (fire and forget), so while Redis is
 * away each would become an unhandled rejection. Publishing to the cluster bus must never throw into a
 * request: failures are counted and logged here, and clients catch up through resync. Written by hand
 * because the adapter offers no hook for it.
 */
type FireAndForget = 'publish' | 'spublish' | 'psubscribe' | 'subscribe' | 'punsubscribe' | 'unsubscribe' | 'ssubscribe' | 'sunsubscribe';

function guardFireAndForget(client: RedisClient, methods: FireAndForget[], onError: (error: unknown) => void): RedisClient {
  const target = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  for (const method of methods) {
    const original = target[method]!.bind(client);
    target[method] = (...args: unknown[]) =>
      original(...args).catch((error: unknown) => {
        onError(error);
        return 0;
      });
  }
  return client;
}
