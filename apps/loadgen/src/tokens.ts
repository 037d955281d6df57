import { setTimeout as sleep } from 'node:timers/promises';
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
 * users), otherwise minted by the node's `POST /v1/dev/token` (DEV_TOKENS=true). That route counts
 * against the per-address REST budget, so a 429 is waited out as the server asks, and reported through
 * `onRateLimited` so the run can warn about it.
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

  const endpoint = `${options.url}/v1/dev/token`;
  return async (userId) => {
    for (let attempt = 1; ; attempt++) {
      let response: Response;
      try {
        response = await fetch(endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ userId, displayName: userId, ttlSeconds: options.tokenTtlSeconds }),
          signal: AbortSignal.timeout(15_000),
        });
      } catch (error) {
        if (attempt >= 4) throw new TokenError('unavailable', `POST ${endpoint}: ${error instanceof Error ? error.message : String(error)}`);
        await sleep(250 * 2 ** attempt);
        continue;
      }
      const body = (await response.json().catch(() => null)) as { token?: string; error?: { code?: string; message?: string; retryAfterMs?: number } } | null;
      if (response.ok && typeof body?.token === 'string') return { token: body.token, expiresAt: Date.now() + ttlMs };
      if (response.status === 404) throw new TokenError('not_found', `POST ${endpoint} is not there: start the server with DEV_TOKENS=true, or pass --jwt-secret`);
      const code = body?.error?.code ?? `http_${response.status}`;
      const retryable = response.status === 429 || response.status >= 500;
      if (!retryable || attempt >= 20) throw new TokenError(code, `POST ${endpoint}: ${response.status} ${body?.error?.message ?? ''}`.trim());
      if (response.status === 429) onRateLimited();
      const retryAfter = body?.error?.retryAfterMs ?? Number(response.headers.get('retry-after') ?? '1') * 1000;
      await sleep(Math.min(60_000, Math.max(100, retryAfter)));
    }
  };
}
