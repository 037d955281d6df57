// The observability kit (infra/observability/) checked offline against a real node: the Grafana
// dashboard's shape, that every metric a dashboard or alert expression queries is one a node exposes,
// that every expression parses with Prometheus's own PromQL grammar (@prometheus-io/lezer-promql),
// the Prometheus and Grafana provisioning files and their wiring in docker-compose.yml; and the node's
// side of it: chat_http_request_duration_seconds by route pattern, readiness/drain gauges, X-Request-Id.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parser } from '@prometheus-io/lezer-promql';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { freePort } from '@chat/testkit/cluster';
import { eventually } from '@chat/testkit/eventually';
import { findExecutable } from '@chat/testkit/executables';
import { startNode, testEnv, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { connectDevice, uniqueUser, type Device } from '@chat/testkit/users';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');
type Dict = Record<string, unknown>;
const asDict = (value: unknown): Dict => (value && typeof value === 'object' && !Array.isArray(value) ? (value as Dict) : {});

const DASHBOARD_PATH = 'infra/observability/grafana/chat-cluster.json';
const ALERTS_PATH = 'infra/observability/prometheus/alerts.yml';
const PROMETHEUS_PATH = 'infra/observability/prometheus/prometheus.yml';

/** Series Prometheus makes itself for every target, which no node exposes. */
const PROMTOOL = findExecutable('promtool');
const PROMETHEUS = findExecutable('prometheus');
const SCRAPE_SERIES = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);

/**
 * The series names a /metrics text gives Prometheus: every sample's name, plus every declared family's
 * (a labelled counter nobody incremented yet has `# TYPE` but no sample; it gets series once it does).
 * A histogram is stored as _bucket/_sum/_count only: its bare name is not a series.
 */
export function exposedSeriesNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\w+)$/.exec(line);
    if (type) {
      const [, name, kind] = type as unknown as [string, string, string];
      if (kind === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
      else if (kind === 'summary') for (const suffix of ['', '_sum', '_count']) names.add(name + suffix);
      else names.add(name);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (sample) names.add(sample[1]!);
  }
  return names;
}

/** Grafana's variables as a query sees them after substitution, so the expression is plain PromQL. */
const substituteGrafana = (expr: string): string => expr.replaceAll('$__rate_interval', '5m').replaceAll('$__interval', '1m').replaceAll('$__range', '1h').replaceAll('$node', '.*');

/** Parses PromQL with Prometheus's grammar: the metric names selected, and the syntax errors (positions). */
export function parsePromQL(expr: string): { metrics: string[]; errors: string[] } {
  const tree = parser.parse(expr);
  const metrics: string[] = [];
  const errors: string[] = [];
  tree.iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(`syntax error at ${node.from}: …${expr.slice(Math.max(0, node.from - 20), node.to + 20)}…`);
      if (node.name === 'VectorSelector') {
        const first = node.node.firstChild;
        if (first?.name === 'Identifier') metrics.push(expr.slice(first.from, first.to));
      }
    },
  });
  return { metrics, errors };
}

/** Problems with one expression against the names a node exposes: syntax errors, unknown metrics. */
function exprProblems(expr: string, exposed: Set<string>): string[] {
  const { metrics, errors } = parsePromQL(expr);
  if (metrics.length === 0) errors.push('selects no metric');
  return [...errors, ...metrics.filter((name) => !exposed.has(name) && !SCRAPE_SERIES.has(name)).map((name) => `unknown metric ${name}`)];
}

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: Array<{ expr?: string; refId?: string; datasource?: { uid: string } }>;
  panels?: Panel[];
}
const dashboard = JSON.parse(read(DASHBOARD_PATH)) as Dict & { panels: Panel[]; templating: { list: Dict[] } };
const allPanels: Panel[] = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
const dashboardExprs = allPanels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr ?? '' })));
const variableQueries = dashboard.templating.list
  .filter((v) => v.type === 'query')
  .map((v) => ({ panel: `variable ${String(v.name)}`, expr: /label_values\(([^,)]+)/.exec(String(asDict(v.query).query ?? v.query))?.[1] ?? '' }));

