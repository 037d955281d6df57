import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { sendSocketsElsewhere } from './transport/socket/connection.ts';

/**
 * Graceful drain, in the order that loses nothing:
 * 1. readiness turns false and new connections are refused (the load balancer stops sending traffic);
 * 2. after DRAIN_DELAY_MS (time for the balancer to notice), connected sockets' new events are refused
 *    with `unavailable` (retryable) and in-flight writes finish, so every ok-ack still goes out;
 * 3. sockets are told `session:ending` / `server_draining` and closed, so clients reconnect elsewhere;
 * 4. the app closes Socket.IO, the HTTP server, Redis and the database.
 * The caller bounds the whole sequence with SHUTDOWN_TIMEOUT_MS.
 */
export async function drainAndClose(app: FastifyInstance): Promise<void> {
  const { lifecycle } = app;
  lifecycle.startDraining();
  app.log.info({ connected: app.io.of('/').sockets.size }, 'draining');
  if (app.config.shutdown.drainDelayMs > 0) await sleep(app.config.shutdown.drainDelayMs);
  lifecycle.stopAcceptingWork();
  await lifecycle.idle();
  sendSocketsElsewhere(app.io);
  await app.close();
}
