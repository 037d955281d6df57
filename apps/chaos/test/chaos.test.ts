import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { findNginx } from '@chat/testkit/cluster';
import { UsageError } from '@chat/loadgen/options';
import { helpText, parseChaosArgs } from '../src/options.ts';
import { formatChecks, type ChaosReport } from '../src/run.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const NODE = join(ROOT, 'node_modules/node/bin/node');
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'chaos-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('chaos CLI', () => {
  it('defaults to the full run of the issue and refuses what it cannot do', () => {
    const parsed = parseChaosArgs([]);
    expect(parsed.help).toBe(false);
    if (parsed.help) return;
    expect(parsed.options).toMatchObject({ clients: 500, phases: ['kill', 'redis', 'postgres', 'drain'], downMs: 5000, redis: 'single' });
    expect(parseChaosArgs(['--redis', 'cluster'])).toMatchObject({ help: false, options: { redis: 'cluster' } });
    expect(() => parseChaosArgs(['--redis', 'sentinel'])).toThrow(UsageError);
    expect(helpText()).toMatch(/--redis MODE +single: .*cluster: .* \[single\]/);
    expect(parseChaosArgs(['--help'])).toEqual({ help: true });
    expect(() => parseChaosArgs(['--phases', 'kill,flood'])).toThrow(UsageError);
    expect(() => parseChaosArgs(['--clients', '3'])).toThrow(UsageError);
    expect(() => parseChaosArgs(['--bogus'])).toThrow(UsageError);
  });

  it('prints a table with a result for every check', () => {
    const table = formatChecks([
      { name: 'a', measured: '1', bound: '0', pass: false },
      { name: 'b', measured: '0', bound: '0', pass: true },
    ]);
    expect(table.split('\n')).toHaveLength(4);
    expect(table).toMatch(/\| a +\| 1 +\| 0 +\| FAIL \|/);
    expect(table).toMatch(/\| b +\| 0 +\| 0 +\| PASS \|/);
  });
});

// The same harness as `npm run chaos`, smaller: every fault in turn, under load, every check passing.
const NGINX = findNginx();

/** A short chaos run (60 clients, 20 msgs/s) with `extra` flags; asserts every check passed and returns the report. */
async function shortRun(name: string, extra: string[], timeout: number): Promise<ChaosReport> {
  const out = join(dir, name);
  const args = [
    '--conditions=@chat/source',
    '--import',
    'tsx',
    'apps/chaos/src/cli.ts',
    ...extra,
    '--clients',
    '60',
    '--rate',
    '20/s',
    '--settle',
    '5s',
    '--down',
    '5s',
    '--workers',
    '1',
    '--quiet',
    '--out',
    out,
  ];
  const result = await run(NODE, args, { cwd: ROOT, timeout, maxBuffer: 16 * 2 ** 20 }).then(
    ({ stdout }) => ({ code: 0, stdout }),
    (error: { code?: number; stdout?: string; stderr?: string }) => ({ code: error.code ?? -1, stdout: `${error.stdout ?? ''}${error.stderr ?? ''}` }),
  );
  const report = JSON.parse(readFileSync(out, 'utf8')) as ChaosReport;
  const failed = report.checks.filter((check) => !check.pass);
  // On failure the message shows the whole table and the run's output.
  expect({ failure: report.failure, failed }, result.stdout).toEqual({ failure: null, failed: [] });
  expect(result.code).toBe(0);
  return report;
}
describe.skipIf(!NGINX)(`chaos run (short)${NGINX ? '' : ' — skipped: no nginx binary (apt-get install -y nginx)'}`, () => {
  it('loses and duplicates nothing through SIGKILL, a Redis restart, a PostgreSQL outage and a drain', async () => {
    const report = await shortRun('report.json', [], 240_000);
    expect(report.phases.map((phase) => phase.name)).toEqual(['kill', 'redis', 'postgres', 'drain']);
    // The faults bit: clients were thrown off, PostgreSQL refused sends, and the counts are real.
    expect(report.load!.connections.unplannedDisconnects).toBeGreaterThan(0);
    expect(report.probe!.unavailable).toBeGreaterThan(0);
    expect(report.database!.acked).toBeGreaterThan(100);
    expect(report.load!.messages.expected).toBeGreaterThan(report.database!.acked);
  }, 300_000);

  // About 45 s: a private Redis Cluster instead of a Redis, and the redis phase alone.
  it('loses and duplicates nothing through a Redis Cluster master failover, presence following every socket', async () => {
    const report = await shortRun('report-cluster.json', ['--redis', 'cluster', '--phases', 'redis'], 150_000);
    expect(report.phases.map((phase) => phase.label)).toEqual(['redis failover']);
    // A master was killed and a replica, not the killed master itself, serves its slots since.
    const failover = report.redisFailover!;
    expect(failover.promoted).not.toBeNull();
    expect(failover.promoted).not.toBe(failover.master);
    expect(failover.presenceKeys[failover.master]).toBe(Math.max(...Object.values(failover.presenceKeys)));
    expect(report.checks.map((check) => check.name)).toEqual(expect.arrayContaining(['Redis master failover', 'no ghost presence after the Redis failover']));
    expect(report.database!.acked).toBeGreaterThan(50);
  }, 180_000);
});
