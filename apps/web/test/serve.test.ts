// How a node serves the browser client (apps/server/src/transport/http/web.ts): a real node on a free
// port with this run's PostgreSQL and Redis, plain HTTP requests, no browser.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { buildWeb } from '../src/build.ts';

describe('the node serving the browser client', () => {
  let node: TestNode;
  let limited: TestNode;
  let script: string;
  let style: string;

  beforeAll(async () => {
    await buildWeb();
    node = await startNode({ DEV_TOKENS: 'true' });
    // A tiny per-address REST budget: the page's files must not spend it.
    limited = await startNode({ REST_RATE_LIMIT_PER_MINUTE: '3' });
    const html = await (await fetch(`${node.url}/`)).text();
    script = /<script type="module" src="(\/assets\/app-[A-Z0-9]+\.js)">/.exec(html)![1]!;
    style = /<link rel="stylesheet" href="(\/assets\/style-[A-Z0-9]+\.css)">/.exec(html)![1]!;
  });

  afterAll(async () => {
    await node?.close();
    await limited?.close();
  });

  it('serves index.html for revalidation, with a same-origin content security policy', async () => {
    const response = await fetch(`${node.url}/?sticky=abc`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expect(response.headers.get('cache-control')).toBe('no-cache');
    const csp = response.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    const body = await response.text();
    expect(body).toContain('<main id="main">');
    expect(body).not.toContain('%APP_JS%');

    const etag = response.headers.get('etag')!;
    expect(etag).toBeTruthy();
    // As a browser revalidates (fetch would add `cache-control: no-cache` to a conditional request otherwise).
    const again = await fetch(`${node.url}/`, { headers: { 'if-none-match': etag, 'cache-control': 'max-age=0' } });
    expect(again.status).toBe(304);
  });

  it('serves content-hashed assets as immutable, brotli or gzip when accepted', async () => {
    const brotli = await fetch(`${node.url}${script}`, { headers: { 'accept-encoding': 'br' } });
    expect(brotli.status).toBe(200);
    expect(brotli.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(brotli.headers.get('content-encoding')).toBe('br');
    expect(brotli.headers.get('vary')).toMatch(/accept-encoding/i);
    expect(brotli.headers.get('content-type')).toMatch(/javascript/);
    // fetch decodes it: the bundle itself (~98 KB with socket.io-client, no zod since the SDK's
    // validation became opt-in), not a shell.
    expect((await brotli.text()).length).toBeGreaterThan(50_000);

    const gzip = await fetch(`${node.url}${style}`, { headers: { 'accept-encoding': 'gzip' } });
    expect(gzip.headers.get('content-encoding')).toBe('gzip');
    expect(gzip.headers.get('content-type')).toMatch(/^text\/css/);
  });

  it('serves the admin page at /admin and /admin/ under the same policy, its small bundle without the SDK', async () => {
    let adminScript = '';
    for (const path of ['/admin', '/admin/']) {
      const response = await fetch(`${node.url}${path}`, { headers: { 'accept-encoding': 'br' } });
      expect(response.status, path).toBe(200);
      expect(response.headers.get('content-type'), path).toMatch(/^text\/html/);
      expect(response.headers.get('cache-control'), path).toBe('no-cache');
      expect(response.headers.get('content-encoding'), path).toBe('br');
      expect(response.headers.get('content-security-policy'), path).toBe((await fetch(`${node.url}/`)).headers.get('content-security-policy'));
      const body = await response.text();
      expect(body, path).toContain('<title>Chat admin</title>');
      expect(body, path).not.toMatch(/%ADMIN_(JS|CSS)%/);
      adminScript = /<script type="module" src="(\/admin\/assets\/admin-[A-Z0-9]+\.js)">/.exec(body)![1]!;
      expect(body, path).toMatch(/<link rel="stylesheet" href="\/admin\/assets\/admin-style-[A-Z0-9]+\.css">/);
    }
    const bundle = await fetch(`${node.url}${adminScript}`, { headers: { 'accept-encoding': 'gzip' } });
    expect(bundle.status).toBe(200);
    expect(bundle.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(bundle.headers.get('content-encoding')).toBe('gzip');
    const source = await bundle.text();
    // Plain fetch: neither socket.io-client, nor the SDK, nor zod.
    expect(source).not.toMatch(/engine\.io|socket\.io|ChatClient|ZodError/);
    expect(source.length).toBeLessThan(40_000);
  });

  it('answers unknown paths and traversal attempts with the catalogued 404, never a file outside dist', async () => {
    // A name longer than the file system allows, and an API path whose parameter is too long for its
    // route (it falls through to the file server): found by the fuzz suite answering 500.
    const long = 'x'.repeat(300);
    for (const path of ['/nope', '/assets/app-NOPE.js', '/assets/../package.json', '/%2e%2e/%2e%2e/package.json', '/.gitignore', `/${long}`, `/v1/conversations/${long}`, `/v1/calls/${long}`]) {
      const response = await fetch(`${node.url}${path}`);
      expect(response.status, path).toBe(404);
      const body = (await response.json()) as { ok: boolean; error: { code: string } };
      expect(body, path).toMatchObject({ ok: false, error: { code: 'not_found' } });
    }
  });

  it('leaves the API and its routes as they were', async () => {
    const health = await fetch(`${node.url}/healthz`);
    expect(health.status).toBe(200);
    const minted = await fetch(`${node.url}/v1/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(minted.status).toBe(200);
  });

  it('does not count page loads against the per-address REST budget', async () => {
    for (let i = 0; i < 6; i++) {
      expect((await fetch(`${limited.url}/`)).status).toBe(200);
      expect((await fetch(`${limited.url}${script}`)).status).toBe(200);
      expect((await fetch(`${limited.url}/admin`)).status).toBe(200);
      expect((await fetch(`${limited.url}/admin/`)).status).toBe(200);
    }
    // The API's budget (3 per minute here) still applies.
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await fetch(`${limited.url}/v1/conversations`)).status);
    expect(statuses).toContain(429);
  });
});
