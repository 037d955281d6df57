import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay } from '@chat/protocol';
import { createSigner } from 'fast-jwt';
import type { Options } from './options.ts';

export class TokenError extends Error {
  override name = 'TokenError';
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

export interface Minted {
  token: string;
  /** Epoch ms. */
  expiresAt: number;
}

export type Mint = (userId: string) => Promise<Minted>;

/**
 * Tokens for the load's users: signed here when the server's secret is given (no HTTP, any number of
 * users), otherwise minted by the node's `POST /v1/dev/tokens` (DEV_TOKENS=true), many per request.
 * Those requests count against the per-address REST budget, so a 429 is waited out as the server
 * asks, and reported through `onRateLimited` so the run can warn about it.
 */
export function tokenMinter(options: Pick<Options, 'url' | 'jwtSecret' | 'jwtIssuer' | 'jwtAudience' | 'tokenTtlSeconds'>, onRateLimited: () => void = () => {}): Mint {
  const ttlMs = options.tokenTtlSeconds * 1000;
  if (options.jwtSecret !== null) {
    const sign = createSigner({
      key: options.jwtSecret,
      algorithm: 'HS256',
      expiresIn: ttlMs,
      ...(options.jwtIssuer !== null && { iss: options.jwtIssuer }),
      ...(options.jwtAudience !== null && { aud: options.jwtAudience }),
    });
    return async (userId) => ({ token: sign({ sub: userId, name: userId }), expiresAt: Date.now() + ttlMs });
  }

  const post = async (path: string, payload: object): Promise<{ token?: string; tokens?: Array<{ userId: string; token: string }> }> => {
    const endpoint = `${options.url}${path}`;
    for (let attempt = 1; ; attempt++) {
      let response: Response;
      try {
        response = await fetch(endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload), signal: AbortSignal.timeout(15_000) });
      } catch (error) {
        if (attempt >= 4) throw new TokenError('unavailable', `POST ${endpoint}: ${error instanceof Error ? error.message : String(error)}`);
        await sleep(backoffDelay(attempt + 1, { initialMs: 250, maxMs: 5000 }));
        continue;
      }
      const body = (await response.json().catch(() => null)) as {
        token?: string;
        tokens?: Array<{ userId: string; token: string }>;
        error?: { code?: string; message?: string; retryAfterMs?: number };
      } | null;
      if (response.ok && body) return body;
      if (response.status === 404) throw new TokenError('not_found', `POST ${endpoint} is not there: start the server with DEV_TOKENS=true, or pass --jwt-secret`);
      const code = body?.error?.code ?? `http_${response.status}`;
      const retryable = response.status === 429 || response.status >= 500;
      if (!retryable || attempt >= 20) throw new TokenError(code, `POST ${endpoint}: ${response.status} ${body?.error?.message ?? ''}`.trim());
      if (response.status === 429) onRateLimited();
      const retryAfter = body?.error?.retryAfterMs ?? Number(response.headers.get('retry-after') ?? '1') * 1000;
      await sleep(Math.min(60_000, Math.max(100, retryAfter)));
    }
  };
  const single = async (userId: string): Promise<Minted> => {
    const body = await post('/v1/dev/token', { userId, displayName: userId, ttlSeconds: options.tokenTtlSeconds });
    if (typeof body.token !== 'string') throw new TokenError('internal', 'POST /v1/dev/token answered without a token');
    return { token: body.token, expiresAt: Date.now() + ttlMs };
  };

  // The users asked for in one turn of the event loop are minted by one POST /v1/dev/tokens (up to
  // DEV_TOKENS_PER_REQUEST each), which counts once against the per-address REST budget. A server
  // without that route (older, or the bare relay) is asked one user at a time.
  let batched = true;
  let queue: Array<{ userId: string; resolve: (minted: Minted) => void; reject: (error: unknown) => void }> = [];
  const flush = async (): Promise<void> => {
    const taken = queue;
    queue = [];
    for (let i = 0; i < taken.length; i += BATCH) {
      const chunk = taken.slice(i, i + BATCH);
      if (batched) {
        try {
          const body = await post('/v1/dev/tokens', { users: chunk.map(({ userId }) => ({ userId, displayName: userId })), ttlSeconds: options.tokenTtlSeconds });
          const byUser = new Map((body.tokens ?? []).map((minted) => [minted.userId, minted.token]));
          for (const entry of chunk) {
            const token = byUser.get(entry.userId);
            if (token) entry.resolve({ token, expiresAt: Date.now() + ttlMs });
            else entry.reject(new TokenError('internal', `POST /v1/dev/tokens answered without a token for ${entry.userId}`));
          }
          continue;
        } catch (error) {
          if (!(error instanceof TokenError && error.code === 'not_found')) {
            for (const entry of chunk) entry.reject(error);
            continue;
          }
          batched = false;
        }
      }
      for (const entry of chunk) single(entry.userId).then(entry.resolve, entry.reject);
    }
  };
  return (userId) =>
    new Promise<Minted>((resolve, reject) => {
      if (queue.length === 0) setImmediate(() => void flush());
      queue.push({ userId, resolve, reject });
    });
}

/** The server's DEV_TOKENS_PER_REQUEST. */
const BATCH = 1000;