interface Rule {
  alert?: string;
  expr?: string;
  for?: string;
  labels?: Dict;
  annotations?: Dict;
}
const alerts = parse(read(ALERTS_PATH)) as { groups: Array<{ name: string; rules: Rule[] }> };
const rules = alerts.groups.flatMap((group) => group.rules);

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
const readmeAnchors = new Set(
  read('README.md')
    .split('\n')
    .filter((line) => /^#{1,6} /.test(line))
    .map((line) =>
      line
        .replace(/^#+ /, '')
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    ),
);

describe('Grafana dashboard (chat-cluster.json)', () => {
  it('has the dashboard model’s required fields, a datasource variable and a multi-value node variable', () => {
    expect(dashboard).toMatchObject({ uid: 'chat-cluster', title: expect.any(String), editable: expect.any(Boolean), time: { from: expect.any(String), to: expect.any(String) } });
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.id).toBeNull();
    const vars = Object.fromEntries(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars.datasource).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(vars.node).toMatchObject({ type: 'query', multi: true, includeAll: true, allValue: '.*', datasource: { uid: '${datasource}' } });
  });

  it('gives every panel a unique id and a gridPos inside the 24-column grid, without overlaps', () => {
    const ids = allPanels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { title, gridPos: g } of allPanels) {
      expect(Number.isInteger(g.x) && Number.isInteger(g.y) && Number.isInteger(g.w) && Number.isInteger(g.h), title).toBe(true);
      expect(g.x >= 0 && g.y >= 0 && g.w >= 1 && g.h >= 1 && g.x + g.w <= 24, `${title} ${JSON.stringify(g)}`).toBe(true);
    }
    for (const [i, a] of allPanels.entries()) {
      for (const b of allPanels.slice(i + 1)) {
        const overlap = a.gridPos.x < b.gridPos.x + b.gridPos.w && b.gridPos.x < a.gridPos.x + a.gridPos.w && a.gridPos.y < b.gridPos.y + b.gridPos.h && b.gridPos.y < a.gridPos.y + a.gridPos.h;
        expect(overlap, `${a.title} overlaps ${b.title}`).toBe(false);
      }
    }
  });

  it('gives every query panel targets, each with an expr, a unique refId and the $datasource', () => {
    const queryPanels = allPanels.filter((p) => p.type !== 'row' && p.type !== 'text');
    expect(queryPanels.length).toBeGreaterThanOrEqual(15);
    for (const panel of queryPanels) {
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      expect(panel.datasource?.uid, panel.title).toBe('${datasource}');
      const refIds = panel.targets!.map((t) => t.refId);
      expect(new Set(refIds).size, panel.title).toBe(refIds.length);
      for (const target of panel.targets!) {
        expect(typeof target.expr === 'string' && target.expr.trim().length > 0, panel.title).toBe(true);
        expect(target.datasource?.uid, panel.title).toBe('${datasource}');
      }
    }
  });

  it('covers what the issue asks for (by the metrics its panels query)', () => {
    const all = dashboardExprs.map((e) => e.expr).join('\n');
    for (const needle of [
      'chat_node_ready',
      'chat_node_draining',
      'chat_connected_sockets',
      'chat_socket_events_total',
      'chat_fanout_frames_total',
      'histogram_quantile(0.99, sum by (le, event) (rate(chat_ack_latency_seconds_bucket',
      'chat_write_batch_size_bucket',
      'chat_cluster_publish_failures_total',
      'chat_rate_limiter_failures_total',
      'chat_presence_failures_total',
      'chat_presence_deferred_users',
      'outcome="unavailable"',
      'chat_rate_limited_total',
      'chat_slow_consumer_disconnects_total',
      'nodejs_eventloop_lag_p99_seconds',
      'nodejs_heap_size_used_bytes',
      'chat_http_request_duration_seconds_bucket',
    ]) {
      expect(all, needle).toContain(needle);
    }
    // No end-to-end latency metric exists on the server: the dashboard says so instead of inventing one.
    expect(JSON.stringify(allPanels.filter((p) => p.type === 'text'))).toContain('no end-to-end');
  });

  it('parses every expr (after Grafana’s variables) with the PromQL grammar', () => {
    const problems = dashboardExprs.flatMap(({ panel, expr }) => parsePromQL(substituteGrafana(expr)).errors.map((e) => `${panel}: ${e}`));
    expect(problems).toEqual([]);
  });
});

