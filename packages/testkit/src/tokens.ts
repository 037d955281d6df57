import { createSigner } from 'fast-jwt';
import { DEV_JWT_SECRET } from '@chat/server/config';

export const TEST_JWT_SECRET = 'test-secret-that-is-at-least-32-characters-long';

type Claims = { sub?: unknown; name?: string; iss?: string; aud?: string; exp?: number; nbf?: number; [claim: string]: unknown };

/**
 * Signs an HS256 token the way an identity provider would; `expiresInSeconds` defaults to an hour,
 * and `null` leaves `exp` out (which the nodes refuse).
 */
export function signToken(claims: Claims, { secret = TEST_JWT_SECRET, expiresInSeconds = 3600 as number | null } = {}): string {
  const signer = createSigner({ key: secret, algorithm: 'HS256', ...(claims.exp === undefined && expiresInSeconds !== null && { expiresIn: expiresInSeconds * 1000 }) });
  return signer(claims);
}

/** An unsigned token (`alg: none`), which must never be accepted. */
export function unsignedToken(claims: Claims): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode(claims)}.`;
}

export { DEV_JWT_SECRET };
