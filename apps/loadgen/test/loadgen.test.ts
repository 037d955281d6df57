import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '@chat/server/errors';
import { operations } from '@chat/server/transport/operations';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { audit, MAX_GAPS, SeqWindow } from '../src/accounting.ts';
import { decodeBody, encodeBody } from '../src/body.ts';
import { renderHtml } from '../src/html.ts';
import { parseCommandLine, parseDuration, parseRange, parseRate, resolveOptions, UsageError } from '../src/options.ts';
import { buildPlan } from '../src/plan.ts';
import { Random } from '../src/random.ts';
import { Schedule } from '../src/schedule.ts';
import { Latency, zeroCounters, HISTOGRAMS } from '../src/stats.ts';
import { buildSummary, type Summary, type SummaryInput } from '../src/summary.ts';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url));

describe('delivery accounting (one device, one conversation)', () => {
  it('takes in-order deliveries without keeping any state per message', () => {
    const window = new SeqWindow(1);
    for (let seq = 2; seq <= 50; seq++) expect(window.add(seq)).toBe('new');
    expect(window.missing(50)).toBe(0);
    expect(window.gapCount).toBe(0);
    expect(window.received).toBe(49);
  });

  it('counts what never arrived as lost, including seqs above the highest received', () => {
    const window = new SeqWindow(0);
    for (const seq of [1, 2, 4, 5, 8]) window.add(seq);
    expect(window.missing(8)).toBe(3);
    expect(window.missingSample(8)).toEqual([3, 6, 7]);
    // Acked up to 10, received up to 8: 9 and 10 are missing too.
    expect(window.missing(10)).toBe(5);
    expect(window.missingSample(10)).toEqual([3, 6, 7, 9, 10]);
    // A late arrival fills its gap and is no longer lost.
    expect(window.add(6)).toBe('late');
    expect(window.missing(10)).toBe(4);
  });

  it('detects duplicates, also of a seq that filled a gap', () => {
    const window = new SeqWindow(0);
    expect(window.add(1)).toBe('new');
    expect(window.add(1)).toBe('duplicate');
    window.add(3);
    expect(window.add(2)).toBe('late');
    expect(window.add(2)).toBe('duplicate');
    expect(window.add(3)).toBe('duplicate');
    expect(window.duplicates).toBe(3);
    expect(window.received).toBe(3);
    expect(window.missing(3)).toBe(0);
  });

  it('counts a delivery below one already delivered as out of order, but not below an own ack', () => {
    const window = new SeqWindow(0);
    window.add(1);
    window.add(3);
    expect(window.add(2)).toBe('late');
    expect(window.outOfOrder).toBe(1);

    // The sending device sees its own message (seq 5) at ack time; seq 4 pushed afterwards is in order.
    expect(window.add(5, true)).toBe('new');
    expect(window.add(4)).toBe('new');
    expect(window.outOfOrder).toBe(1);
    expect(window.missing(5)).toBe(0);
  });

  it('ignores what was there before the load (system messages up to base)', () => {
    const window = new SeqWindow(3);
    expect(window.add(1)).toBe('history');
    expect(window.add(3)).toBe('history');
    expect(window.add(4)).toBe('new');
    expect(window.received).toBe(1);
    expect(window.missing(3)).toBe(0);
    expect(window.missing(6)).toBe(2);
  });

  it('stays bounded when every other message is lost, and still counts them all', () => {
    const window = new SeqWindow(0);
    const count = (MAX_GAPS + 100) * 2;
    for (let seq = 1; seq <= count; seq += 2) window.add(seq);
    // Odd seqs only: a one-seq gap before each of them but the first.
    expect(window.gapCount).toBe(MAX_GAPS);
    expect(window.abandoned).toBe(count / 2 - 1 - MAX_GAPS);
    expect(window.missing(count)).toBe(count / 2);
  });

  it('audits devices against the highest acked seq of each conversation', () => {
    const a = new SeqWindow(1);
    const b = new SeqWindow(1);
    const c = new SeqWindow(0);
    for (const seq of [2, 3, 4]) a.add(seq);
    for (const seq of [2, 4, 4]) b.add(seq);
    for (const seq of [1, 2]) c.add(seq);
    const result = audit(
      [
        { device: 'u1#0', conversationId: 'x', window: a },
        { device: 'u2#0', conversationId: 'x', window: b },
        { device: 'u2#0', conversationId: 'y', window: c },
      ],
      new Map([['x', 4]]),
    );
    // x: seqs 2..4 at two devices = 6 expected, b lacks 3; y: nothing acked, so nothing expected.
    expect(result).toMatchObject({ expected: 6, received: 5, lost: 1, duplicates: 1, incomplete: 1 });
    expect(result.samples).toEqual([{ device: 'u2#0', conversationId: 'x', missing: [3], lost: 1 }]);
  });
});

