/** Who is calling, as established by a verified token. */
export interface Principal {
  userId: string;
  displayName: string;
  /** Epoch ms when the token expires (`exp` is required). */
  expiresAt: number;
  /** Epoch ms when the token was issued: `iat`, or without one the earliest it could have been (`exp - JWT_MAX_LIFETIME_SECONDS`). */
  issuedAt: number;
}