describe('Prometheus alert rules (alerts.yml)', () => {
  it('has the alerts the runbook describes, each with for, a severity, a summary, a description and a runbook anchor in the README', () => {
    const names = rules.map((r) => r.alert);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual(
      expect.arrayContaining([
        'ChatNodeDown',
        'ChatNodeNotReady',
        'ChatNoReadyNode',
        'ChatAckLatencyHigh',
        'ChatClusterPublishFailures',
        'ChatPostgresUnavailable',
        'ChatEventLoopLagHigh',
        'ChatSlowConsumerDisconnectSpike',
        'ChatRateLimiterFailures',
        'ChatSocketsDroppedSharply',
        'ChatScheduledMessagesLate',
        'ChatScheduledMessagesFailing',
      ]),
    );
    for (const rule of rules) {
      expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning'], rule.alert).toContain(rule.labels?.severity);
      expect(String(rule.annotations?.summary ?? ''), rule.alert).not.toBe('');
      expect(String(rule.annotations?.description ?? '').length, rule.alert).toBeGreaterThan(40);
      const anchor = /^README\.md#(.+)$/.exec(String(rule.annotations?.runbook_url))?.[1];
      expect(anchor, rule.alert).toBe(String(rule.alert).toLowerCase());
      expect(readmeAnchors.has(anchor!), `README has no heading for #${anchor}`).toBe(true);
    }
  });

  it('parses every alert expr with the PromQL grammar', () => {
    expect(rules.flatMap((r) => parsePromQL(r.expr ?? '').errors.map((e) => `${r.alert}: ${e}`))).toEqual([]);
  });

  it('the grammar rejects a broken expression (the check above can fail)', () => {
    expect(parsePromQL('sum(rate(chat_connected_sockets[5m]) by (').errors).not.toEqual([]);
    expect(parsePromQL('rate(chat_x_total[5m]').errors).not.toEqual([]);
    expect(parsePromQL('histogram_quantile(0.99, sum by (le) (rate(chat_ack_latency_seconds_bucket{event="a"}[5m])))')).toEqual({ metrics: ['chat_ack_latency_seconds_bucket'], errors: [] });
  });
});

describe('Prometheus and Grafana provisioning, wired in docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml')) as { services: Record<string, Dict> };
  const volumes = (service: string): string[] => (compose.services[service]?.volumes as string[]) ?? [];

  it('scrapes every app replica through Docker DNS on port 3000, /metrics, and loads alerts.yml', () => {
    const config = parse(read(PROMETHEUS_PATH)) as { rule_files: string[]; scrape_configs: Dict[] };
    const chat = config.scrape_configs.find((c) => c.job_name === 'chat')!;
    expect(chat.metrics_path).toBe('/metrics');
    expect(chat.dns_sd_configs).toEqual([expect.objectContaining({ names: ['app'], type: 'A', port: 3000 })]);
    expect(String(asDict(compose.services.app!.environment).PORT)).toBe('3000');
    // The config directory is mounted at /etc/prometheus, so the rule file Prometheus loads is alerts.yml.
    expect(volumes('prometheus')).toContain('./infra/observability/prometheus:/etc/prometheus:ro');
    expect(config.rule_files).toEqual(['/etc/prometheus/alerts.yml']);
    expect(asDict(compose.services.prometheus).command).toEqual(expect.arrayContaining(['--config.file=/etc/prometheus/prometheus.yml']));
  });

  it('provisions the Prometheus data source and the dashboard, from paths the compose file mounts', () => {
    const datasources = parse(read('infra/observability/grafana/provisioning/datasources/prometheus.yml')) as { apiVersion: number; datasources: Dict[] };
    expect(datasources.apiVersion).toBe(1);
    expect(datasources.datasources).toEqual([expect.objectContaining({ type: 'prometheus', url: 'http://prometheus:9090', access: 'proxy' })]);
    const providers = parse(read('infra/observability/grafana/provisioning/dashboards/chat-cluster.yml')) as { apiVersion: number; providers: Dict[] };
    expect(providers.apiVersion).toBe(1);
    const path = String(asDict(providers.providers[0]!.options).path);
    expect(volumes('grafana')).toEqual(expect.arrayContaining(['./infra/observability/grafana/provisioning:/etc/grafana/provisioning:ro', `./${DASHBOARD_PATH}:${path}/chat-cluster.json:ro`]));
    for (const mount of [...volumes('grafana'), ...volumes('prometheus')].filter((v) => v.startsWith('./'))) expect(existsSync(join(ROOT, mount.split(':')[0]!)), mount).toBe(true);
  });

  it('pins Prometheus and Grafana images to exact versions, in the observability profile only', () => {
    for (const name of ['prometheus', 'grafana']) {
      expect(String(compose.services[name]!.image), name).toMatch(/^[a-z/]+:v?\d+\.\d+\.\d+$/);
      expect(compose.services[name]!.profiles, name).toEqual(['observability']);
    }
  });
});

