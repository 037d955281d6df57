import type { ClientEventName } from '@chat/protocol';
import type { FastifyInstance } from 'fastify';
import type { RateLimitClass } from '../config.ts';
import { AppError } from '../errors.ts';

/** Which budget each event draws from. Every event has one: a missing entry does not compile. */
export const eventClasses: Record<ClientEventName, RateLimitClass> = {
  'session:info': 'read',
  'conversation:open-direct': 'conversation',
  'conversation:create-group': 'conversation',
  'conversation:add-members': 'conversation',
  'conversation:remove-member': 'conversation',
  'conversation:rename': 'conversation',
  'conversation:leave': 'conversation',
  'conversation:get': 'read',
  'conversation:list': 'read',
  'message:send': 'message',
  'message:edit': 'message',
  'message:delete': 'message',
  'message:react': 'message',
  'typing:set': 'typing',
  'typing:list': 'read',
  'presence:set-status': 'typing',
  'presence:get': 'read',
  'receipt:mark': 'receipt',
  'history:fetch': 'read',
  'sync:changes': 'read',
  'notification:list': 'read',
  'notification:mark-read': 'receipt',
  'notification:delete': 'receipt',
  'conversation:mute': 'conversation',
  'call:invite': 'call',
  'call:accept': 'call',
  'call:reject': 'call',
  'call:cancel': 'call',
  'call:end': 'call',
  'call:signal': 'call',
  'call:get': 'read',
};

/**
 * Takes one token from the user's bucket for the event's class, shared by all their devices on all
 * nodes, or throws `rate_limited` with `retryAfterMs`. If the limiter's store is unreachable the call
 * is allowed (and counted): a Redis outage must not stop the chat, and PostgreSQL still bounds writes.
 */
export async function enforceRateLimit(app: FastifyInstance, userId: string, event: ClientEventName): Promise<void> {
  const { rateLimits } = app.config;
  if (!rateLimits.enabled) return;
  const limitClass = eventClasses[event];
  let result;
  try {
    result = await app.state.rateLimiter.consume(`${limitClass}:${userId}`, rateLimits.buckets[limitClass]);
  } catch (error) {
    app.metrics.rateLimiterFailures.inc();
    app.log.warn({ err: error }, 'rate limiter unavailable; allowing');
    return;
  }
  if (!result.allowed) {
    app.metrics.rateLimited.inc({ class: limitClass });
    throw new AppError('rate_limited', `Too many ${limitClass} requests; retry in ${result.retryAfterMs} ms`, { retryAfterMs: result.retryAfterMs });
  }
}
