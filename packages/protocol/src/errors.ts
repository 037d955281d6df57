/**
 * The one catalog of error codes. Every ack error, every REST error body, every `connect_error`
 * and every server-initiated disconnect uses a code from this table, so clients can branch on
 * `code` and `retryable` without parsing messages.
 *
 * `retryable` tells a client whether sending the same request again (after a back-off, or after
 * reconnecting / refreshing its token where the description says so) can succeed.
 */
export const errorCatalog = {
  validation: { status: 400, retryable: false, description: 'The payload does not match the schema of the event or route.' },
  unauthorized: { status: 401, retryable: false, description: 'No valid credentials for this request.' },
  token_missing: { status: 401, retryable: false, description: 'No token: send `auth.token` in the Socket.IO handshake or `Authorization: Bearer <token>`.' },
  token_malformed: { status: 401, retryable: false, description: 'The token is not a well-formed JWT.' },
  token_invalid: {
    status: 401,
    retryable: false,
    description: "Bad signature, an algorithm other than the configured ones (including `none`), or (JWT_ALGORITHM=JWKS) a `kid` the identity provider's key set does not hold.",
  },
  token_expired: { status: 401, retryable: true, description: 'The token has expired: refresh it and reconnect.' },
  token_inactive: { status: 401, retryable: true, description: 'The token is not valid yet (`nbf` in the future).' },
  token_revoked: {
    status: 401,
    retryable: true,
    description:
      "An operator revoked the user's sessions: every token issued before then (`iat`, or `exp - JWT_MAX_LIFETIME_SECONDS` without one) is refused until it expires. Get a new token, then retry.",
  },
  token_claims: {
    status: 401,
    retryable: false,
    description: 'Issuer or audience do not match the configured ones, the `sub` claim is missing or invalid, `exp` is missing, or the token lives longer than JWT_MAX_LIFETIME_SECONDS (`exp - iat`).',
  },
  forbidden: { status: 403, retryable: false, description: 'Authenticated, but not allowed to do this.' },
  not_found: { status: 404, retryable: false, description: 'No such resource, or not visible to you.' },
  conflict: { status: 409, retryable: false, description: 'The request conflicts with the current state.' },
  send_at_out_of_range: {
    status: 400,
    retryable: false,
    description: '`sendAt` of a scheduled message is more than 1 s in the past or further ahead than SCHEDULE_MAX_AHEAD_DAYS (default 30).',
  },
  scheduled_not_pending: {
    status: 409,
    retryable: false,
    description: 'The scheduled message is no longer pending (being sent, sent, canceled or failed): it cannot be edited or canceled any more.',
  },
  payload_too_large: { status: 413, retryable: false, description: 'The request (headers or body) or event payload exceeds the size cap.' },
  request_timeout: { status: 408, retryable: true, description: 'The request did not arrive in time (HTTP_HEADERS_TIMEOUT_MS, HTTP_REQUEST_TIMEOUT_MS); the connection is closed.' },
  upload_too_large: {
    status: 413,
    retryable: false,
    description: 'The upload is larger than the slot allows (its declared size, at most UPLOAD_MAX_BYTES), or an image has more pixels than UPLOAD_MAX_IMAGE_PIXELS.',
  },
  upload_type_mismatch: {
    status: 415,
    retryable: false,
    description: 'The bytes are not of the declared type (the server sniffs them), or are not a well-formed image or audio file of that type. PUT the right bytes again, or start a new slot.',
  },
  upload_incomplete: {
    status: 409,
    retryable: true,
    description: 'The slot holds fewer bytes than declared, or none: PUT the whole file again (until the slot expires), then complete it.',
  },
  upload_slot_used: { status: 409, retryable: false, description: 'The upload slot has been filled (and verified) already: a slot takes one file, once. Ask for a new slot.' },
  rate_limited: { status: 429, retryable: true, description: 'Too many requests: wait `retryAfterMs` and try again.' },
  unavailable: { status: 503, retryable: true, description: 'A dependency is unreachable or the node is draining: retry, possibly on another node.' },
  internal: { status: 500, retryable: true, description: 'Unexpected server error; details are in the server log, never in the response.' },
} as const satisfies Record<string, { status: number; retryable: boolean; description: string }>;

export type ErrorCode = keyof typeof errorCatalog;
export const errorCodes = Object.keys(errorCatalog) as [ErrorCode, ...ErrorCode[]];

/** The wire shape of an error, in acks, REST bodies and `connect_error.data`. */
export interface WireError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
  /** Only for `rate_limited`: how long to wait before retrying. */
  retryAfterMs?: number;
}

export function wireError(code: ErrorCode, message: string, extra?: { retryAfterMs?: number }): WireError {
  return { code, message, retryable: errorCatalog[code].retryable, ...extra };
}

/**
 * Why the server closes a socket. The server emits `session:ending` with one of these just before
 * it disconnects, because Socket.IO's own reason ("io server disconnect") does not say why.
 */
export const disconnectCatalog = {
  token_expired: { reconnect: 'after-refresh', description: 'The token expired: get a new one, then reconnect.' },
  token_revoked: { reconnect: 'after-refresh', description: "An operator revoked the user's tokens: get a new one, then reconnect (the old one is refused with `token_revoked`)." },
  disconnected_by_admin: { reconnect: 'after-backoff', description: "An operator closed the user's sessions; the token stays valid." },
  server_draining: { reconnect: 'now', description: 'The node is shutting down: reconnect at once (the load balancer picks another node).' },
  rate_limited: { reconnect: 'after-backoff', description: 'The client kept flooding after being rate limited.' },
  slow_consumer: {
    reconnect: 'after-backoff',
    description:
      'The client stopped reading: its unsent data on the node passed SOCKET_MAX_BUFFERED_BYTES. Only a client that catches up within a second reads this; the node closes the transport, so socket.io-client reconnects with its back-off, and a resync fetches what was dropped.',
  },
} as const satisfies Record<string, { reconnect: 'now' | 'after-refresh' | 'after-backoff'; description: string }>;

export type DisconnectReason = keyof typeof disconnectCatalog;
