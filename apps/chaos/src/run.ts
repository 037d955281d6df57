/**
 * One chaos run: private PostgreSQL and Redis (or Redis Cluster), 3 nodes behind nginx
 * (@chat/testkit), the load generator's SDK clients sending continuously (apps/loadgen), and the
 * faults (faults.ts) in turn inside its load phase. Afterwards every check is measured against its
 * bound (report.ts). Everything started here is stopped in a `finally`, and by the launchers' exit
 * hooks if the process dies first.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism, cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, startCluster, type Cluster } from '@chat/testkit/cluster';
import { startPrivatePostgres, startPrivateRedis, startPrivateRedisCluster, type PrivatePostgres, type PrivateRedis, type PrivateRedisCluster } from '@chat/testkit/services';
import { adminQuery } from '@chat/server/db/admin';
import { applyMigrations } from '@chat/server/db/migrations';
import { runLoadtest, type Io } from '@chat/loadgen/coordinator';
import { resolveOptions } from '@chat/loadgen/options';
import { tokenMinter } from '@chat/loadgen/tokens';
import { Faults } from './faults.ts';
import type { ChaosOptions, PhaseName } from './options.ts';
import { OutageProbe } from './probe.ts';
import { buildChecks, presenceBoundMs, SHUTDOWN_TIMEOUT_MS, TYPING_TTL_MS, type ChaosReport, type PhaseRecord } from './report.ts';
import { checkDatabase, countKeys, heapAfterGc, sampleHashes, stateKeys, timeUntilZero, type RedisTarget } from './verify.ts';

// The run's report, its parts and its table, for callers of runChaos.
export { formatChecks, type ChaosReport, type Check, type FailoverRecord, type PhaseRecord } from './report.ts';

const KEY_PREFIX = 'chaos:';
const KEYS = stateKeys(KEY_PREFIX);
const mib = (bytes: number | null) => (bytes === null ? null : Math.round((bytes / 2 ** 20) * 10) / 10);

export async function runChaos(options: ChaosOptions, io: Io): Promise<ChaosReport> {
  const startedAt = new Date();
  const runId = randomBytes(3).toString('hex');
  const secret = randomBytes(24).toString('hex');
  const phases: PhaseRecord[] = [];
  const report: ChaosReport = {
    tool: 'chat-chaos',
    startedAt: startedAt.toISOString(),
    machine: `${availableParallelism()} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}`,
    options,
    phases,
    checks: [],
    ok: false,
    probe: null,
    database: null,
    heap: [],
    redisFailover: null,
    load: null,
    failure: null,
  };

  let postgres: PrivatePostgres | undefined;
  let redis: PrivateRedis | undefined;
  let redisCluster: PrivateRedisCluster | undefined;
  let cluster: Cluster | undefined;
  let probe: OutageProbe | undefined;
  try {
    io.log(`chaos: starting a private PostgreSQL and ${options.redis === 'cluster' ? 'Redis Cluster (3 masters + 3 replicas)' : 'Redis'}`);
    const startRedis = options.redis === 'cluster' ? startPrivateRedisCluster().then((started) => (redisCluster = started)) : startPrivateRedis().then((started) => (redis = started));
    const started = await Promise.allSettled([startPrivatePostgres().then((started) => (postgres = started)), startRedis]);
    for (const result of started) if (result.status === 'rejected') throw result.reason;
    if (!postgres) throw new Error('PostgreSQL did not start');
    const target: RedisTarget = redisCluster ? { kind: 'cluster', nodes: redisCluster.nodes } : { kind: 'single', url: redis!.url };
    const databaseUrl = Object.assign(new URL(postgres.url), { pathname: '/chat' }).toString();
    await adminQuery(postgres.url, 'CREATE DATABASE chat');
    await applyMigrations({ kind: 'postgres', connectionString: databaseUrl });

    io.log('chaos: starting 3 nodes behind nginx');
    // Each node's inspector, on loopback, only for the forced-GC heap measurement.
    const inspectors = await Promise.all([0, 1, 2].map(() => freePort()));
    cluster = await startCluster({
      nodeArgs: (index) => [`--inspect=127.0.0.1:${inspectors[index]}`],
      nodes: 3,
      verbose: options.verbose,
      accessLog: false,
      env: {
        NODE_ENV: 'production',
        DATABASE_URL: databaseUrl,
        ...(target.kind === 'single' ? { REDIS_URL: target.url, REDIS_CLUSTER_NODES: undefined } : { REDIS_URL: undefined, REDIS_CLUSTER_NODES: target.nodes }),
        REDIS_KEY_PREFIX: KEY_PREFIX,
        JWT_SECRET: secret,
        DEV_TOKENS: 'false',
        LOG_LEVEL: options.verbose ? 'info' : 'warn',
        PRESENCE_NODE_TTL_MS: String(options.presenceTtlMs),
        TYPING_TTL_MS: String(TYPING_TTL_MS),
        SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
        // Per-user budgets would answer the probe's 10 sends/s and the retry bursts after an outage
        // with rate_limited; they have their own tests (cluster-state.test.ts).
        RATE_LIMITS: 'false',
      },
    });
    const nodes = cluster.nodes;
    const heapBefore = await Promise.all(inspectors.map((port) => heapAfterGc(port)));

    const loadOptions = resolveOptions({
      url: cluster.url,
      clients: options.clients,
      rate: options.rate,
      'group-size': options.groupSize,
      'devices-per-user': options.devicesPerUser,
      // The longest the load may last; it ends when the last fault has settled.
      duration: `${Math.ceil(((options.phases.length + 2) * (options.settleMs + options.downMs + 60_000)) / 1000)}s`,
      grace: '30s',
      'jwt-secret': secret,
      'run-id': `chaos-${runId}`,
      quiet: options.quiet,
      ...(options.workers !== null && { workers: options.workers }),
      ...(options.seed !== null && { seed: options.seed }),
    });
    loadOptions.recordAcked = true;
    const mint = tokenMinter(loadOptions);
    probe = await OutageProbe.start(cluster.url, mint, runId);

    let loadStart = 0;
    const atS = () => Math.round((performance.now() - loadStart) / 100) / 10;
    const labelOf = (name: PhaseName) => (name === 'redis' && redisCluster ? 'redis failover' : name);
    const faults = new Faults({ options, io, cluster, target, keys: KEYS, postgres, redis, redisCluster, probe, report });
    const phase = async (name: PhaseName) => {
      const at = atS();
      const started = performance.now();
      const label = labelOf(name);
      io.log(`chaos: [${at} s] ${label}…`);
      const { detail, ok } = await faults.run(name);
      phases.push({ name, label, atS: at, tookMs: Math.round(performance.now() - started), detail, ok });
      io.log(`chaos: [${atS()} s] ${label}: ${detail}`);
    };

    const result = await runLoadtest(loadOptions, io, {
      duringLoad: async () => {
        loadStart = performance.now();
        await sleep(options.settleMs);
        for (const name of options.phases) {
          await phase(name);
          await sleep(options.settleMs);
        }
      },
    });
    report.load = result.summary;
    report.probe = options.phases.includes('postgres') ? probe.report() : null;
    probe.close();
    probe = undefined;

    // After the run every client has closed: nobody may still look online, nobody still typing.
    const presenceBound = presenceBoundMs(options);
    const ghosts = await timeUntilZero(() => countKeys(target, KEYS.conns), presenceBound);
    if (ghosts.ms === null) io.log(`presence check after the run failed: ${ghosts.last} users still online, e.g.\n${(await sampleHashes(target, KEYS.conns)).join('\n')}`);
    const typingBound = TYPING_TTL_MS + 2000;
    const typing = await timeUntilZero(() => countKeys(target, KEYS.typing), typingBound);
    const heapAfter = await Promise.all(inspectors.map((port) => heapAfterGc(port)));
    report.heap = nodes.map((node, i) => ({ node: node.id, beforeMiB: mib(heapBefore[i]!), afterMiB: mib(heapAfter[i]!), restarted: faults.restarted.has(i) }));

    report.database = await checkDatabase(databaseUrl, [...result.acked, ...(report.probe?.acked ?? [])]);
    const { ghostAfterKill, ghostAfterRedis, drainExit } = faults;
    report.checks = buildChecks(options, report, result.summary, { ghosts, ghostAfterKill, ghostAfterRedis, typing, presenceBound, typingBound, drainExit });
    report.ok = report.checks.every((check) => check.pass);
  } catch (error) {
    report.failure = error instanceof Error ? (error.stack ?? error.message) : String(error);
    report.ok = false;
    if (cluster) for (const i of [0, 1, 2]) io.log(`--- last lines of node ${i + 1}:\n${cluster.logs(i).slice(-15).join('\n')}`);
  } finally {
    probe?.close();
    await cluster?.stop().catch(() => {});
    await redis?.destroy().catch(() => {});
    await redisCluster?.destroy().catch(() => {});
    await postgres?.destroy().catch(() => {});
  }
  return report;
}
