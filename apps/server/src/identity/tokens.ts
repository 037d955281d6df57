import { SYSTEM_SENDER_ID, userIdSchema } from '@chat/protocol';
import { createVerifier } from 'fast-jwt';
import { errors as joseErrors, jwtVerify } from 'jose';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import { JWKS_ALGORITHMS, RemoteKeySet, type WarnLog } from './jwks.ts';
import type { Principal } from './principal.ts';

export interface TokenService {
  /** Verifies a token and returns its principal, or throws an AppError with a `token_*` code. */
  verify(token: unknown): Promise<Principal>;
  /** Mints a token (HS256 only; used by the dev token endpoint). */
  sign(claims: { sub: string; name: string }, ttlSeconds: number): string;
}

/**
 * HS256 or RS256 tokens with the configured key, the pinned algorithm and the claim checks of
 * {@link jwtPluginOptions}: the auth plugin passes @fastify/jwt's `app.jwt`.
 */
export interface JwtCodec {
  /** The verified claims; throws fast-jwt's errors (`FAST_JWT_*` codes). */
  verify(token: string): Record<string, unknown>;
  sign(claims: Record<string, unknown>, ttlSeconds: number): string;
}

/** The options @fastify/jwt is registered with (its `secret`, `sign` and `verify`). */
export function jwtPluginOptions(jwt: Config['jwt']) {
  return {
    // In JWKS mode fast-jwt is not used to verify (jose is); it keeps a key only so the plugin loads.
    secret: jwt.algorithm === 'RS256' ? { public: jwt.publicKey! } : jwt.secret,
    sign: { algorithm: jwt.algorithm === 'RS256' ? ('RS256' as const) : ('HS256' as const), ...(jwt.issuer && { iss: jwt.issuer }), ...(jwt.audience && { aud: jwt.audience }) },
    // Pinning the algorithm is what defeats `alg: none` and HS/RS key confusion.
    verify: { algorithms: [jwt.algorithm === 'RS256' ? ('RS256' as const) : ('HS256' as const)], ...claimChecks(jwt) },
  };
}

function claimChecks(jwt: Config['jwt']) {
  return {
    requiredClaims: ['sub', 'exp'],
    ...(jwt.issuer && { allowedIss: jwt.issuer }),
    ...(jwt.audience && { allowedAud: jwt.audience }),
  };
}

/** Refuses a token issued before its user's revocation: throws an AppError (`token_revoked`, or `unavailable`). */
export interface RevocationCheck {
  check(userId: string, issuedAt: number): void;
}

/** Tokens larger than this are refused before any parsing work. */
const MAX_TOKEN_BYTES = 8 * 1024;

// fast-jwt's error codes, folded into the catalog's token codes so REST and sockets report alike.
const tokenErrorCodes: Record<string, AppError['code']> = {
  FAST_JWT_MALFORMED: 'token_malformed',
  FAST_JWT_INVALID_TYPE: 'token_malformed',
  FAST_JWT_INVALID_PAYLOAD: 'token_malformed',
  FAST_JWT_EXPIRED: 'token_expired',
  FAST_JWT_INACTIVE: 'token_inactive',
  FAST_JWT_INVALID_CLAIM_VALUE: 'token_claims',
  FAST_JWT_INVALID_CLAIM_TYPE: 'token_claims',
  FAST_JWT_MISSING_REQUIRED_CLAIM: 'token_claims',
};
const tokenErrorMessages: Partial<Record<AppError['code'], string>> = {
  token_malformed: 'The token is not a well-formed JWT',
  token_invalid: 'The token signature or algorithm is not accepted',
  token_expired: 'The token has expired',
  token_inactive: 'The token is not valid yet',
  token_claims: 'The token claims (issuer, audience, subject, expiry or lifetime) are not accepted',
};

/** jose's errors (JWKS mode), folded the same way. A key set that cannot be fetched is `unavailable`. */
function joseErrorCode(error: unknown): AppError['code'] {
  if (error instanceof AppError) return error.code;
  if (error instanceof joseErrors.JWTExpired) return 'token_expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) return error.claim === 'nbf' ? 'token_inactive' : 'token_claims';
  if (error instanceof joseErrors.JWSInvalid || error instanceof joseErrors.JWTInvalid) return 'token_malformed';
  // Bad signature, an algorithm outside JWKS_ALGORITHMS, an unknown or ambiguous `kid`.
  if (error instanceof joseErrors.JOSEError) return 'token_invalid';
  // jose reports every malformed token as one of its own errors: anything else is a bug, logged as such.
  return 'internal';
}

