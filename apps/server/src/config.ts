import { hostname } from 'node:os';
import { limits } from '@chat/protocol';
import { z } from 'zod';
import { DatabaseUrlError, parseDatabaseUrl } from './db/url.ts';
import { checkUploadEnv, uploadConfig, uploadEnvShape, type UploadConfig } from './storage/config.ts';
import { ConfigError, parseEnv } from './config-errors.ts';

/** Used only outside production, so a newcomer's `npm start` works; production refuses it. */
export const DEV_JWT_SECRET = 'dev-only-insecure-secret-do-not-use-in-production';

const bool = z.stringbool({ truthy: ['true', '1', 'yes'], falsy: ['false', '0', 'no', ''] });
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
/** "N/Ts": a bucket of N tokens that refills N every T seconds (20/10s = bursts of 20, 2 per second). */
const rate = z
  .string()
  .regex(/^\d+\/\d+(\.\d+)?s$/, 'N/Ts, e.g. 20/10s')
  .transform((value) => {
    const [count, seconds] = value.slice(0, -1).split('/').map(Number) as [number, number];
    return { capacity: count, refillPerSecond: count / seconds };
  })
  .refine((bucket) => bucket.capacity >= 1 && Number.isFinite(bucket.refillPerSecond) && bucket.refillPerSecond > 0, 'N/Ts with N >= 1 and T > 0');
/** A postgresql:// URL whose `pgbouncer` parameter, if any, is `true` or `false` (see db/url.ts). */
const postgresUrl = z
  .string()
  .regex(/^postgres(ql)?:\/\//, 'a postgresql:// connection string')
  .superRefine((value, ctx) => {
    try {
      parseDatabaseUrl(value);
    } catch (error) {
      if (!(error instanceof DatabaseUrlError)) throw error;
      ctx.addIssue({ code: 'custom', message: error.message });
    }
  });
/** True for a well-formed URL with pgbouncer=true; a malformed one is reported by {@link postgresUrl}. */
function viaPgBouncer(value: string): boolean {
  try {
    return parseDatabaseUrl(value).pgbouncer;
  } catch {
    return false;
  }
}
const commaList = z.string().transform((value) =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean),
);

/**
 * `id:secret` pairs, comma-separated: several at once so a key can be rotated (add the new one, move
 * callers, remove the old one). The id is what logs and metrics name; the secret is never logged.
 */
const apiKeys = commaList.pipe(
  z
    .array(
      z
        .string()
        .regex(/^[A-Za-z0-9_.-]{1,32}:[\x21-\x7e]{32,256}$/, 'id:secret pairs, comma-separated (id: 1-32 letters, digits, _ . -; secret: 32-256 printable characters without spaces or commas)'),
    )
    .min(1)
    .refine((pairs) => new Set(pairs.map((pair) => pair.split(':')[0])).size === pairs.length, 'id:secret pairs with distinct ids'),
);

/** What a node id (NODE_ID) may be: it names Redis channels and keys, and appears in URLs. */
export const NODE_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Every environment variable the node reads. The README's configuration table mirrors this schema;
 * each entry's description is what a bad value's error message says it expects.
 */
