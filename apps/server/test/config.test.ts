import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, DEV_JWT_SECRET, loadConfig, migrationDatabaseUrl } from '../src/config.ts';
import { ConfigError } from '../src/config-errors.ts';
import { spawnNode, testEnv } from '@chat/testkit/nodes';

function rejection(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('configuration was accepted');
}

describe('configuration', () => {
  it('defaults to an embedded single node in development', () => {
    const config = loadConfig({});
    expect(config.database).toEqual({ kind: 'pglite', dataDir: '.data' });
    expect(config.redis).toBeNull();
    expect(config.port).toBe(3000);
    // The dev secret is public, so minting dev tokens adds no exposure; any real secret turns them off.
    expect(config.devTokens.enabled).toBe(true);
    expect(loadConfig({ JWT_SECRET: 'x'.repeat(40) }).devTokens.enabled).toBe(false);
    expect(loadConfig({ NODE_ENV: 'test' }).devTokens.enabled).toBe(false);
  });

  it('bounds what a socket may leave unsent at 1 MiB unless SOCKET_MAX_BUFFERED_BYTES says otherwise', () => {
    expect(loadConfig({}).socket.maxBufferedBytes).toBe(1024 * 1024);
    expect(loadConfig({ SOCKET_MAX_BUFFERED_BYTES: '262144' }).socket.maxBufferedBytes).toBe(262_144);
  });

  it('keeps finished scheduled messages a week unless SCHEDULED_RETENTION_HOURS says otherwise', () => {
    expect(loadConfig({}).scheduler.retentionMs).toBe(168 * 3600_000);
    expect(loadConfig({ SCHEDULED_RETENTION_HOURS: '0.5' }).scheduler.retentionMs).toBe(1800_000);
    expect(rejection({ SCHEDULED_RETENTION_HOURS: '0' })).toMatch(/^Invalid configuration: SCHEDULED_RETENTION_HOURS: /);
    expect(rejection({ SCHEDULED_RETENTION_HOURS: 'a week' })).toMatch(/^Invalid configuration: SCHEDULED_RETENTION_HOURS: /);
  });

  it('reads the admin and backend API keys as id:secret pairs, a secret may hold colons', () => {
    const secret = `s3cr:${'x'.repeat(30)}`;
    const config = loadConfig({ ADMIN_API_KEYS: `ops-1:${secret}, ops-2:${'y'.repeat(32)}` });
    expect(config.apiKeys.admin).toEqual([
      { id: 'ops-1', secret },
      { id: 'ops-2', secret: 'y'.repeat(32) },
    ]);
    expect(config.apiKeys.server).toEqual([]);
  });

  it('uses PostgreSQL and Redis when their URLs are set', () => {
    const config = loadConfig({ DATABASE_URL: 'postgresql://u@db:5432/chat', REDIS_URL: 'redis://cache:6379' });
    expect(config.database).toMatchObject({ kind: 'postgres', url: 'postgresql://u@db:5432/chat', pgbouncer: false });
    expect(config.redis).toMatchObject({ target: { kind: 'single', url: 'redis://cache:6379' } });
  });

  it('uses a Redis Cluster when REDIS_CLUSTER_NODES lists its seeds, credentials and TLS from a URL seed', () => {
    expect(loadConfig({ REDIS_CLUSTER_NODES: 'r1:7000, r2:7001' }).redis?.target).toEqual({
      kind: 'cluster',
      nodes: [
        { host: 'r1', port: 7000 },
        { host: 'r2', port: 7001 },
      ],
      tls: false,
    });
    expect(loadConfig({ REDIS_CLUSTER_NODES: 'rediss://app:s%40cret@r1:7000,r2:7001' }).redis?.target).toEqual({
      kind: 'cluster',
      nodes: [
        { host: 'r1', port: 7000 },
        { host: 'r2', port: 7001 },
      ],
      username: 'app',
      password: 's@cret',
      tls: true,
    });
  });

  it('takes pgbouncer=true off the URL the driver gets and switches to PgBouncer mode', () => {
    const config = loadConfig({ DATABASE_URL: 'postgresql://u:p%40ss@bouncer:6432/chat?pgbouncer=true&application_name=chat' });
    expect(config.database).toEqual({ kind: 'postgres', url: 'postgresql://u:p%40ss@bouncer:6432/chat?application_name=chat', pgbouncer: true, poolSize: 10 });
    expect(loadConfig({ DATABASE_URL: 'postgresql://u@db/chat?pgbouncer=false' }).database).toMatchObject({ url: 'postgresql://u@db/chat', pgbouncer: false });
    // Read by the migrator only; the node checks it like the rest.
    expect(loadConfig({ DATABASE_URL: 'postgresql://u@bouncer:6432/chat?pgbouncer=true', DATABASE_DIRECT_URL: 'postgresql://u@db:5432/chat' }).database).toMatchObject({ pgbouncer: true });
  });

  it('migrates DATABASE_DIRECT_URL when set, else DATABASE_URL', () => {
    expect(migrationDatabaseUrl({ DATABASE_URL: 'postgresql://u@bouncer:6432/chat?pgbouncer=true', DATABASE_DIRECT_URL: 'postgresql://u@db:5432/chat' })).toBe('postgresql://u@db:5432/chat');
    expect(migrationDatabaseUrl({ DATABASE_URL: 'postgresql://u@db:5432/chat', DATABASE_DIRECT_URL: '' })).toBe('postgresql://u@db:5432/chat');
    expect(() => migrationDatabaseUrl({})).toThrow(/^Invalid configuration: DATABASE_URL: expected a postgresql:\/\/ connection string, got unset$/);
    expect(() => migrationDatabaseUrl({ DATABASE_URL: 'postgresql://u@db/chat', DATABASE_DIRECT_URL: 'postgresql://u@bouncer/chat?pgbouncer=true' })).toThrow(
      /^Invalid configuration: DATABASE_DIRECT_URL: expected PostgreSQL itself/,
    );
  });

  it("documents exactly the variables it reads (CONFIG_VARIABLES) in the README's configuration table", () => {
    const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
    const start = readme.indexOf('\n## Configuration\n');
    const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
    const documented = [...section.matchAll(/^\| `([A-Z][A-Z0-9_]*)` \|/gm)].map((match) => match[1]);
    expect(new Set(documented)).toEqual(new Set(CONFIG_VARIABLES));
    expect(CONFIG_VARIABLES).toContain('DATABASE_DIRECT_URL');
  });

  it.each([
    [{ PORT: 'abc' }, /^Invalid configuration: PORT: expected an integer, got "abc"$/],
    [{ PORT: '70000' }, /^Invalid configuration: PORT: expected a number <= 65535, got "70000"$/],
    [{ DATABASE_URL: 'mysql://x' }, /^Invalid configuration: DATABASE_URL: expected a postgresql:\/\/ connection string/],
    [
      { DATABASE_URL: 'postgresql://u@db/chat?pgbouncer=yes' },
      /^Invalid configuration: DATABASE_URL: expected pgbouncer=true or pgbouncer=false in the query string, got "postgresql:\/\/u@db\/chat\?pgbouncer=yes"$/,
    ],
    [
      { DATABASE_DIRECT_URL: 'postgresql://u@bouncer:6432/chat?pgbouncer=true' },
      /^Invalid configuration: DATABASE_DIRECT_URL: expected PostgreSQL itself, without pgbouncer=true \(migrations hold a session advisory lock/,
    ],
    [{ REDIS_URL: 'localhost:6379' }, /^Invalid configuration: REDIS_URL: expected a redis:\/\/ or rediss:\/\/ URL/],
    [{ REDIS_CLUSTER_NODES: 'r1' }, /^Invalid configuration: REDIS_CLUSTER_NODES: expected host:port seed nodes of a Redis Cluster/],
    [{ REDIS_CLUSTER_NODES: ',' }, /^Invalid configuration: REDIS_CLUSTER_NODES: expected at least 1 comma-separated entry, got ","$/],
    [{ REDIS_CLUSTER_NODES: 'r1:7000', REDIS_URL: 'redis://r:6379' }, /^Invalid configuration: REDIS_CLUSTER_NODES: expected unset when REDIS_URL is set/],
    [{ REDIS_CLUSTER_NODES: 'r1:7000', REDIS_KEY_PREFIX: '{chat}:' }, /^Invalid configuration: REDIS_KEY_PREFIX: expected no \{ or \} with REDIS_CLUSTER_NODES/],
    [{ ADMIN_API_KEYS: 'ops:short' }, /^Invalid configuration: ADMIN_API_KEYS: expected id:secret pairs, comma-separated .*, got a hidden value of 9 characters$/],
    [{ SERVER_API_KEYS: `a:${'s'.repeat(32)},a:${'t'.repeat(32)}` }, /^Invalid configuration: SERVER_API_KEYS: expected id:secret pairs with distinct ids, got a hidden value of 69 characters$/],
    [
      { JWT_SECRET_PREVIOUS: 'x'.repeat(40), JWT_ALGORITHM: 'JWKS', JWT_JWKS_URL: 'https://id.example/jwks.json' },
      /^Invalid configuration: JWT_SECRET_PREVIOUS: expected unset unless JWT_ALGORITHM=HS256/,
    ],
    [
      { JWT_SECRET_PREVIOUS: 'x'.repeat(40), JWT_SECRET: 'x'.repeat(40) },
      /^Invalid configuration: JWT_SECRET_PREVIOUS: expected the secret being retired, not JWT_SECRET itself, got a hidden value of 40 characters$/,
    ],
    [{ JWT_SECRET: 'short' }, /^Invalid configuration: JWT_SECRET: expected at least 32 characters, got a hidden value of 5 characters$/],
    [{ JWT_ALGORITHM: 'HS512' }, /^Invalid configuration: JWT_ALGORITHM: expected one of "HS256", "RS256", "JWKS"/],
    [{ JWT_ALGORITHM: 'JWKS' }, /^Invalid configuration: JWT_JWKS_URL: expected an https:\/\/ URL of a JSON Web Key Set \(required when JWT_ALGORITHM=JWKS\), got unset$/],
    [{ JWT_JWKS_URL: 'https://id.example/jwks.json' }, /^Invalid configuration: JWT_JWKS_URL: expected unset unless JWT_ALGORITHM=JWKS, got "https:\/\/id\.example\/jwks\.json"$/],
    [
      { JWT_ALGORITHM: 'JWKS', JWT_JWKS_URL: 'ftp://id.example/jwks.json' },
      /^Invalid configuration: JWT_JWKS_URL: expected an https:\/\/ URL of a JSON Web Key Set \(http:\/\/ only for a loopback host, or outside production\), got "ftp:/,
    ],
    [{ JWT_ALGORITHM: 'JWKS', JWT_JWKS_URL: 'not a url' }, /^Invalid configuration: JWT_JWKS_URL: expected an https:\/\/ URL/],
    [
      { JWT_ALGORITHM: 'JWKS', JWT_JWKS_URL: 'https://id.example/jwks.json', JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----x' },
      /^Invalid configuration: JWT_PUBLIC_KEY: expected unset when JWT_ALGORITHM=JWKS/,
    ],
    [{ JWT_ALGORITHM: 'JWKS', JWT_JWKS_URL: 'https://id.example/jwks.json', DEV_TOKENS: 'true' }, /^Invalid configuration: DEV_TOKENS: expected false unless JWT_ALGORITHM=HS256/],
    [{ JWT_JWKS_CACHE_MAX_AGE_MS: '10' }, /^Invalid configuration: JWT_JWKS_CACHE_MAX_AGE_MS: expected a number >= 1000, got "10"$/],
    [{ JWT_JWKS_COOLDOWN_MS: '10' }, /^Invalid configuration: JWT_JWKS_COOLDOWN_MS: expected a number >= 100, got "10"$/],
    [{ JWT_JWKS_COOLDOWN_MS: '60000', JWT_JWKS_CACHE_MAX_AGE_MS: '30000' }, /^Invalid configuration: JWT_JWKS_COOLDOWN_MS: expected at most JWT_JWKS_CACHE_MAX_AGE_MS, got "60000"$/],
    [{ JWT_MAX_LIFETIME_SECONDS: '10' }, /^Invalid configuration: JWT_MAX_LIFETIME_SECONDS: expected a number >= 60, got "10"$/],
    [
      { JWT_MAX_LIFETIME_SECONDS: '3600', DEV_TOKEN_TTL_SECONDS: '7200' },
      /^Invalid configuration: DEV_TOKEN_TTL_SECONDS: expected at most JWT_MAX_LIFETIME_SECONDS \(longer tokens would be refused\), got "7200"$/,
    ],
    [{ JWT_ALGORITHM: 'RS256' }, /^Invalid configuration: JWT_PUBLIC_KEY: expected a PEM public key \(required when JWT_ALGORITHM=RS256\), got unset$/],
    [{ DEV_TOKENS: 'maybe' }, /^Invalid configuration: DEV_TOKENS: /],
    [{ LOG_LEVEL: 'loud' }, /^Invalid configuration: LOG_LEVEL: expected one of/],
    [{ CORS_ORIGINS: '*' }, /^Invalid configuration: CORS_ORIGINS: expected origins such as https:\/\/app\.example \(scheme:\/\/host\[:port\], no wildcard, no path\), got "\*"$/],
    [{ HTTP_HEADERS_TIMEOUT_MS: '20000', HTTP_REQUEST_TIMEOUT_MS: '10000' }, /^Invalid configuration: HTTP_HEADERS_TIMEOUT_MS: expected at most HTTP_REQUEST_TIMEOUT_MS/],
    [{ SOCKET_CONNECT_TIMEOUT_MS: '10' }, /^Invalid configuration: SOCKET_CONNECT_TIMEOUT_MS: expected a number >= 100, got "10"$/],
    [{ SOCKET_MAX_BUFFERED_BYTES: '1024' }, /^Invalid configuration: SOCKET_MAX_BUFFERED_BYTES: expected a number >= 65536, got "1024"$/],
    [{ SOCKET_MAX_BUFFERED_BYTES: String(2 ** 30) }, /^Invalid configuration: SOCKET_MAX_BUFFERED_BYTES: expected a number <= 268435456, got "1073741824"$/],
    [{ SOCKET_MAX_BUFFERED_BYTES: '1MiB' }, /^Invalid configuration: SOCKET_MAX_BUFFERED_BYTES: expected an integer, got "1MiB"$/],
    [{ RATE_LIMIT_SOCKET_CONNECT: '10 per second' }, /^Invalid configuration: RATE_LIMIT_SOCKET_CONNECT: expected N\/Ts, e\.g\. 20\/10s/],
    [{ CALL_RING_TIMEOUT_MS: '10' }, /^Invalid configuration: CALL_RING_TIMEOUT_MS: expected a number >= 1000, got "10"$/],
    [{ NOTIFY_WEBHOOK_URL: 'ftp://push.example/hook' }, /^Invalid configuration: NOTIFY_WEBHOOK_URL: /],
    [{ NOTIFY_WEBHOOK_URL: 'https://push.example/hook' }, /^Invalid configuration: NOTIFY_WEBHOOK_SECRET: expected a secret of at least 16 characters \(required with NOTIFY_WEBHOOK_URL/],
  ])('rejects %o with one line naming the variable', (env, message) => {
    const text = rejection(env);
    expect(text).toMatch(message);
    expect(text).not.toContain('\n');
  });

  it('masks the password of a URL it echoes in an error line', () => {
    const text = rejection({ DATABASE_URL: 'mysql://chat:hunter2@db:3306/chat' });
    expect(text).toMatch(/^Invalid configuration: DATABASE_URL: .*got "mysql:\/\/chat:\*\*\*@db:3306\/chat"$/);
    expect(text).not.toContain('hunter2');
    expect(rejection({ REDIS_CLUSTER_NODES: 'redis://app:s3cret@r1:7000,r2' })).not.toContain('s3cret');
  });

  it('takes a JWKS URL in JWKS mode: https anywhere, http only on loopback in production', () => {
    const jwks = (env: Record<string, string>) => loadConfig({ JWT_ALGORITHM: 'JWKS', ...env }).jwt;
    expect(jwks({ JWT_JWKS_URL: 'https://id.example/.well-known/jwks.json' })).toMatchObject({
      algorithm: 'JWKS',
      maxLifetimeSeconds: 86_400,
      jwks: { url: 'https://id.example/.well-known/jwks.json', cacheMaxAgeMs: 600_000, cooldownMs: 30_000 },
    });
    expect(jwks({ JWT_JWKS_URL: 'http://id.internal/jwks.json' }).jwks?.url).toBe('http://id.internal/jwks.json');
    expect(loadConfig({}).jwt.jwks).toBeNull();
    const production = { NODE_ENV: 'production', JWT_ALGORITHM: 'JWKS' };
    expect(rejection({ ...production, JWT_JWKS_URL: 'http://id.internal/jwks.json' })).toMatch(
      /^Invalid configuration: JWT_JWKS_URL: expected an https:\/\/ URL in production \(http:\/\/ only for a loopback host\), got "http:\/\/id\.internal\/jwks\.json"$/,
    );
    for (const url of ['http://127.0.0.1:8080/jwks.json', 'http://localhost/jwks.json', 'http://[::1]:9000/jwks.json', 'https://id.example/jwks.json']) {
      expect(loadConfig({ ...production, JWT_JWKS_URL: url }).jwt.jwks?.url).toBe(url);
    }
  });

  it('refuses dev tokens and the default secret in production', () => {
    expect(rejection({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(40), DEV_TOKENS: 'true' })).toMatch(/^Invalid configuration: DEV_TOKENS: expected false in production/);
    expect(rejection({ NODE_ENV: 'production' })).toMatch(/^Invalid configuration: JWT_SECRET: expected a secret of your own in production/);
    expect(rejection({ NODE_ENV: 'production', JWT_SECRET: DEV_JWT_SECRET })).toMatch(/JWT_SECRET/);
    expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(40) }).env).toBe('production');
  });

  it('stops the process with exit code 78 and one stderr line for a bad value', async () => {
    await expect(spawnNode(testEnv({ PORT: 'not-a-port' }), { timeoutMs: 15_000 })).rejects.toThrow(
      /node exited with 78 before listening; stderr: Invalid configuration: PORT: expected an integer, got "not-a-port"$/,
    );
  });
});
