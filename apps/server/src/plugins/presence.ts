import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { isCluster } from '../state/index.ts';

/**
 * Keeps this node's presence entries alive and cleans up after dead nodes. Every node heartbeats and
 * reaps every `nodeTtlMs / 4`, so a node killed with SIGKILL has its users shown offline within
 * `nodeTtlMs` plus one interval (20 s + 5 s by default), unless they reconnected elsewhere meanwhile.
 *
 * If this node was itself reaped (a long pause, or Redis unreachable for longer than the TTL) or
 * Redis lost its data (restart without persistence), its sockets are registered again. On a Redis
 * Cluster, when the set of masters changes (a failover), the node registers its sockets again and
 * replays its recent disconnects, which the failover may have lost: no user it holds goes missing,
 * and no user who left stays shown online.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const intervalMs = Math.max(250, Math.floor(config.presence.nodeTtlMs / 4));
    const reregister = async () => {
      for (const socket of app.io.of('/').sockets.values()) {
        const { announce } = await app.services.presence.connected({ userId: socket.data.principal.userId, connectionId: socket.id, nodeId: app.nodeId });
        await announce();
      }
    };
    // The masters as this node's client last learned them (ioredis refreshes its slot map on a
    // redirection, a lost connection and every few seconds); '' on a single Redis.
    const masters = () => (app.redis && isCluster(app.redis) ? app.redis.nodes('master').map((node) => `${node.options.host}:${node.options.port}`).sort().join(',') : '');
    let knownMasters = masters();
    const tick = async () => {
      try {
        const current = masters();
        if (current !== knownMasters) {
          app.log.warn({ before: knownMasters, after: current }, 'presence: the Redis Cluster masters changed (failover); registering sockets again and replaying recent disconnects');
          await reregister();
          await app.services.presence.replayDisconnects();
          // Only once both succeeded: a replay that failed halfway runs again next tick.
          knownMasters = current;
        }
        const { reaped } = await app.state.presence.heartbeat(app.nodeId);
        if (reaped) {
          app.log.warn('presence: this node had been reaped; registering its sockets again');
          await reregister();
        }
        const { deadNodes, wentOffline } = await app.state.presence.reapDeadNodes();
        if (deadNodes.length > 0) app.log.info({ deadNodes, users: wentOffline.length }, 'presence: reaped dead nodes');
        await app.services.presence.reaped(wentOffline);
      } catch (error) {
        app.metrics.presenceFailures.inc();
        app.log.warn({ err: error }, 'presence: heartbeat or reaping failed');
      }
    };
    // A previous process under this NODE_ID (a restart within the TTL of its death) left connections
    // that no socket of ours holds: removed before this node serves, so they are never adopted.
    try {
      const predecessors = await app.state.presence.reapNode(app.nodeId);
      if (predecessors.length > 0) app.log.info({ users: predecessors.length }, 'presence: removed the connections a previous process under this node id left');
      await app.services.presence.reaped(predecessors);
    } catch (error) {
      app.metrics.presenceFailures.inc();
      app.log.warn({ err: error }, 'presence: could not clear what a previous process under this node id left');
    }
    let running: Promise<void> = Promise.resolve();
    const timer = setInterval(() => {
      running = running.then(tick);
    }, intervalMs);
    timer.unref();
    void tick();

    // The first 'ready' is the initial connection, unless that happened before this plugin listened.
    let firstReady = app.redis?.status !== 'ready';
    const onReady = () => {
      if (firstReady) {
        firstReady = false;
        return;
      }
      running = running.then(reregister).catch((error: unknown) => app.log.warn({ err: error }, 'presence: re-registration failed'));
    };
    app.redis?.on('ready', onReady);

    app.addHook('preClose', async () => {
      clearInterval(timer);
      app.redis?.off('ready', onReady);
      await running;
    });
  },
  { name: 'presence', dependencies: ['services', 'realtime', 'state'] },
);
