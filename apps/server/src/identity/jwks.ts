import { createLocalJWKSet, errors as joseErrors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { AppError } from '../errors.ts';
import type { ServiceLog } from '../logger.ts';

/** The asymmetric algorithms accepted in JWKS mode; anything else (HS*, `none`) is `token_invalid`. */
export const JWKS_ALGORITHMS = ['RS256', 'PS256', 'ES256'] as const;

/** A JWKS larger than this is refused: an identity provider publishes a handful of keys. */
const MAX_JWKS_BYTES = 256 * 1024;
const FETCH_TIMEOUT_MS = 5000;

/** Where a failed fetch is reported. */
export type WarnLog = Pick<ServiceLog, 'warn'>;

export interface JwksOptions {
  url: string;
  /** A fetched key set is trusted this long; after that the next token refetches it. */
  cacheMaxAgeMs: number;
  /** At most one fetch (successful or not) per this long. */
  cooldownMs: number;
}

/**
 * A remote JSON Web Key Set with rotation, built on jose's `createLocalJWKSet` (which picks the key by
 * `kid`, `alg` and `kty`). jose's own `createRemoteJWKSet` is not used because it drops its keys once
 * `cacheMaxAge` passes even when the endpoint is down, and its cooldown counts only successful fetches,
 * so while the endpoint is down every token with an unknown `kid` would cause a fetch. Here:
 * - a key set fetched less than `cacheMaxAgeMs` ago is used as it is;
 * - a token whose `kid` is not in it causes a refetch, unless a fetch was attempted less than
 *   `cooldownMs` ago (then it is `token_invalid` at once, or `unavailable` if that fetch failed);
 *   concurrent tokens share one fetch;
 * - a refetch replaces the set: a key the provider removed is refused from then on;
 * - an older set is refetched before use, and when that fetch fails, the old set keeps verifying
 *   (stale-if-error) so an outage of the provider does not log everyone out;
 * - no set at all and the endpoint unreachable: `unavailable` (retryable), never `internal`.
 */
export class RemoteKeySet {
  #local: JWTVerifyGetKey | null = null;
  #fetchedAt = 0;
  #attemptedAt = -Infinity;
  #lastFetchFailed = false;
  #pending: Promise<void> | null = null;
  /** Fetches made (successful or not); for metrics and tests. */
  fetches = 0;
  readonly #options: JwksOptions;
  readonly #log: WarnLog;

  constructor(options: JwksOptions, log: WarnLog) {
    this.#options = options;
    this.#log = log;
  }

  /** jose's key resolver for `jwtVerify`. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    if (!this.#local || Date.now() - this.#fetchedAt >= this.#options.cacheMaxAgeMs) {
      if (!this.#coolingDown()) await this.#refresh().catch(() => {});
      if (!this.#local) throw new AppError('unavailable', "The identity provider's key set cannot be fetched; try again");
    }
    try {
      return await this.#local(header, token);
    } catch (error) {
      if (!(error instanceof joseErrors.JWKSNoMatchingKey)) throw error;
      if (this.#coolingDown()) {
        // The set in hand may be outdated when the last fetch failed: say so, and the client retries.
        if (this.#lastFetchFailed) throw new AppError('unavailable', "The token's key is not known and the identity provider's key set cannot be fetched; try again");
        throw error;
      }
      // An unknown `kid`: the provider may have rotated. One refetch per cooldown.
      try {
        await this.#refresh();
      } catch {
        throw new AppError('unavailable', "The token's key is not known and the identity provider's key set cannot be fetched; try again");
      }
      return this.#local!(header, token);
    }
  };

  #coolingDown(): boolean {
    return Date.now() < this.#attemptedAt + this.#options.cooldownMs;
  }

  #refresh(): Promise<void> {
    this.#pending ??= this.#fetch().finally(() => {
      this.#pending = null;
    });
    return this.#pending;
  }

  async #fetch(): Promise<void> {
    this.#attemptedAt = Date.now();
    this.fetches += 1;
    try {
      const response = await fetch(this.#options.url, { headers: { accept: 'application/json' }, redirect: 'error', signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
      if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
      const text = await response.text();
      if (text.length > MAX_JWKS_BYTES) throw new Error(`larger than ${MAX_JWKS_BYTES} bytes`);
      const local = createLocalJWKSet(JSON.parse(text) as JSONWebKeySet);
      this.#local = local;
      this.#fetchedAt = Date.now();
      this.#lastFetchFailed = false;
    } catch (error) {
      this.#lastFetchFailed = true;
      this.#log.warn({ err: error, url: this.#options.url, cachedKeys: this.#local !== null }, 'JWKS fetch failed');
      throw error;
    }
  }
}