/**
 * Token verification for every way in (REST, sockets, the dev token endpoint), per JWT_ALGORITHM:
 * HS256 (with the retired secret of a rotation), RS256, or a remote JWKS. Every mode pins its
 * algorithms (what defeats `alg: none` and HS/RS key confusion), requires `sub` and `exp`, checks
 * issuer and audience when configured, bounds the lifetime and consults the revocations.
 */
export function createTokenService(jwt: Config['jwt'], codec: JwtCodec, revocations: RevocationCheck, log: WarnLog): TokenService {
  const keySet = jwt.algorithm === 'JWKS' ? new RemoteKeySet(jwt.jwks!, log) : null;
  // The retired HS256 secret of a rotation, with the same pinned algorithm and claim checks.
  const previousVerifier = jwt.previousSecret ? createVerifier({ key: jwt.previousSecret, algorithms: ['HS256'], ...claimChecks(jwt) }) : null;

  async function verifyClaims(token: string): Promise<Record<string, unknown>> {
    if (keySet) {
      try {
        const { payload } = await jwtVerify(token, keySet.getKey, {
          algorithms: [...JWKS_ALGORITHMS],
          requiredClaims: ['sub', 'exp'],
          ...(jwt.issuer && { issuer: jwt.issuer }),
          ...(jwt.audience && { audience: jwt.audience }),
        });
        return payload as Record<string, unknown>;
      } catch (error) {
        const code = joseErrorCode(error);
        if (code === 'internal') throw error;
        throw error instanceof AppError ? error : new AppError(code, tokenErrorMessages[code]!);
      }
    }
    try {
      return codec.verify(token);
    } catch (error) {
      let code = tokenErrorCodes[(error as { code?: string }).code ?? ''] ?? 'token_invalid';
      // Only a signature the current secret refuses is tried against the retired one.
      if (code === 'token_invalid' && previousVerifier) {
        try {
          return previousVerifier(token) as Record<string, unknown>;
        } catch (previousError) {
          code = tokenErrorCodes[(previousError as { code?: string }).code ?? ''] ?? 'token_invalid';
        }
      }
      throw new AppError(code, tokenErrorMessages[code]!);
    }
  }

  return {
    async verify(token) {
      if (token === undefined || token === null || token === '') throw new AppError('token_missing', 'No token was sent');
      if (typeof token !== 'string' || token.length > MAX_TOKEN_BYTES) {
        throw new AppError('token_malformed', tokenErrorMessages.token_malformed!);
      }
      const claims = await verifyClaims(token);
      const { sub, name, exp, iat } = claims;
      // A subject is a user id by the protocol's own definition, so no token can name someone the
      // API could not: in particular not the reserved system sender.
      if (sub === SYSTEM_SENDER_ID) throw new AppError('token_claims', `The subject "${SYSTEM_SENDER_ID}" is reserved for the system sender`);
      if (typeof sub !== 'string' || !userIdSchema.safeParse(sub).success) throw new AppError('token_claims', tokenErrorMessages.token_claims!);
      if (typeof exp !== 'number') throw new AppError('token_claims', 'The token has no exp claim');
      // The lifetime counts from `iat`, or from now when `iat` is absent or in the future (a future
      // `iat` must not stretch what a token may claim).
      const nowSeconds = Date.now() / 1000;
      const issuedAt = typeof iat === 'number' ? Math.min(iat, nowSeconds) : nowSeconds;
      if (exp - issuedAt > jwt.maxLifetimeSeconds) {
        throw new AppError('token_claims', `The token lives longer than the accepted ${jwt.maxLifetimeSeconds} s (exp - iat)`);
      }
      // Revocation compares the issuing instant as claimed: a token without `iat` counts as issued
      // as early as its lifetime allows, so it can never slip past a revocation.
      const claimedIssuedAt = (typeof iat === 'number' ? iat : exp - jwt.maxLifetimeSeconds) * 1000;
      revocations.check(sub, claimedIssuedAt);
      const displayName = typeof name === 'string' && name.trim() !== '' ? name.trim().slice(0, 100) : sub;
      return { userId: sub, displayName, expiresAt: exp * 1000, issuedAt: claimedIssuedAt };
    },
    sign(claims, ttlSeconds) {
      if (jwt.algorithm !== 'HS256') throw new AppError('internal', 'Only HS256 tokens can be minted');
      return codec.sign(claims, ttlSeconds);
    },
  };
}