describe('building blocks', () => {
  it('carries the send time and device in the body, and ignores other messages', () => {
    const body = encodeBody({ t: 1795400780620.773, d: 42 }, 80);
    expect(body).toHaveLength(80);
    expect(decodeBody(body)).toEqual({ t: 1795400780620.773, d: 42 });
    expect(decodeBody('alice created the group')).toBeNull();
    expect(decodeBody('{"t":"x","d":1}')).toBeNull();
  });

  it('parses durations, rates and ranges, and rejects nonsense', () => {
    expect(parseDuration('d', '500ms')).toBe(500);
    expect(parseDuration('d', '2m')).toBe(120_000);
    expect(parseDuration('d', 3)).toBe(3000);
    expect(parseRate('r', '2000/s')).toBe(2000);
    expect(parseRate('r', '120/m')).toBe(2);
    expect(parseRange('g', '2..8', 2, 257)).toEqual({ min: 2, max: 8 });
    expect(parseRange('g', 3, 2, 257)).toEqual({ min: 3, max: 3 });
    expect(() => parseRange('g', '8..2', 2, 257)).toThrow(UsageError);
    expect(() => parseDuration('d', 'soon')).toThrow(UsageError);
    expect(() => parseRate('r', 'fast')).toThrow(UsageError);
  });

  it('reads a scenario whose keys are the flags, with flags overriding it', () => {
    const scenario = JSON.stringify({ clients: 50, 'group-size': '2..4', rate: '20/s', duration: '10s', seed: 7 });
    const { options } = parseCommandLine(['--scenario', 's.json', '--rate', '40/s'], () => scenario, {});
    expect(options).toMatchObject({ clients: 50, groupSize: { min: 2, max: 4 }, rate: 40, durationMs: 10_000, seed: 7 });
    expect(() => parseCommandLine(['--scenario', 's.json'], () => '{"clientz": 5}', {})).toThrow(/unknown key "clientz"/);
    expect(() => parseCommandLine(['--clients', 'many'], () => '', {})).toThrow(UsageError);
    expect(() => parseCommandLine(['--bogus'], () => '', {})).toThrow(UsageError);
    // Groups of 10 cannot be formed from 4 users.
    expect(() => resolveOptions({ clients: 4, 'group-size': '2..10' })).toThrow(/needs at least 10 users/);
  });

  it('plans the same run from the same seed: every device placed, distinct direct pairs, distinct members', () => {
    const options = resolveOptions({ clients: 300, 'devices-per-user': '1..3', conversations: 150, 'group-size': '2..6', workers: 3, seed: 11, 'run-id': 'plan' });
    const plan = buildPlan(options);
    expect(buildPlan(options)).toEqual(plan);
    expect(plan.devices).toBe(300);
    expect(plan.users.reduce((sum, user) => sum + user.devices.length, 0)).toBe(300);
    expect(new Set(plan.users.map((user) => user.worker))).toEqual(new Set([0, 1, 2]));
    const pairs = plan.conversations.filter((c) => c.kind === 'direct').map((c) => [...c.members].sort().join('|'));
    expect(new Set(pairs).size).toBe(pairs.length);
    for (const conversation of plan.conversations) expect(new Set(conversation.members).size).toBe(conversation.members.length);
    expect(plan.conversations.some((c) => c.kind === 'group')).toBe(true);
  });

  it('places devices as --placement says: the SDK id per device, a conversation together, or everyone together', () => {
    const base = { clients: 200, conversations: 100, 'group-size': '2', seed: 5, 'run-id': 'place' } as const;
    expect(buildPlan(resolveOptions(base)).users.every((user) => user.sticky === undefined)).toBe(true);
    // Each user takes the key of its first conversation, so a conversation whose members are in no
    // earlier one has one key for all of them; with one conversation per user (the scaling bench's
    // shape) that is most of them.
    const together = buildPlan(resolveOptions({ ...base, placement: 'conversation' }));
    const seen = new Set<number>();
    let whole = 0;
    for (const conversation of together.conversations) {
      if (conversation.members.every((member) => !seen.has(member))) {
        expect(conversation.members.map((member) => together.users[member]!.sticky)).toEqual(conversation.members.map(() => `conv-${conversation.index}`));
        whole += 1;
      }
      for (const member of conversation.members) seen.add(member);
    }
    expect(whole).toBeGreaterThan(together.conversations.length / 2);
    expect(new Set(buildPlan(resolveOptions({ ...base, placement: 'one' })).users.map((user) => user.sticky))).toEqual(new Set(['one']));
    expect(() => resolveOptions({ ...base, placement: 'nowhere' })).toThrow(UsageError);
  });

  it('fires an open-loop schedule at its rate and reports how late a caller polled', () => {
    const uniform = new Schedule(10, 'uniform', new Random(1), 0);
    let fired = 0;
    expect(uniform.due(1000, () => fired++)).toBe(900);
    expect(fired).toBe(10);
    const poisson = new Schedule(1000, 'poisson', new Random(2), 0);
    let events = 0;
    poisson.due(10_000, () => events++);
    expect(events).toBeGreaterThan(9500);
    expect(events).toBeLessThan(10_500);
  });

  it('merges latency histograms from several threads into true percentiles', () => {
    const a = new Latency();
    const b = new Latency();
    for (let i = 1; i <= 90; i++) a.record(1);
    for (let i = 1; i <= 10; i++) b.record(100);
    const merged = new Latency();
    merged.add(Latency.decode(a.encode()));
    merged.add(Latency.decode(b.encode()));
    expect(merged.count).toBe(100);
    expect(merged.percentile(50)).toBeCloseTo(1, 1);
    expect(merged.percentile(95)).toBeCloseTo(100, 0);
  });
});

