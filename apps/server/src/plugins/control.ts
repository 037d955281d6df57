import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { LocalControl, RedisControl, type ClusterControl } from '../transport/cluster-control.ts';
import { closeRedis, createRedis } from './redis.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Requests every node answers (operators' actions); this node alone without Redis. */
    control: ClusterControl;
  }
}

/**
 * The cluster's control channel. It publishes on the shared state connection and listens on a
 * connection of its own (a subscriber runs no other commands); requests are rare, whatever the
 * Socket.IO adapter is.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    if (!config.redis || !app.redis) {
      app.decorate<ClusterControl>('control', new LocalControl(app.nodeId));
      return;
    }
    const sub = createRedis(config.redis.target, app.log, 'control-sub', { maxRetriesPerRequest: null, shardedSubscribers: true });
    const control = new RedisControl(app.redis, sub, {
      channelPrefix: `${config.redis.keyPrefix}bus:`,
      nodeId: app.nodeId,
      onError: (error) => app.log.warn({ err: error }, 'cluster control channel: command failed'),
    });
    app.decorate<ClusterControl>('control', control);
    app.lifecycle.addCheck('cluster control', async () => {
      if (!control.listening) throw new Error('not subscribed to the control channel');
    });
    app.addHook('onClose', async () => {
      await control.close();
      await closeRedis(sub);
    });
  },
  { name: 'control', dependencies: ['lifecycle', 'redis'] },
);