// ── against a real node ─────────────────────────────────────────────────────────────────────────────

describe('every metric the dashboard and the alerts query is one a real node exposes', () => {
  let node: TestNode;
  let devices: Device[] = [];
  let text = '';

  beforeAll(async () => {
    node = await startNode({ NODE_ID: 'observability-node', ADMIN_API_KEYS: `ops:${'k'.repeat(32)}` });
    // A bit of traffic so labelled series appear: REST requests (matched and unmatched routes), a
    // group, messages (ack latency, group-commit batches, fan-out).
    const [owner, member] = [uniqueUser('obs-owner'), uniqueUser('obs-member')];
    devices = [await connectDevice(node.url, owner), await connectDevice(node.url, member)];
    const { conversation } = await devices[0]!.ok('conversation:create-group', { title: 'observability', memberIds: [member] });
    for (let i = 0; i < 5; i++) await devices[1]!.ok('message:send', { conversationId: conversation.id, clientMsgId: `obs-${Date.now()}-${i}`, body: `hello ${i}` });
    await fetch(`${node.url}/v1/conversations/${conversation.id}`, { headers: { authorization: `Bearer ${signToken({ sub: owner, name: owner })}` } });
    await fetch(`${node.url}/v1/conversations/c-not-a-real-id-0001`);
    await fetch(`${node.url}/no/such/route/12345`);
    await fetch(`${node.url}/v1/admin/nodes`, { headers: { authorization: 'Bearer not-a-key' } });
    text = await (await fetch(`${node.url}/metrics`)).text();
  });

  afterAll(async () => {
    for (const device of devices) device.close();
    await node?.close();
  });

  it.skipIf(!PROMETHEUS)(
    `evaluates every dashboard and alert expression on a real Prometheus that scraped the node${PROMETHEUS ? '' : ' (skipped: no prometheus binary; `apt-get install prometheus`)'}`,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'chat-prometheus-'));
      const port = await freePort();
      const target = new URL(node.url).host;
      writeFileSync(
        join(dir, 'prometheus.yml'),
        stringify({ global: { scrape_interval: '1s', evaluation_interval: '1s' }, scrape_configs: [{ job_name: 'chat', static_configs: [{ targets: [target] }] }] }),
      );
      const server = spawn(PROMETHEUS!, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=error'], {
        stdio: 'ignore',
      });
      const query = async (expr: string) =>
        (await (await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expr)}`)).json()) as { status: string; error?: string; data?: { result: unknown[] } };
      try {
        // Three scrapes at least, so every rate() has two samples in its window.
        await eventually(async () => expect((await query('count_over_time(up{job="chat"}[1m])')).data?.result[0]).toMatchObject({ value: [expect.anything(), '3'] }), {
          timeoutMs: 30_000,
          intervalMs: 250,
        });
        const failed: string[] = [];
        const empty: string[] = [];
        for (const { panel, expr } of dashboardExprs) {
          const answer = await query(substituteGrafana(expr));
          if (answer.status !== 'success') failed.push(`${panel}: ${answer.error}`);
          else if (answer.data!.result.length === 0) empty.push(panel);
        }
        for (const rule of rules) {
          const answer = await query(rule.expr ?? '');
          if (answer.status !== 'success') failed.push(`alert ${rule.alert}: ${answer.error}`);
        }
        expect(failed).toEqual([]);
        // Empty is right only for what this healthy, quiet node never has: Redis and PostgreSQL errors,
        // rate limiting, slow consumers, webhooks, scheduled messages sent or failed. Every other panel shows data.
        expect(empty.sort()).toEqual([
          'Rate limited /s',
          'Redis and PostgreSQL errors /s',
          'Redis and PostgreSQL errors /s',
          'Scheduled messages /s',
          'Slow-consumer disconnects',
          'Webhook deliveries /s',
        ]);
      } finally {
        server.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      }
    },
    60_000,
  );

  it('produced samples for the histograms the dashboard takes quantiles of', () => {
    expect(text).toMatch(/^chat_ack_latency_seconds_bucket\{[^}]*event="message:send"/m);
    expect(text).toMatch(/^chat_write_batch_size_bucket\{[^}]*writer="messages"/m);
    expect(text).toMatch(/^chat_http_request_duration_seconds_bucket\{[^}]*route="\/v1\/conversations\/:conversationId"/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_p99_seconds\{/m);
  });

  /** The value of the one sample of `name` carrying all of `labels` (in any order), or undefined. */
  const sample = (name: string, labels: Record<string, string>): string | undefined =>
    text
      .split('\n')
      .find((line) => line.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      ?.split(' ')
      .at(-1);

  it('records HTTP duration by route pattern, method and status, never the raw URL', () => {
    const route = '/v1/conversations/:conversationId';
    expect(sample('chat_http_request_duration_seconds_count', { route, method: 'GET', status: '200', node: 'observability-node' })).toBe('1');
    // An id that fails validation: still the route's pattern.
    expect(sample('chat_http_request_duration_seconds_count', { route, method: 'GET', status: '400' })).toBe('1');
    expect(sample('chat_http_request_duration_seconds_count', { route: 'unmatched', method: 'GET', status: '404' })).toBe('1');
    expect(sample('chat_http_request_duration_seconds_bucket', { route: 'unmatched', le: '10' })).toBe('1');
    expect(text).not.toContain('c-not-a-real-id-0001');
    expect(text).not.toContain('/no/such/route');
  });

  it('names in every dashboard expr and variable query only metrics the node exposes', () => {
    const exposed = exposedSeriesNames(text);
    const problems = [...dashboardExprs, ...variableQueries].flatMap(({ panel, expr }) => exprProblems(substituteGrafana(expr), exposed).map((p) => `${panel}: ${p}`));
    expect(problems).toEqual([]);
  });

  it('names in every alert expr only metrics the node exposes', () => {
    const exposed = exposedSeriesNames(text);
    expect(rules.flatMap((r) => exprProblems(r.expr ?? '', exposed).map((p) => `${r.alert}: ${p}`))).toEqual([]);
  });

  it('catches a query of a metric that does not exist, and a histogram queried by its bare name', () => {
    const exposed = exposedSeriesNames(text);
    expect(exprProblems('sum(rate(chat_messages_sent_total{node=~".*"}[5m]))', exposed)).toEqual(['unknown metric chat_messages_sent_total']);
    expect(exprProblems('rate(chat_ack_latency_seconds[5m])', exposed)).toEqual(['unknown metric chat_ack_latency_seconds']);
    // A labelled counter never incremented here (no sample yet) still counts: its family is declared.
    expect(text).toContain('# TYPE chat_slow_consumer_disconnects_total counter');
    expect(exprProblems('increase(chat_slow_consumer_disconnects_total[5m])', exposed)).toEqual([]);
  });
});

describe('readiness and drain as gauges, and X-Request-Id in the request log', () => {
  const lines: Array<Record<string, unknown>> = [];
  let node: Awaited<ReturnType<typeof buildApp>>;
  let url = '';

  beforeAll(async () => {
    const config = loadConfig(testEnv({ NODE_ID: 'request-id-node' }));
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    node = await buildApp(config, pino({ level: 'info', base: { node: config.nodeId } }, sink));
    await node.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(node.server.address() as { port: number }).port}`;
  });

  afterAll(async () => {
    await node?.close();
  });

  const requestLine = (id: string) => lines.find((line) => line.msg === 'request' && line.reqId === id);

  it('uses a valid X-Request-Id as the request id: in the JSON request log line and echoed back', async () => {
    const response = await fetch(`${url}/healthz`, { headers: { 'x-request-id': 'f3a1c2d4e5b60718293a4b5c6d7e8f90' } });
    expect(response.headers.get('x-request-id')).toBe('f3a1c2d4e5b60718293a4b5c6d7e8f90');
    await new Promise((r) => setTimeout(r, 50));
    expect(requestLine('f3a1c2d4e5b60718293a4b5c6d7e8f90')).toMatchObject({ msg: 'request', url: '/healthz', status: 200, node: 'request-id-node' });
  });

  it('generates a UUID without the header, or when the header is not an id (spaces, over 128 characters)', async () => {
    const ids: string[] = [];
    for (const header of [undefined, 'not an id', 'x'.repeat(129), '{"inject":1}']) {
      const response = await fetch(`${url}/healthz`, header === undefined ? {} : { headers: { 'x-request-id': header } });
      const id = response.headers.get('x-request-id') ?? '';
      expect(id, String(header)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      ids.push(id);
    }
    expect(new Set(ids).size).toBe(ids.length);
    await new Promise((r) => setTimeout(r, 50));
    for (const id of ids) expect(requestLine(id), id).toBeDefined();
    expect(JSON.stringify(lines)).not.toContain('not an id');
  });

  it('exports chat_node_ready and chat_dependency_up as /readyz sees them, and chat_node_draining once draining', async () => {
    const before = await (await fetch(`${url}/metrics`)).text();
    expect(before).toMatch(/^chat_node_ready\{node="request-id-node"\} 1$/m);
    expect(before).toMatch(/^chat_node_draining\{node="request-id-node"\} 0$/m);
    expect(before).toMatch(/^chat_dependency_up\{dependency="database",node="request-id-node"\} 1$/m);
    expect(before).toMatch(/^chat_dependency_up\{dependency="redis",node="request-id-node"\} 1$/m);
    node.lifecycle.startDraining();
    const after = await (await fetch(`${url}/metrics`)).text();
    expect(after).toMatch(/^chat_node_ready\{node="request-id-node"\} 0$/m);
    expect(after).toMatch(/^chat_node_draining\{node="request-id-node"\} 1$/m);
    expect((await fetch(`${url}/readyz`)).status).toBe(503);
  });
});

