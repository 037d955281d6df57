import { clientEventSchemas, wireError, type Ack, type ClientEventName } from '@chat/protocol';
import { toAppError } from '../../errors.ts';
import { runOperation, type OperationContext } from '../operations.ts';
import type { ChatSocket } from './types.ts';

type AnyAck = (response: Ack<object>) => void;
const noAck: AnyAck = () => {};

/**
 * Binds every protocol event on a socket: runs it through `runOperation` (rate limit, zod schema,
 * operation), answers through the ack with `{ ok: true, ... }` or a catalogued error, and records the
 * outcome. Nothing a client sends can throw out of here: the work runs inside a try/catch and the
 * promise is never left unhandled. A socket that keeps going after being rate limited
 * (RATE_LIMIT_FLOOD_DISCONNECT refusals within FLOOD_WINDOW_MS) is disconnected with reason `rate_limited`.
 */
export function bindClientEvents(socket: ChatSocket, ctx: OperationContext): void {
  const { app } = ctx;
  const { metrics, lifecycle } = app;
  // Refusals counted over a window, not in a row: a flooder gets the odd request through as its
  // bucket refills, which must not reset its count.
  const flood = { refusals: 0, windowStart: 0 };

  const handle = async (event: ClientEventName, args: unknown[]): Promise<void> => {
    const last = args.at(-1);
    const ack = typeof last === 'function' ? (last as AnyAck) : noAck;
    const started = performance.now();
    let outcome = 'ok';
    try {
      if (lifecycle.closing) {
        outcome = 'unavailable';
        return ack({ ok: false, error: wireError('unavailable', 'This node is shutting down; retry after reconnecting') });
      }
      const payload = args.length > 1 || ack === noAck ? args[0] : undefined;
      const result = await lifecycle.track(() => runOperation(ctx, event, payload));
      ack({ ok: true, ...result });
    } catch (thrown) {
      const error = toAppError(thrown);
      outcome = error.code;

      if (error.code === 'internal') app.log.error({ err: thrown, event, socketId: socket.id, userId: ctx.principal.userId }, 'socket handler failed');
      ack({ ok: false, error: error.toWire() });
      if (error.code === 'rate_limited' && isFlooding(flood, app.config.rateLimits.floodDisconnectAfter)) {
        metrics.floodDisconnects.inc();
        socket.emit('session:ending', { reason: 'rate_limited', message: 'Too many requests after being rate limited' });
        socket.disconnect(true);
      }
    } finally {
      metrics.socketEvents.inc({ event, outcome });
      metrics.ackLatency.observe({ event }, (performance.now() - started) / 1000);
    }
  };

  // One catch-all listener, not one per event: a socket holds one closure here instead of thirty
  // (and no thirty-key listener table), which idle sockets pay for in memory.
  socket.onAny((event: unknown, ...args: unknown[]) => {
    // Object.hasOwn, not `in`: "constructor" or "__proto__" must not pass for a known event.
    if (typeof event === 'string' && Object.hasOwn(clientEventSchemas, event)) return void handle(event as ClientEventName, args);
    metrics.socketEvents.inc({ event: 'unknown', outcome: 'validation' });
    const last = args.at(-1);
    if (typeof last === 'function') {
      (last as AnyAck)({ ok: false, error: wireError('validation', `Unknown event "${String(event).slice(0, 64)}"`) });
    }
  });
}

const FLOOD_WINDOW_MS = 10_000;

function isFlooding(flood: { refusals: number; windowStart: number }, threshold: number): boolean {
  const now = Date.now();
  if (now - flood.windowStart > FLOOD_WINDOW_MS) {
    flood.windowStart = now;
    flood.refusals = 0;
  }
  flood.refusals += 1;
  return flood.refusals >= threshold;
}
