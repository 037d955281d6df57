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
 * and no user who left stays shown online. Each tick also makes again the announcements that
 * PostgreSQL being away deferred (PresenceService.retryDeferred).
 */
const REREGISTER_BATCH = 200;

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const intervalMs = Math.max(250, Math.floor(config.presence.nodeTtlMs / 4));
    const failed = (error: unknown, what: string) => {
      app.metrics.presenceFailures.inc();
      app.log.warn({ err: error }, `presence: ${what} failed`);
    };
    // Sockets are registered REREGISTER_BATCH at a time: a failover or a reap re-registers every
    // socket of the node, and one at a time that outlasted the presence TTL under load.
    const reregister = async () => {
      const sockets = [...app.io.of('/').sockets.values()];
      for (let i = 0; i < sockets.length; i += REREGISTER_BATCH) {
        await Promise.all(
          sockets.slice(i, i + REREGISTER_BATCH).map(async (socket) => {
            const connection = { userId: socket.data.principal.userId, connectionId: socket.id, nodeId: app.nodeId };
            const { announce } = await app.services.presence.connected(connection);
            // A registration and a removal of one connection are several store steps each, and
            // interleaved they can leave the connection registered: a socket that left while it was
            // being registered again is removed again, now after the registration.
            if (socket.disconnected) await app.services.presence.disconnected(connection);
            else await announce();
          }),
        );
      }
    };
    // Work that may take long (re-registering, reaping, announcing) runs one piece at a time on this chain.
    let running: Promise<void> = Promise.resolve();
    const schedule = (work: () => Promise<void>, what: string) => {
      running = running.then(work).catch((error: unknown) => failed(error, what));
    };

    // The heartbeat has a timer of its own and never waits behind that work, so a node busy
    // re-registering thousands of sockets is not taken for dead by the others.
    let beating = false;
    const heartbeat = async () => {
      if (beating) return;
      beating = true;
      try {
        const { reaped } = await app.state.presence.heartbeat(app.nodeId);
        if (reaped) {
          app.log.warn('presence: this node had been reaped; registering its sockets again');
          schedule(reregister, 're-registration');
        }
      } catch (error) {
        failed(error, 'heartbeat');
      } finally {
        beating = false;
      }
    };

    // The masters as this node's client last learned them (ioredis refreshes its slot map on a
    // redirection, a lost connection and every few seconds); null on a single Redis and until the
    // cluster client is ready (before that ioredis lists its seeds, not the masters).
    const masters = () =>
      app.redis && isCluster(app.redis) && app.redis.status === 'ready'
        ? app.redis
            .nodes('master')
            .map((node) => `${node.options.host}:${node.options.port}`)
            .sort()
            .join(',')
        : null;
    let knownMasters = masters();
    const maintain = async () => {
      const current = masters();
      if (current !== null && knownMasters === null) knownMasters = current;
      if (current !== null && current !== knownMasters) {
        app.log.warn({ before: knownMasters, after: current }, 'presence: the Redis Cluster masters changed (failover); registering sockets again and replaying recent disconnects');
        await reregister();
        await app.services.presence.replayDisconnects();
        // Only once both succeeded: a replay that failed halfway runs again next tick.
        knownMasters = current;
      }
      const { deadNodes, wentOffline } = await app.state.presence.reapDeadNodes({ spare: app.nodeId });
      if (deadNodes.length > 0) app.log.info({ deadNodes, users: wentOffline.length }, 'presence: reaped dead nodes');
      await app.services.presence.reaped(wentOffline);
      await app.services.presence.retryDeferred();
      app.metrics.presenceDeferred.set(app.services.presence.deferredCount);
    };

    // A previous process under this NODE_ID (a restart within the TTL of its death) left connections
    // that no socket of ours holds: removed before this node serves, so they are never adopted.
    try {
      const predecessors = await app.state.presence.reapNode(app.nodeId);
      if (predecessors.length > 0) app.log.info({ users: predecessors.length }, 'presence: removed the connections a previous process under this node id left');
      await app.services.presence.reaped(predecessors);
    } catch (error) {
      failed(error, 'clearing what a previous process under this node id left');
    }
    // At most one maintenance pass waits on the chain: a slow one is not followed by a backlog.
    let maintenancePending = false;
    const tick = () => {
      void heartbeat();
      if (maintenancePending) return;
      maintenancePending = true;
      schedule(() => maintain().finally(() => (maintenancePending = false)), 'reaping');
    };
    const timer = setInterval(tick, intervalMs);
    timer.unref();
    tick();

    // The first 'ready' is the initial connection, unless that happened before this plugin listened.
    let firstReady = app.redis?.status !== 'ready';
    const onReady = () => {
      if (firstReady) {
        firstReady = false;
        return;
      }
      schedule(reregister, 're-registration');
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
