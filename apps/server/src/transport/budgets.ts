import type { ClientEventName } from '@chat/protocol';
import type { FastifyInstance } from 'fastify';
import type { RateLimitClass } from '../config.ts';
import { AppError } from '../errors.ts';
import type { RateLimitResult, TokenBucket } from '../state/token-buckets.ts';

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
  'message:search': 'read',
  'thread:fetch': 'read',
  'thread:list': 'read',
  'thread:mark-read': 'receipt',
  'notification:list': 'read',
  'notification:mark-read': 'receipt',
  'notification:delete': 'receipt',
  'conversation:mute': 'conversation',
  'conversation:archive': 'conversation',
  'message:schedule': 'message',
  'message:scheduled-list': 'read',
  'message:scheduled-edit': 'message',
  'message:scheduled-cancel': 'message',
  'call:invite': 'call',
  'call:accept': 'call',
  'call:reject': 'call',
  'call:cancel': 'call',
  'call:end': 'call',
  'call:signal': 'call',
  'call:get': 'read',
  'upload:create': 'message',
  'upload:complete': 'message',
  'upload:url': 'read',
};

/**
 * Takes one token from the user's bucket for the event's class, shared by all their devices on all
 * nodes, or throws `rate_limited` with `retryAfterMs`. If the limiter's store is unreachable the call
 * is allowed (and counted): a Redis outage must not stop the chat, and PostgreSQL still bounds writes.
 */
export async function enforceRateLimit(app: FastifyInstance, userId: string, event: ClientEventName): Promise<void> {
  const limitClass = eventClasses[event];
  await consumeBudget(app, `${limitClass}:${userId}`, app.config.rateLimits.buckets[limitClass], limitClass, `Too many ${limitClass} requests`);
}

/**
 * One token from the cluster-wide bucket at `key`, for every budget the node enforces (per-user
 * event classes, per-address connections): nothing when RATE_LIMITS=false; allowed and counted when
 * the store is unreachable; otherwise `rate_limited` with `retryAfterMs`, counted under `metricClass`.
 */
export async function consumeBudget(app: FastifyInstance, key: string, bucket: TokenBucket, metricClass: string, refusal: string): Promise<void> {
  if (!app.config.rateLimits.enabled) return;
  let result: RateLimitResult;
  try {
    result = await app.state.rateLimiter.consume(key, bucket);
  } catch (error) {
    app.metrics.rateLimiterFailures.inc();
    app.log.warn({ err: error }, 'rate limiter unavailable; allowing');
    return;
  }
  if (!result.allowed) {
    app.metrics.rateLimited.inc({ class: metricClass });
    throw new AppError('rate_limited', `${refusal}; retry in ${result.retryAfterMs} ms`, { retryAfterMs: result.retryAfterMs });
  }
}