describe.skipIf(!PROMTOOL)(`the alert rules under Prometheus's own promtool${PROMTOOL ? '' : ' (skipped: no promtool; `apt-get install prometheus`)'}`, () => {
  const promtool = (args: string[], cwd?: string) => spawnSync(PROMTOOL!, args, { cwd, encoding: 'utf8', timeout: 60_000 });

  it('accepts alerts.yml: every expression, duration and annotation template', () => {
    const result = promtool(['check', 'rules', join(ROOT, ALERTS_PATH)]);
    expect(result.stdout + result.stderr, 'promtool check rules').toMatch(/SUCCESS: \d+ rules found/);
    expect(result.status).toBe(0);
  });

  it('fires each tested alert when its case says, and keeps it silent otherwise (alerts.test.yml)', () => {
    // The cases name labels only: they run against the rules without their annotations.
    const rules = parse(read(ALERTS_PATH)) as { groups: Array<{ rules: Dict[] }> };
    for (const group of rules.groups) for (const rule of group.rules) delete rule['annotations'];
    const dir = mkdtempSync(join(tmpdir(), 'chat-alerts-'));
    try {
      writeFileSync(join(dir, 'alerts.yml'), stringify(rules));
      copyFileSync(join(ROOT, 'infra/observability/prometheus/alerts.test.yml'), join(dir, 'alerts.test.yml'));
      const result = promtool(['test', 'rules', 'alerts.test.yml'], dir);
      expect(result.stdout + result.stderr, 'promtool test rules').toMatch(/SUCCESS/);
      expect(result.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
