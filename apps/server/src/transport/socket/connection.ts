import type { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import proxyAddr from '@fastify/proxy-addr';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { ExtendedError } from 'socket.io';
import type { Config } from '../../config.ts';
import { AppError, toAppError } from '../../errors.ts';
import type { PresenceConnection } from '../../state/presence.ts';
import { consumeBudget } from '../budgets.ts';
import { bindClientEvents } from './dispatch.ts';
import { boundOutboundBuffer } from './slow-consumer.ts';
import type { ChatServer, ChatSocket } from './types.ts';

// setTimeout fires at once for delays above 2^31-1 ms; longer expiries are re-armed in steps.
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Longest a handshake waits for the node's first bus subscription (Redis away at start). */
const BUS_WAIT_MS = 2000;

/**
 * The socket lifecycle: authenticate the handshake, create or refresh the user, bind the protocol's
 * events, and end the session when the token expires. `connect_error.data` carries the same
 * `{ code, message, retryable }` a REST call would get.
 */
export function handleConnections(app: FastifyInstance, io: ChatServer): void {
  const clientAddress = addressResolver(app.config.trustProxy);
  io.use((socket, next) => {
    void (async () => {
      try {
        if (app.lifecycle.draining) throw new AppError('unavailable', 'This node is draining; connect to another one');
        // Before the token is even looked at, so a flood of garbage handshakes is limited too.
        const address = clientAddress(socket.request);
        await enforceConnectRate(app, address);
        const principal = await app.tokens.verify(socket.handshake.auth?.['token']);
        await app.services.users.ensure(principal);
        socket.data.principal = principal;
        socket.data.typingIn = new Set();
        socket.data.address = address;
        await registerPresence(app, socket);
        next();
      } catch (thrown) {
        const error = toAppError(thrown);
        app.metrics.connectionsRefused.inc({ code: error.code });
        if (error.code === 'internal') app.log.error({ err: thrown, socketId: socket.id }, 'socket handshake failed');
        const refusal: ExtendedError = Object.assign(new Error(error.message), { data: error.toWire() });
        next(refusal);
      }
    })();
  });

  io.on('connection', (socket) => {
    const { principal } = socket.data;
    // A revocation applied while this handshake was under way: the sweep that closed the user's
    // sockets could not see this one yet. Presence is released by the `connecting.closed` hook.
    if (app.revocations.isRevoked(principal.userId, principal.issuedAt)) {
      socket.emit('session:ending', { reason: 'token_revoked', message: 'The token was revoked: get a new one, then reconnect' });
      socket.disconnect(true);
      return;
    }
    const log = app.log.child({ socketId: socket.id, userId: principal.userId });
    app.metrics.connectedSockets.inc();
    log.info({ transport: socket.conn.transport.name, address: socket.handshake.address }, 'socket connected');

    const expiry = scheduleExpiry(socket);
    // Before the live path writes to it (the held packets below): from then on the node holds at
    // most SOCKET_MAX_BUFFERED_BYTES (plus one packet) of unsent data for it.
    const maxBufferedBytes = app.config.socket.maxBufferedBytes;
    boundOutboundBuffer(socket, maxBufferedBytes, (slow) => {
      app.metrics.slowConsumerDisconnects.inc({ transport: slow.transport });
      // The client reads the reason only if it catches up within the grace: this line is the record.
      log.warn({ ...slow, maxBufferedBytes }, 'slow consumer: disconnected');
      socket.emit('session:ending', { reason: 'slow_consumer', message: 'This connection fell too far behind reading; reconnect and resync' });
    });
    const room = userRoom(principal.userId);
    void socket.join(room);
    // In the same synchronous step as the join: what arrived while connecting, then the live path.
    app.nodeRouting?.local.release(room, socket);
    const connecting = socket.data.connecting!;
    delete socket.data.connecting;
    socket.conn.off('close', connecting.closed);
    bindClientEvents(socket, { app, principal, socket });
    const presence = { userId: principal.userId, connectionId: socket.id, nodeId: app.nodeId };
    connecting.announce().catch((error: unknown) => log.warn({ err: error }, 'presence: could not announce the user online'));

    socket.on('disconnect', (reason) => {
      clearTimeout(expiry.timer);
      // While draining, the entry stays: the device reconnects elsewhere within the presence bound,
      // and the reaper removes this node's entries without ever showing the user offline in between.
      if (!app.lifecycle.closing) unregisterPresence(app, presence, log);
      app.services.calls.deviceGone(principal.userId, socket.id).catch((error: unknown) => log.warn({ err: error }, 'could not end the calls of a disconnected device'));
      if (socket.data.typingIn.size > 0) {
        app.services.typing.stoppedByDisconnect(principal.userId, socket.data.typingIn).catch((error: unknown) => log.warn({ err: error }, 'could not clear typing state'));
      }
      app.metrics.connectedSockets.dec();
      log.info({ reason }, 'socket disconnected');
    });
  });
}

/**
 * Registers the connection in presence before the handshake completes: the routed fan-out finds a
 * socket's node through presence, so every fan-out looked up after the client saw `connect` reaches
 * it, and what was committed before is in the resync the client runs on connect. Until the
 * `connection` handler runs, LocalDelivery keeps what arrives for the socket.
 *
 * A store outage does not refuse the connection (counted and logged): the node registers all its
 * sockets again when Redis is back, and the client catches up through resync meanwhile. A client
 * that leaves before the handshake completed is unregistered.
 */
async function registerPresence(app: FastifyInstance, socket: ChatSocket): Promise<void> {
  // A client that left while its token and user were checked: nothing to register, and no close
  // event would come to take a registration back.
  if (socket.conn.readyState !== 'open') return;
  const connection = { userId: socket.data.principal.userId, connectionId: socket.id, nodeId: app.nodeId };
  const room = userRoom(connection.userId);
  let left = false;
  const connecting = {
    announce: () => Promise.resolve(),
    closed: () => {
      left = true;
      app.nodeRouting?.local.drop(room, socket.id);
      unregisterPresence(app, connection, app.log.child({ socketId: socket.id }));
    },
  };
  socket.data.connecting = connecting;
  // Listening before any wait: a client that leaves from here on is unregistered whatever step the
  // registration is at.
  socket.conn.once('close', connecting.closed);
  // Right after start: frames for this socket can arrive only once the node's channel is subscribed.
  // While Redis is unreachable the wait is bounded, as the registration below fails open.
  const bus = app.nodeRouting?.bus;
  if (bus && !bus.listening) await Promise.race([bus.subscribed, sleep(BUS_WAIT_MS)]);
  if (left) return;
  app.nodeRouting?.local.hold(room, socket.id);
  try {
    connecting.announce = (await app.services.presence.connected(connection)).announce;
  } catch (error) {
    app.metrics.presenceFailures.inc();
    app.log.warn({ err: error, socketId: socket.id }, 'presence: could not register connection');
  }
  // The client left while it was being registered: a registration and a removal are several store
  // steps each, and interleaved they can leave the connection registered, so the removal is issued
  // again, now after the registration.
  if (left) unregisterPresence(app, connection, app.log.child({ socketId: socket.id }));
}

/** Removes a connection from presence. Tracked: a shutdown right after a client left waits for it before the database closes. */
function unregisterPresence(app: FastifyInstance, connection: PresenceConnection, log: FastifyBaseLogger): void {
  app.lifecycle
    .track(() => app.services.presence.disconnected(connection))
    .catch((error: unknown) => {
      app.metrics.presenceFailures.inc();
      log.warn({ err: error }, 'presence: could not remove connection');
    });
}

/**
 * New connections per client address, one budget for the whole cluster (RATE_LIMIT_SOCKET_CONNECT,
 * off with RATE_LIMITS=false). Behind nginx the address is the client's, from X-Forwarded-For as far
 * as TRUST_PROXY believes it. A limiter outage allows the connection, as for the per-user budgets.
 */
function enforceConnectRate(app: FastifyInstance, address: string): Promise<void> {
  return consumeBudget(app, `connect:${address}`, app.config.rateLimits.socketConnect, 'connect', 'Too many new connections from this address');
}

/**
 * The client address of a handshake exactly as Fastify resolves `request.ip` for the same TRUST_PROXY
 * (fastify lib/request.js getTrustProxyFn): Socket.IO's own `handshake.address` is always the peer,
 * which behind nginx is nginx.
 */
function addressResolver(trust: Config['trustProxy']): (request: IncomingMessage) => string {
  if (trust === false) return (request) => request.socket.remoteAddress ?? 'unknown';
  const trusts = typeof trust === 'function' ? trust : trust === true ? () => true : proxyAddr.compile(trust.split(',').map((value) => value.trim()));
  return (request) => proxyAddr(request, trusts);
}

/** Every socket joins its user's room: a fan-out to a user reaches all their devices on all nodes. */
export function userRoom(userId: string): string {
  return `user:${userId}`;
}

function scheduleExpiry(socket: ChatSocket): { timer: NodeJS.Timeout | undefined } {
  const state: { timer: NodeJS.Timeout | undefined } = { timer: undefined };
  const { expiresAt } = socket.data.principal;
  const arm = () => {
    const remaining = expiresAt - Date.now();
    if (remaining > 0) {
      state.timer = setTimeout(arm, Math.min(remaining, MAX_TIMER_MS));
      return;
    }
    socket.emit('session:ending', { reason: 'token_expired', message: 'The token expired: refresh it and reconnect' });
    // A server-side disconnect: the client must not reconnect with the same expired token.
    socket.disconnect(true);
  };
  arm();
  return state;
}

/**
 * Tells every local socket to reconnect elsewhere and closes it. Closing the transport (not a
 * server-side disconnect) makes socket.io-client reconnect by itself, through the load balancer, to
 * another node. Engine.IO flushes the `session:ending` packet before it closes.
 */
export function sendSocketsElsewhere(io: ChatServer): void {
  for (const socket of io.of('/').sockets.values()) {
    socket.emit('session:ending', { reason: 'server_draining', message: 'This node is shutting down; reconnecting elsewhere' });
    socket.conn.close();
  }
}