describe('verdict', () => {
  const input = (overrides: Partial<SummaryInput>): SummaryInput => {
    const options = resolveOptions({ clients: 4, conversations: 2, 'run-id': 'v', seed: 1 });
    const counters = { ...zeroCounters(), connects: 4, sent: 10, acked: 10 };
    return {
      options,
      plan: buildPlan(options),
      startedAt: new Date(),
      wallS: 5,
      counters,
      errors: {},
      histograms: Object.fromEntries(HISTOGRAMS.map((name) => [name, new Latency()])) as SummaryInput['histograms'],
      timeline: [],
      phases: [{ name: 'load', startS: 0, endS: 5 }],
      created: 2,
      load: [],
      audit: { expected: 20, received: 20, lost: 0, duplicates: 0, outOfOrder: 0, incomplete: 0, samples: [], waitedMs: 0, duplicateSamples: [], lateSamples: [] },
      warnings: [],
      failure: null,
      cpu: { coordinator: { worker: -1, cpuUs: 0, wallMs: 1, eluWeighted: 0, eluMax: 0, busySeconds: 0, maxLagMs: 0 }, workers: [], processCpuUs: 0 },
      ...overrides,
    };
  };
  const base = input({}).audit!;

  it('exits 0 when clean, 1 on lost or duplicated messages, 3 when nothing could be checked', () => {
    expect(buildSummary(input({})).verdict).toEqual({ ok: true, exitCode: 0, reasons: [] });
    expect(buildSummary(input({ audit: { ...base, received: 19, lost: 1, incomplete: 1 } })).verdict).toMatchObject({ exitCode: 1, reasons: [expect.stringContaining('1 deliveries lost')] });
    expect(buildSummary(input({ audit: { ...base, duplicates: 2 } })).verdict).toMatchObject({ exitCode: 1, reasons: [expect.stringContaining('2 duplicate')] });
    expect(buildSummary(input({ audit: null, failure: 'worker 0 crashed' })).verdict).toMatchObject({ exitCode: 3 });
    expect(buildSummary(input({ counters: { ...zeroCounters(), connects: 4 } })).verdict).toMatchObject({ exitCode: 3 });
  });

  it('warns about rate limiting and renders a self-contained report', () => {
    const summary = buildSummary(input({ errors: { 'ack/rate_limited': 3, 'typing/rate_limited': 1 } }));
    expect(summary.errors).toMatchObject({ total: 1, byCode: { rate_limited: 1 }, nacks: { rate_limited: 3 } });
    const html = renderHtml(summary);
    expect(html).toContain('<svg');
    // Nothing fetched: no scripts, stylesheets, images, frames or CSS urls.
    expect(html).not.toMatch(/<script|<link|<img|<iframe|@import|url\(/);
  });
});

describe('end to end against a real node', () => {
  let node: TestNode;
  let dir: string;

  beforeAll(async () => {
    node = await startNode({ DEV_TOKENS: 'true', NODE_ID: 'loadgen-test' });
    dir = mkdtempSync(join(tmpdir(), 'loadgen-'));
  });
  afterAll(async () => {
    await node?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--conditions=@chat/source', '--import', 'tsx', cli, ...args], { cwd: repoRoot, timeout: 25_000 });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      if (typeof failed.code !== 'number') throw error;
      return { code: failed.code, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
    }
  }

  it('runs a tiny load cleanly: every acked message at every device once, exit 0, JSON and HTML written', async () => {
    const out = join(dir, 'tiny.json');
    const result = await run([
      '--url',
      node.url,
      '--clients',
      '20',
      '--devices-per-user',
      '1..2',
      '--conversations',
      '10',
      '--group-size',
      '2..3',
      '--rate',
      '30/s',
      '--duration',
      '4s',
      '--churn',
      '2/s',
      '--offline',
      '200ms..800ms',
      '--workers',
      '1',
      '--seed',
      '5',
      '--out',
      out,
    ]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/\[\s*\d+s\] load/);
    const summary = JSON.parse(readFileSync(out, 'utf8')) as Summary;
    expect(summary.verdict).toEqual({ ok: true, exitCode: 0, reasons: [] });
    expect(summary.connections).toMatchObject({ devices: 20, connected: 20, failed: 0 });
    expect(summary.run.plan.created).toBe(10);
    const m = summary.messages;
    expect(m.sent).toBeGreaterThan(60);
    expect(m.sent).toBeLessThan(200);
    expect(m.acked).toBe(m.sent);
    // Each message is expected at least at the sender's device and one other member's.
    expect(m.expected).toBeGreaterThanOrEqual(2 * m.acked);
    expect(m).toMatchObject({ received: m.expected, lost: 0, duplicates: 0, failed: 0, unackedAtEnd: 0 });
    expect(m.deliveries).toBe(m.expected - m.acked);
    // The percentiles are recorded and consistent; how fast they are is the benchmark's business.
    expect(m.ackMs!.p50).toBeGreaterThan(0);
    expect(m.ackMs!.p50).toBeLessThanOrEqual(m.ackMs!.p99);
    expect(m.ackMs!.p99).toBeLessThanOrEqual(m.ackMs!.max);
    expect(m.e2eMs!.count).toBeGreaterThan(0);
    expect(summary.connections.reconnects).toBeGreaterThan(0);
    expect(summary.connections.reconnects).toBe(summary.connections.churnDisconnects);
    expect(summary.errors.total).toBe(0);
    expect(summary.cpu.workers).toHaveLength(1);
    expect(summary.timeline.some((point) => point.phase === 'load' && point.sent > 0)).toBe(true);
    const html = readFileSync(out.replace(/\.json$/, '.html'), 'utf8');
    expect(html).toContain('<svg');
    expect(html).toContain('every acked message reached every device');
  });

  it('fails the gate (exit 1) when the server drops deliveries', async () => {
    // Drop every third live message:new fan-out of this node; nothing reconnects, so nothing resyncs,
    // and history fetches fail, so the SDK cannot fill the gaps it notices either.
    const fetchHistory = operations['history:fetch'];
    operations['history:fetch'] = async () => {
      throw new AppError('unavailable', 'history is down in this test');
    };
    // Every fan-out of this (single) node is written by its LocalDelivery, pre-encoded.
    const local = node.app.nodeRouting!.local;
    const deliver = local.deliver.bind(local);
    let messages = 0;
    local.deliver = (target, packet) => {
      if (packet.startsWith('2["message:new"') && ++messages % 3 === 0) return;
      deliver(target, packet);
    };
    try {
      const out = join(dir, 'lossy.json');
      const result = await run([
        '--url',
        node.url,
        '--clients',
        '10',
        '--conversations',
        '5',
        '--rate',
        '20/s',
        '--duration',
        '2s',
        '--churn',
        '0',
        '--grace',
        '1s',
        '--workers',
        '1',
        '--quiet',
        '--out',
        out,
      ]);
      expect(result.code, result.stdout + result.stderr).toBe(1);
      const summary = JSON.parse(readFileSync(out, 'utf8')) as Summary;
      expect(summary.messages.lost).toBeGreaterThan(0);
      expect(summary.messages.lostSamples.length).toBeGreaterThan(0);
      expect(result.stdout).toMatch(/FAIL \(exit 1\): \d+ deliveries lost/);
    } finally {
      local.deliver = deliver;
      operations['history:fetch'] = fetchHistory;
    }
  });

  it('exits 2 on a usage error without touching the server', async () => {
    const result = await run(['--clients', 'lots']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--clients: expected a number');
  });
});