export const envSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    HOST: z.string().min(1).default('0.0.0.0'),
    PORT: int(0, 65535).default(3000),
    NODE_ID: z.string().regex(NODE_ID, 'letters, digits, dot, dash or underscore, at most 64').default(`${hostname()}-${process.pid}`),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

    DATABASE_URL: postgresUrl.optional(),
    DATABASE_DIRECT_URL: postgresUrl
      .refine((value) => !viaPgBouncer(value), 'PostgreSQL itself, without pgbouncer=true (migrations hold a session advisory lock, which PgBouncer in transaction mode cannot keep)')
      .optional(),
    DATABASE_POOL_SIZE: int(1, 500).default(10),
    DATA_DIR: z.string().min(1).default('.data'),

    REDIS_URL: z
      .string()
      .regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL')
      .optional(),
    REDIS_CLUSTER_NODES: commaList
      .pipe(
        z
          .array(
            z
              .string()
              .regex(
                /^(rediss?:\/\/([^@\s/]*@)?)?[A-Za-z0-9.-]+:\d{1,5}$/,
                'host:port seed nodes of a Redis Cluster, comma-separated (redis://[user:password@]host:port or rediss:// for credentials or TLS)',
              ),
          )
          .min(1),
      )
      .optional(),
    REDIS_KEY_PREFIX: z.string().min(1).default('chat:'),
    REDIS_ADAPTER: z.enum(['routed', 'classic', 'sharded']).default('routed'),

    JWT_ALGORITHM: z.enum(['HS256', 'RS256', 'JWKS']).default('HS256'),
    JWT_SECRET: z.string().min(32, 'at least 32 characters').default(DEV_JWT_SECRET),
    JWT_SECRET_PREVIOUS: z.string().min(32, 'at least 32 characters').optional(),
    JWT_PUBLIC_KEY: z.string().includes('BEGIN PUBLIC KEY', { message: 'a PEM public key' }).optional(),
    JWT_ISSUER: z.string().min(1).optional(),
    JWT_AUDIENCE: z.string().min(1).optional(),
    JWT_JWKS_URL: z.url({ protocol: /^https?$/, error: 'an https:// URL of a JSON Web Key Set (http:// only for a loopback host, or outside production)' }).optional(),
    JWT_JWKS_CACHE_MAX_AGE_MS: int(1000, 7 * 24 * 3600 * 1000).default(600_000),
    JWT_JWKS_COOLDOWN_MS: int(100, 3600 * 1000).default(30_000),
    JWT_MAX_LIFETIME_SECONDS: int(60, 30 * 24 * 3600).default(24 * 3600),
    TOKEN_REVOCATION_RELOAD_MS: int(100, 3600 * 1000).default(30_000),
    DEV_TOKENS: bool.optional(),
    DEV_TOKEN_TTL_SECONDS: int(1, 30 * 24 * 3600).default(3600),

    MESSAGE_MAX_LENGTH: int(1, limits.messageBodyHard).default(limits.messageBodyDefault),
    CORS_ORIGINS: commaList
      // Credentials (cookies, Authorization) are always allowed for the listed origins, and the CORS
      // spec forbids them with a wildcard: list every origin instead.
      .pipe(z.array(z.string().regex(/^https?:\/\/[^/*\s,]+$/, 'origins such as https://app.example (scheme://host[:port], no wildcard, no path)')).min(1, 'at least one origin'))
      .optional(),
    TRUST_PROXY: z
      .string()
      .regex(/^(false|true|\d+|[\w.:/,-]+)$/, 'false, true, a hop count, or addresses/CIDRs/loopback,linklocal,uniquelocal')
      .default('loopback,linklocal,uniquelocal'),
    BODY_LIMIT_BYTES: int(1024, 10 * 1024 * 1024).default(64 * 1024),
    SOCKET_MAX_PAYLOAD_BYTES: int(1024, 10 * 1024 * 1024).default(64 * 1024),
    SOCKET_PING_INTERVAL_MS: int(1000, 300_000).default(25_000),
    SOCKET_PING_TIMEOUT_MS: int(1000, 300_000).default(20_000),
    SOCKET_CONNECT_TIMEOUT_MS: int(100, 300_000).default(10_000),
    // At least 64 KiB: below that a burst to a healthy client on a slow link is cut. At most 256 MiB
    // per socket: past that the bound no longer protects a node from a few stalled clients.
    SOCKET_MAX_BUFFERED_BYTES: int(64 * 1024, 256 * 1024 * 1024).default(1024 * 1024),
    HTTP_HEADERS_TIMEOUT_MS: int(100, 300_000).default(10_000),
    HTTP_REQUEST_TIMEOUT_MS: int(100, 600_000).default(30_000),
    HTTP_KEEP_ALIVE_TIMEOUT_MS: int(100, 600_000).default(72_000),

    RATE_LIMITS: bool.default(true),
    RATE_LIMIT_MESSAGE: rate.prefault('20/10s'),
    RATE_LIMIT_TYPING: rate.prefault('10/10s'),
    RATE_LIMIT_CONVERSATION: rate.prefault('10/60s'),
    RATE_LIMIT_RECEIPT: rate.prefault('60/10s'),
    RATE_LIMIT_READ: rate.prefault('120/10s'),
    RATE_LIMIT_CALL: rate.prefault('200/10s'),
    RATE_LIMIT_FLOOD_DISCONNECT: int(1, 1_000_000).default(50),
    RATE_LIMIT_SYNC_MS: int(10, 10_000).default(50),
    // nginx's limit on new Socket.IO sessions per address (burst 4000, 200/s), enforced again by the
    // nodes for clients that reach them without nginx.
    RATE_LIMIT_SOCKET_CONNECT: rate.prefault('4000/20s'),
    REST_RATE_LIMIT_PER_MINUTE: int(1, 10_000_000).default(600),
    TYPING_TTL_MS: int(1000, 60_000).default(6000),
    PRESENCE_NODE_TTL_MS: int(1000, 600_000).default(20_000),

    CALL_RING_TIMEOUT_MS: int(1000, 600_000).default(30_000),
    CALL_STATE_TTL_MS: int(1000, 600_000).default(30_000),
    CALL_MIN_MESSAGES: int(0, 1_000_000).default(0),
    SCHEDULER_POLL_MS: int(10, 60_000).default(250),
    SCHEDULER_BATCH: int(1, 10_000).default(200),
    SCHEDULE_MAX_AHEAD_DAYS: int(1, 3650).default(30),
    SCHEDULED_RETENTION_HOURS: z.coerce.number().min(0.0001).max(87_600).default(168),
    NOTIFY_WEBHOOK_URL: z.url({ protocol: /^https?$/ }).optional(),
    NOTIFY_WEBHOOK_SECRET: z.string().min(16, 'at least 16 characters').optional(),
    NOTIFY_WEBHOOK_MAX_ATTEMPTS: int(1, 100).default(6),
    NOTIFY_WEBHOOK_RETRY_BASE_MS: int(1, 600_000).default(1000),
    NOTIFY_WEBHOOK_RETRY_MAX_MS: int(1, 3_600_000).default(60_000),
    NOTIFY_WEBHOOK_TIMEOUT_MS: int(100, 120_000).default(5000),

    ADMIN_API_KEYS: apiKeys.optional(),
    SERVER_API_KEYS: apiKeys.optional(),

    SHUTDOWN_TIMEOUT_MS: int(100, 600_000).default(10_000),
    DRAIN_DELAY_MS: int(0, 600_000).default(0),

    ...uploadEnvShape,
  })
  .superRefine((env, ctx) => {
    checkUploadEnv(env, (path, message) => ctx.addIssue({ code: 'custom', path: [path], message }));
    if (env.REDIS_CLUSTER_NODES && env.REDIS_URL) {
      ctx.addIssue({ code: 'custom', path: ['REDIS_CLUSTER_NODES'], message: 'unset when REDIS_URL is set (one Redis, or one Redis Cluster)' });
    }
    if (env.REDIS_CLUSTER_NODES && /[{}]/.test(env.REDIS_KEY_PREFIX)) {
      ctx.addIssue({
        code: 'custom',
        path: ['REDIS_KEY_PREFIX'],
        message: 'no { or } with REDIS_CLUSTER_NODES (keys carry their own hash tags, by user and conversation; a tag in the prefix would put every key in one slot)',
      });
    }
    if (env.JWT_SECRET_PREVIOUS && env.JWT_ALGORITHM !== 'HS256') {
      ctx.addIssue({ code: 'custom', path: ['JWT_SECRET_PREVIOUS'], message: 'unset unless JWT_ALGORITHM=HS256 (JWKS rotates asymmetric keys)' });
    }
    if (env.JWT_SECRET_PREVIOUS && env.JWT_SECRET_PREVIOUS === env.JWT_SECRET) {
      ctx.addIssue({ code: 'custom', path: ['JWT_SECRET_PREVIOUS'], message: 'the secret being retired, not JWT_SECRET itself' });
    }
    if (env.JWT_ALGORITHM === 'RS256' && !env.JWT_PUBLIC_KEY) {
      ctx.addIssue({ code: 'custom', path: ['JWT_PUBLIC_KEY'], message: 'a PEM public key (required when JWT_ALGORITHM=RS256)' });
    }
    if (env.JWT_ALGORITHM === 'JWKS' && !env.JWT_JWKS_URL) {
      ctx.addIssue({ code: 'custom', path: ['JWT_JWKS_URL'], message: 'an https:// URL of a JSON Web Key Set (required when JWT_ALGORITHM=JWKS)' });
    }
    if (env.JWT_JWKS_URL && env.JWT_ALGORITHM !== 'JWKS') {
      ctx.addIssue({ code: 'custom', path: ['JWT_JWKS_URL'], message: 'unset unless JWT_ALGORITHM=JWKS' });
    }
    if (env.JWT_PUBLIC_KEY && env.JWT_ALGORITHM === 'JWKS') {
      ctx.addIssue({ code: 'custom', path: ['JWT_PUBLIC_KEY'], message: 'unset when JWT_ALGORITHM=JWKS (keys come from JWT_JWKS_URL)' });
    }
    if (env.JWT_JWKS_COOLDOWN_MS > env.JWT_JWKS_CACHE_MAX_AGE_MS) {
      ctx.addIssue({ code: 'custom', path: ['JWT_JWKS_COOLDOWN_MS'], message: 'at most JWT_JWKS_CACHE_MAX_AGE_MS' });
    }
    if (env.DEV_TOKEN_TTL_SECONDS > env.JWT_MAX_LIFETIME_SECONDS) {
      ctx.addIssue({ code: 'custom', path: ['DEV_TOKEN_TTL_SECONDS'], message: 'at most JWT_MAX_LIFETIME_SECONDS (longer tokens would be refused)' });
    }
    if (env.DEV_TOKENS && env.JWT_ALGORITHM !== 'HS256') {
      ctx.addIssue({ code: 'custom', path: ['DEV_TOKENS'], message: 'false unless JWT_ALGORITHM=HS256 (a public key cannot sign)' });
    }
    if (env.HTTP_HEADERS_TIMEOUT_MS > env.HTTP_REQUEST_TIMEOUT_MS) {
      ctx.addIssue({ code: 'custom', path: ['HTTP_HEADERS_TIMEOUT_MS'], message: 'at most HTTP_REQUEST_TIMEOUT_MS (the headers are part of the request)' });
    }
    if (env.NOTIFY_WEBHOOK_URL && !env.NOTIFY_WEBHOOK_SECRET) {
      ctx.addIssue({ code: 'custom', path: ['NOTIFY_WEBHOOK_SECRET'], message: 'a secret of at least 16 characters (required with NOTIFY_WEBHOOK_URL: receivers verify the signature)' });
    }
    if (env.NODE_ENV === 'production') {
      if (env.JWT_JWKS_URL && !env.JWT_JWKS_URL.startsWith('https:') && !isLoopbackUrl(env.JWT_JWKS_URL)) {
        ctx.addIssue({ code: 'custom', path: ['JWT_JWKS_URL'], message: 'an https:// URL in production (http:// only for a loopback host)' });
      }
      if (env.DEV_TOKENS) {
        ctx.addIssue({ code: 'custom', path: ['DEV_TOKENS'], message: 'false in production (the dev token endpoint mints tokens for anyone)' });
      }
      if (env.JWT_ALGORITHM === 'HS256' && env.JWT_SECRET === DEV_JWT_SECRET) {
        ctx.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: 'a secret of your own in production (the default is public)' });
      }
    }
  });

type Env = z.infer<typeof envSchema>;

/** localhost, 127.0.0.0/8 or ::1: a key set served on the same machine needs no TLS. */
function isLoopbackUrl(value: string): boolean {
  const host = new URL(value).hostname;
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Every environment variable the node reads, in the schema's order: what a launcher passes through. */
export const CONFIG_VARIABLES = Object.keys(envSchema.shape) as ReadonlyArray<keyof Env>;

export interface Config {
  env: Env['NODE_ENV'];
  host: string;
  port: number;
  nodeId: string;
  logLevel: Env['LOG_LEVEL'];
  /**
   * PostgreSQL when a URL is given, otherwise an embedded PGlite database in `dataDir`. `url` is
   * DATABASE_URL without its `pgbouncer` parameter; `pgbouncer` is true when it said `pgbouncer=true`
   * (PgBouncer in transaction mode: no named prepared statements, see db/client.ts).
   */
  database: { kind: 'postgres'; url: string; poolSize: number; pgbouncer: boolean } | { kind: 'pglite'; dataDir: string };
  /** Redis or a Redis Cluster when given, otherwise in-memory adapter and state (one node only). */
  redis: { target: RedisTarget; keyPrefix: string; adapter: 'routed' | 'classic' | 'sharded' } | null;
  jwt: {
    algorithm: Env['JWT_ALGORITHM'];
    secret: string;
    /** HS256 rotation: tokens signed with this retired secret still verify until they expire; new ones are signed with `secret`. */
    previousSecret: string | undefined;
    publicKey: string | undefined;
    issuer: string | undefined;
    audience: string | undefined;
    /** Tokens whose `exp - iat` (or `exp - now` without `iat`) is longer are refused (`token_claims`). */
    maxLifetimeSeconds: number;
    /** JWT_ALGORITHM=JWKS: the remote key set (see identity/jwks.ts). */
    jwks: { url: string; cacheMaxAgeMs: number; cooldownMs: number } | null;
    /** How often a node reloads token revocations from the database (the backstop for a missed notice). */
    revocationReloadMs: number;
  };
  devTokens: { enabled: boolean; ttlSeconds: number };
  corsOrigins: string[] | undefined;
  /** Which proxies' X-Forwarded-For is believed (Fastify's trustProxy). */
  trustProxy: boolean | string | ((address: string, hop: number) => boolean);
  limits: { bodyBytes: number; socketPayloadBytes: number; messageBodyLength: number };
  socket: {
    pingIntervalMs: number;
    pingTimeoutMs: number;
    connectTimeoutMs: number;
    /** Unsent outbound data a socket may hold on this node before it is disconnected as a slow consumer. */
    maxBufferedBytes: number;
  };
  /** Bounds on slow or idle HTTP clients (Node's http.Server headersTimeout, requestTimeout, keepAliveTimeout). */
  http: { headersTimeoutMs: number; requestTimeoutMs: number; keepAliveTimeoutMs: number };
  shutdown: { timeoutMs: number; drainDelayMs: number };
  typing: { ttlMs: number };
  rateLimits: {
    enabled: boolean;
    buckets: Record<RateLimitClass, { capacity: number; refillPerSecond: number }>;
    /** Refusals within one bucket window after which a socket is disconnected as a flooder. */
    floodDisconnectAfter: number;
    /** How often each node settles what it granted with the shared buckets (see SyncedRateLimiter). */
    syncIntervalMs: number;
    restPerMinute: number;
    /** New Socket.IO connections per client address (as TRUST_PROXY resolves it), shared by all nodes. */
    socketConnect: { capacity: number; refillPerSecond: number };
  };
  presence: { nodeTtlMs: number };
  /** Uploads and where their bytes are stored (storage/config.ts). */
  uploads: UploadConfig;
  calls: {
    /** An unanswered call ends as `missed` this long after the invite. */
    ringTimeoutMs: number;
    /** A live call whose node stopped touching it (crashed) disappears after this long. */
    stateTtlMs: number;
    /** Messages a direct conversation needs before its members may call each other (0: no rule). */
    minMessages: number;
  };
  /**
   * Scheduled messages: how often every node looks for due ones, how many it claims per round, how
   * far ahead one may be scheduled, and how long a finished one (sent, failed, canceled) is kept.
   */
  scheduler: { pollMs: number; batch: number; maxAheadDays: number; retentionMs: number };
  /** Where notifications for users without a connected device are POSTed; null: nowhere. */
  notifyWebhook: { url: string; secret: string; maxAttempts: number; retryBaseMs: number; retryMaxMs: number; timeoutMs: number } | null;
  /**
   * Credentials of the two key-authenticated APIs (identity/api-caller.ts, plugins/api-keys.ts): operators on `/v1/admin/*`,
   * a customer's backend on `/v1/server/*`. Separate lists, so a backend's key cannot drain a node or
   * revoke a user. Empty: that API answers every request `unauthorized`.
   */
  apiKeys: { admin: ApiKey[]; server: ApiKey[] };
}

export interface ApiKey {
  id: string;
  secret: string;
}

/** One Redis server (REDIS_URL), or the seed nodes of a Redis Cluster (REDIS_CLUSTER_NODES). */
export type RedisTarget = { kind: 'single'; url: string } | { kind: 'cluster'; nodes: Array<{ host: string; port: number }>; username?: string; password?: string; tls: boolean };

/** Event classes with their own per-user budget (see transport/budgets.ts). */
export type RateLimitClass = 'message' | 'typing' | 'conversation' | 'receipt' | 'read' | 'call';

/**
 * Parses and validates the environment. Throws a ConfigError whose message is one line naming the
 * first bad variable and what it expects, e.g. `PORT: expected an integer from 0 to 65535, got "abc"`.
 */
export function loadConfig(source: NodeJS.ProcessEnv = process.env): Config {
  const env = parseEnv(envSchema, source);
  return {
    env: env.NODE_ENV,
    host: env.HOST,
    port: env.PORT,
    nodeId: env.NODE_ID,
    logLevel: env.LOG_LEVEL,
    database: env.DATABASE_URL ? { kind: 'postgres', ...parseDatabaseUrl(env.DATABASE_URL), poolSize: env.DATABASE_POOL_SIZE } : { kind: 'pglite', dataDir: env.DATA_DIR },
    redis: redisTarget(env) ? { target: redisTarget(env)!, keyPrefix: env.REDIS_KEY_PREFIX, adapter: env.REDIS_ADAPTER } : null,
    jwt: {
      algorithm: env.JWT_ALGORITHM,
      secret: env.JWT_SECRET,
      previousSecret: env.JWT_SECRET_PREVIOUS,
      publicKey: env.JWT_PUBLIC_KEY,
      issuer: env.JWT_ISSUER,
      audience: env.JWT_AUDIENCE,
      maxLifetimeSeconds: env.JWT_MAX_LIFETIME_SECONDS,
      jwks: env.JWT_JWKS_URL ? { url: env.JWT_JWKS_URL, cacheMaxAgeMs: env.JWT_JWKS_CACHE_MAX_AGE_MS, cooldownMs: env.JWT_JWKS_COOLDOWN_MS } : null,
      revocationReloadMs: env.TOKEN_REVOCATION_RELOAD_MS,
    },
    devTokens: {
      // Unset: on only for a pure development set-up whose secret is the public dev default anyway
      // (anyone could mint tokens with it), so `npm start` can be tried at once; off otherwise.
      enabled: env.DEV_TOKENS ?? (env.NODE_ENV === 'development' && env.JWT_ALGORITHM === 'HS256' && env.JWT_SECRET === DEV_JWT_SECRET),
      ttlSeconds: env.DEV_TOKEN_TTL_SECONDS,
    },
    corsOrigins: env.CORS_ORIGINS,
    trustProxy: env.TRUST_PROXY === 'true' ? true : env.TRUST_PROXY === 'false' ? false : /^\d+$/.test(env.TRUST_PROXY) ? hops(Number(env.TRUST_PROXY)) : env.TRUST_PROXY,
    limits: { bodyBytes: env.BODY_LIMIT_BYTES, socketPayloadBytes: env.SOCKET_MAX_PAYLOAD_BYTES, messageBodyLength: env.MESSAGE_MAX_LENGTH },
    socket: {
      pingIntervalMs: env.SOCKET_PING_INTERVAL_MS,
      pingTimeoutMs: env.SOCKET_PING_TIMEOUT_MS,
      connectTimeoutMs: env.SOCKET_CONNECT_TIMEOUT_MS,
      maxBufferedBytes: env.SOCKET_MAX_BUFFERED_BYTES,
    },
    http: { headersTimeoutMs: env.HTTP_HEADERS_TIMEOUT_MS, requestTimeoutMs: env.HTTP_REQUEST_TIMEOUT_MS, keepAliveTimeoutMs: env.HTTP_KEEP_ALIVE_TIMEOUT_MS },
    shutdown: { timeoutMs: env.SHUTDOWN_TIMEOUT_MS, drainDelayMs: env.DRAIN_DELAY_MS },
    typing: { ttlMs: env.TYPING_TTL_MS },
    rateLimits: {
      enabled: env.RATE_LIMITS,
      buckets: {
        message: env.RATE_LIMIT_MESSAGE,
        typing: env.RATE_LIMIT_TYPING,
        conversation: env.RATE_LIMIT_CONVERSATION,
        receipt: env.RATE_LIMIT_RECEIPT,
        read: env.RATE_LIMIT_READ,
        call: env.RATE_LIMIT_CALL,
      },
      floodDisconnectAfter: env.RATE_LIMIT_FLOOD_DISCONNECT,
      syncIntervalMs: env.RATE_LIMIT_SYNC_MS,
      restPerMinute: env.REST_RATE_LIMIT_PER_MINUTE,
      socketConnect: env.RATE_LIMIT_SOCKET_CONNECT,
    },
    presence: { nodeTtlMs: env.PRESENCE_NODE_TTL_MS },
    uploads: uploadConfig(env, env.DATA_DIR, env.JWT_SECRET),
    calls: { ringTimeoutMs: env.CALL_RING_TIMEOUT_MS, stateTtlMs: env.CALL_STATE_TTL_MS, minMessages: env.CALL_MIN_MESSAGES },
    scheduler: { pollMs: env.SCHEDULER_POLL_MS, batch: env.SCHEDULER_BATCH, maxAheadDays: env.SCHEDULE_MAX_AHEAD_DAYS, retentionMs: Math.round(env.SCHEDULED_RETENTION_HOURS * 3_600_000) },
    notifyWebhook: env.NOTIFY_WEBHOOK_URL
      ? {
          url: env.NOTIFY_WEBHOOK_URL,
          secret: env.NOTIFY_WEBHOOK_SECRET!,
          maxAttempts: env.NOTIFY_WEBHOOK_MAX_ATTEMPTS,
          retryBaseMs: env.NOTIFY_WEBHOOK_RETRY_BASE_MS,
          retryMaxMs: env.NOTIFY_WEBHOOK_RETRY_MAX_MS,
          timeoutMs: env.NOTIFY_WEBHOOK_TIMEOUT_MS,
        }
      : null,
    apiKeys: { admin: keyPairs(env.ADMIN_API_KEYS), server: keyPairs(env.SERVER_API_KEYS) },
  };
}

function keyPairs(pairs: string[] | undefined): ApiKey[] {
  return (pairs ?? []).map((pair) => {
    const colon = pair.indexOf(':');
    return { id: pair.slice(0, colon), secret: pair.slice(colon + 1) };
  });
}

/** Credentials and TLS come from the first seed written as a URL; every seed gives a host and port. */
function redisTarget(env: Env): RedisTarget | null {
  if (env.REDIS_URL) return { kind: 'single', url: env.REDIS_URL };
  if (!env.REDIS_CLUSTER_NODES) return null;
  const urls = env.REDIS_CLUSTER_NODES.map((seed) => new URL(seed.includes('://') ? seed : `redis://${seed}`));
  const withAuth = urls.find((url) => url.username || url.password);
  return {
    kind: 'cluster',
    nodes: urls.map((url) => ({ host: url.hostname, port: Number(url.port) })),
    ...(withAuth?.username && { username: decodeURIComponent(withAuth.username) }),
    ...(withAuth?.password && { password: decodeURIComponent(withAuth.password) }),
    tls: urls.some((url) => url.protocol === 'rediss:'),
  };
}

/**
 * The PostgreSQL URL migrations run against: DATABASE_DIRECT_URL when set, else DATABASE_URL, checked
 * as the node checks them. Throws a ConfigError when neither is set or one is malformed. A
 * DATABASE_URL with `pgbouncer=true` is returned as it is; the migrator refuses it (see migrations.ts).
 */
export function migrationDatabaseUrl(source: NodeJS.ProcessEnv = process.env): string {
  const { DATABASE_URL, DATABASE_DIRECT_URL } = envSchema.shape;
  const env = parseEnv(z.object({ DATABASE_URL, DATABASE_DIRECT_URL }), source);
  const url = env.DATABASE_DIRECT_URL ?? env.DATABASE_URL;
  if (!url) throw new ConfigError('Invalid configuration: DATABASE_URL: expected a postgresql:// connection string, got unset');
  return url;
}

/** "Trust the nearest N proxies", as Fastify's trustProxy function form. */
function hops(count: number): (address: string, hop: number) => boolean {
  return (_address, hop) => hop < count;
}
