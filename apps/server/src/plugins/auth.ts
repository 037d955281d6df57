import fastifyJwt from '@fastify/jwt';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { errors as joseErrors, jwtVerify } from 'jose';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import { JWKS_ALGORITHMS, RemoteKeySet } from './jwks.ts';

/** Who is calling, as established by a verified token. */
export interface Principal {
  userId: string;
  displayName: string;
  /** Epoch ms when the token expires (`exp` is required). */
  expiresAt: number;
  /** Epoch ms when the token was issued: `iat`, or without one the earliest it could have been (`exp - JWT_MAX_LIFETIME_SECONDS`). */
  issuedAt: number;
}

export interface TokenService {
  /** Verifies a token and returns its principal, or throws an AppError with a `token_*` code. */
  verify(token: unknown): Promise<Principal>;
  /** Mints a token (HS256 only; used by the dev token endpoint). */
  sign(claims: { sub: string; name: string }, ttlSeconds: number): string;
}

declare module 'fastify' {
  interface FastifyInstance {
    tokens: TokenService;
    /** preHandler for REST routes: sets `request.principal` or answers 401 with a `token_*` code. */
    authenticate: (request: FastifyRequest) => Promise<void>;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** Tokens larger than this are refused before any parsing work. */
const MAX_TOKEN_BYTES = 8 * 1024;
const SUBJECT = /^[A-Za-z0-9_.:@|-]{1,128}$/;

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

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const { jwt } = config;
    const keySet = jwt.algorithm === 'JWKS' ? new RemoteKeySet(jwt.jwks!, app.log) : null;
    await app.register(fastifyJwt, {
      // In JWKS mode fast-jwt is not used to verify (jose is); it keeps a key only so the plugin loads.
      secret: jwt.algorithm === 'RS256' ? { public: jwt.publicKey! } : jwt.secret,
      sign: { algorithm: jwt.algorithm === 'RS256' ? 'RS256' : 'HS256', ...(jwt.issuer && { iss: jwt.issuer }), ...(jwt.audience && { aud: jwt.audience }) },
      verify: {
        // Pinning the algorithm is what defeats `alg: none` and HS/RS key confusion.
        algorithms: [jwt.algorithm === 'RS256' ? 'RS256' : 'HS256'],
        requiredClaims: ['sub', 'exp'],
        ...(jwt.issuer && { allowedIss: jwt.issuer }),
        ...(jwt.audience && { allowedAud: jwt.audience }),
      },
    });

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
        return app.jwt.verify<Record<string, unknown>>(token);
      } catch (error) {
        const code = tokenErrorCodes[(error as { code?: string }).code ?? ''] ?? 'token_invalid';
        throw new AppError(code, tokenErrorMessages[code]!);
      }
    }

    const tokens: TokenService = {
      async verify(token) {
        if (token === undefined || token === null || token === '') throw new AppError('token_missing', 'No token was sent');
        if (typeof token !== 'string' || token.length > MAX_TOKEN_BYTES) {
          throw new AppError('token_malformed', tokenErrorMessages.token_malformed!);
        }
        const claims = await verifyClaims(token);
        const { sub, name, exp, iat } = claims;
        if (typeof sub !== 'string' || !SUBJECT.test(sub)) throw new AppError('token_claims', tokenErrorMessages.token_claims!);
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
        app.revocations.check(sub, claimedIssuedAt);
        const displayName = typeof name === 'string' && name.trim() !== '' ? name.trim().slice(0, 100) : sub;
        return { userId: sub, displayName, expiresAt: exp * 1000, issuedAt: claimedIssuedAt };
      },
      sign(claims, ttlSeconds) {
        if (jwt.algorithm !== 'HS256') throw new AppError('internal', 'Only HS256 tokens can be minted');
        // @fastify/jwt reads a numeric expiresIn as seconds (and converts it for fast-jwt).
        return app.jwt.sign(claims, { expiresIn: ttlSeconds });
      },
    };
    app.decorate('tokens', tokens);
    app.decorateRequest('principal', null);
    app.decorate('authenticate', async (request: FastifyRequest) => {
      const header = request.headers.authorization;
      if (!header) throw new AppError('token_missing', 'Send Authorization: Bearer <token>');
      const match = /^Bearer +(\S+)$/i.exec(header);
      if (!match) throw new AppError('token_malformed', 'The Authorization header must be "Bearer <token>"');
      request.principal = await tokens.verify(match[1]);
    });
  },
  { name: 'auth', dependencies: ['revocations'] },
);
