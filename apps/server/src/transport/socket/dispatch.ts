import { clientEventSchemas, wireError, type Ack, type ClientEventName } from '@chat/protocol';
import { describeZodError, toAppError } from '../../errors.ts';
import type { OperationContext, Operations } from '../operations.ts';
import type { ChatSocket } from './types.ts';

type AnyAck = (response: Ack<object>) => void;
const noAck: AnyAck = () => {};

/**
 * Binds every protocol event on a socket: validates the payload with the event's zod schema, runs the
 * handler, answers through the ack with `{ ok: true, ... }` or a catalogued error, and records the
 * outcome. Nothing a client sends can throw out of here: the handler runs inside a try/catch and the
 * promise is never left unhandled.
 */
export function bindClientEvents(socket: ChatSocket, ctx: OperationContext, handlers: Operations): void {
  const { app } = ctx;
  const { metrics, lifecycle } = app;

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
      const parsed = clientEventSchemas[event].safeParse(args.length > 1 || ack === noAck ? args[0] : undefined);
      if (!parsed.success) {
        outcome = 'validation';
        return ack({ ok: false, error: wireError('validation', describeZodError(parsed.error)) });
      }
      const handler = handlers[event] as (ctx: OperationContext, payload: unknown) => Promise<object>;
      const result = await lifecycle.track(() => handler(ctx, parsed.data));
      ack({ ok: true, ...result });
    } catch (thrown) {
      const error = toAppError(thrown);
      outcome = error.code;
      if (error.code === 'internal') app.log.error({ err: thrown, event, socketId: socket.id, userId: ctx.principal.userId }, 'socket handler failed');
      ack({ ok: false, error: error.toWire() });
    } finally {
      metrics.socketEvents.inc({ event, outcome });
      metrics.ackLatency.observe({ event }, (performance.now() - started) / 1000);
    }
  };

  for (const event of Object.keys(clientEventSchemas) as ClientEventName[]) {
    socket.on(event, ((...args: unknown[]) => void handle(event, args)) as never);
  }
  socket.onAny((event: unknown, ...args: unknown[]) => {
    // Object.hasOwn, not `in`: "constructor" or "__proto__" must not pass for a known event.
    if (typeof event === 'string' && Object.hasOwn(clientEventSchemas, event)) return;
    metrics.socketEvents.inc({ event: 'unknown', outcome: 'validation' });
    const last = args.at(-1);
    if (typeof last === 'function') {
      (last as AnyAck)({ ok: false, error: wireError('validation', `Unknown event "${String(event).slice(0, 64)}"`) });
    }
  });
}
