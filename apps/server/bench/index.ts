/**
 * `npm run bench` — the headline benchmark: our N-node cluster (default 3) behind nginx against a bare
 * Socket.IO relay, with the same load generator scenario, in one run, on one machine.
 *
 * 1. Throughput: a fixed scenario (1:1 conversations, or groups with --group-size, open-loop rate,
 *    receipts, typing) through nginx to the nodes on PostgreSQL and Redis; then the same scenario
 *    against the bare relay (bare-relay.ts: one process, in-memory, no persistence, no auth).
 * 2. Connections: idle authenticated WebSocket sockets held by the cluster (through nginx) and by the
 *    relay, up to --idle, with server memory per socket.
 * Prints both side by side with ratios and writes reports/bench-<time>.{json,md}; the load generator's
 * own JSON and HTML reports for each run sit beside them. `npm run bench:scaling` (scaling.ts) runs
 * one load against several node counts.
 *
 *   npm run bench -- [--nodes 3] [--clients 2000] [--rate 2000/s] [--group-size 2] [--duration 30s] [--receipts read] [--typing 0.1] [--idle 10000] [--skip-bare] [--skip-idle] [--cpu-prof]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { holdIdleSockets, type IdleResult } from './connections.ts';
import { newestProfile, summarise } from './profile-summary.ts';
import {
  adapterEnv,
  benchSecret,
  fmt,
  lostDupOrder,
  machineLine,
  perDelivery,
  PROFILES,
  ratio,
  REPORTS,
  runBare,
  runLoad,
  verdict,
  withBareRelay,
  withOurCluster,
  type Run,
  type Scenario,
} from './stack.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '3' },
    clients: { type: 'string', default: '2000' },
    rate: { type: 'string', default: '2000/s' },
    'group-size': { type: 'string', default: '2' },
    duration: { type: 'string', default: '30s' },
    ramp: { type: 'string', default: '500/s' },
    idle: { type: 'string', default: '10000' },
    receipts: { type: 'string', default: 'read' },
    typing: { type: 'string', default: '0.1' },
    grace: { type: 'string', default: '5s' },
    workers: { type: 'string' },
    'rate-limits': { type: 'string', default: 'on' },
    adapter: { type: 'string' },
    redis: { type: 'string', default: 'single' },
    'node-flags': { type: 'string' },
    'skip-bare': { type: 'boolean', default: false },
    'skip-idle': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(
    'npm run bench -- [--nodes 3] [--clients 2000] [--rate 2000/s] [--group-size 2] [--duration 30s] [--ramp 500/s] [--receipts read|delivered|none] [--typing 0.1] [--grace 5s] [--workers N] [--rate-limits on|off] [--adapter routed|classic|sharded] [--redis single|cluster|both] [--node-flags "…"] [--idle 10000] [--skip-bare] [--skip-idle] [--cpu-prof]',
  );
  console.log('  --group-size N  conversations of N members (clients/N groups) instead of 1:1: the group fan-out scenario, e.g. --group-size 20 --rate 100/s');
  console.log("  --adapter       REDIS_ADAPTER of the nodes (default: the server's default)");
  console.log("  --redis         single: the machine's Redis (REDIS_URL); cluster: a private Redis Cluster (3 masters + 3 replicas from redis-server);");
  console.log('                  both: the load on each, side by side (idle sockets on the single Redis only)');
  console.log('  --node-flags    extra Node.js flags for every node, e.g. "--perf-basic-prof-only-functions" to name JIT frames in `perf record -a -g`');
  console.log('  --cpu-prof      run node-1 with --cpu-prof into reports/profiles/ and print where its CPU time goes (profiling slows that node)');
  console.log('Env: DATABASE_URL (server for the throwaway database; default postgresql://postgres@127.0.0.1:5432/postgres), REDIS_URL (default redis://127.0.0.1:6379)');
  process.exit(0);
}

const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const nodes = Number(values.nodes);
if (!['single', 'cluster', 'both'].includes(values.redis!)) throw new Error(`--redis takes single, cluster or both: ${values.redis}`);
const redisModes = values.redis === 'both' ? (['single', 'cluster'] as const) : [values.redis as 'single' | 'cluster'];
const groupSize = Number(values['group-size']);
const { secret, token } = benchSecret();
const scenario: Scenario = {
  clients: values.clients!,
  conversations: String(Math.floor(Number(values.clients) / groupSize)),
  'group-size': String(groupSize),
  'devices-per-user': '1',
  rate: values.rate!,
  duration: values.duration!,
  ramp: values.ramp!,
  transport: 'websocket',
  churn: '0',
  typing: values.typing!,
  receipts: values.receipts!,
  grace: values.grace!,
  presence: '0',
  // The load generator's default (cores - 1) unless given.
  ...(values.workers && { workers: values.workers }),
};

interface Results {
  ours?: Run;
  /** With --redis both: the same load on the Redis Cluster. */
  oursCluster?: Run;
  bare?: Run;
  oursIdle?: IdleResult;
  bareIdle?: IdleResult;
}

async function main(): Promise<void> {
  mkdirSync(REPORTS, { recursive: true });
  const results: Results = {};
  for (const [i, redis] of redisModes.entries()) {
    const ours = {
      nodes,
      secret,
      stamp,
      redis,
      rateLimits: values['rate-limits'] !== 'off',
      cpuProf: values['cpu-prof'],
      nodeFlags: values['node-flags']?.split(/\s+/).filter(Boolean) ?? [],
      env: adapterEnv(values.adapter),
    };
    await withOurCluster(ours, async (cluster, databaseUrl) => {
      const nodePids = () => cluster.nodes.map((node) => node.pid);
      // Idle sockets first, on fresh processes, so the load phase's garbage does not blur the RSS delta.
      if (!values['skip-idle'] && i === 0) {
        const idle = await holdIdleSockets(cluster.url, Number(values.idle), nodePids, (i) => token(`idle-${i}`));
        idle.release();
        results.oursIdle = { ...idle };
      }
      const name = `ours-${nodes}n${redis === 'cluster' ? '-redis-cluster' : ''}`;
      await runLoad(cluster.url, nodePids(), scenario, ['--jwt-secret', secret], { warmup: true, name, stamp });
      const run = await runLoad(cluster.url, nodePids(), scenario, ['--jwt-secret', secret], { name, stamp, metricsUrls: cluster.nodes.map((node) => node.url), databaseUrl });
      if (i === 0) results.ours = run;
      else results.oursCluster = run;
    });
  }

  if (!values['skip-bare']) {
    if (!values['skip-idle']) {
      await withBareRelay(async (url, pid) => {
        const idle = await holdIdleSockets(
          url,
          Number(values.idle),
          () => [pid],
          (i) => token(`idle-${i}`),
        );
        idle.release();
        results.bareIdle = { ...idle };
      });
    }
    results.bare = await runBare(scenario, stamp);
  }
  report(results);
  if (values['cpu-prof']) {
    // node-1 wrote its profile when the cluster stopped it; it covers set-up, warm-up and the load.
    const newest = newestProfile(PROFILES);
    if (newest) console.log(`\nnode-1 CPU profile: ${newest}\n${summarise(newest)}`);
  }
}

function report({ ours, oursCluster, bare, oursIdle, bareIdle }: Results): void {
  const m = (run?: Run) => run?.summary.messages;
  /** A metric of a load run; `idle` rows read the idle-socket phases instead (single Redis only). */
  type Row = [name: string, value: (run: Run | undefined, isBare: boolean) => number | undefined, note: string];
  const idleOf = (isBare: boolean) => (isBare ? bareIdle : oursIdle);
  const rows: Row[] = [
    ['acked msgs/s', (run) => m(run)?.ackedRate, ''],
    ['deliveries/s', (run) => m(run)?.deliveryRate, ''],
    ['ack p50 (ms)', (run) => m(run)?.ackMs?.p50, ''],
    ['ack p99 (ms)', (run) => m(run)?.ackMs?.p99, ''],
    ['end-to-end p50 (ms)', (run) => m(run)?.e2eMs?.p50, ''],
    ['end-to-end p99 (ms)', (run) => m(run)?.e2eMs?.p99, ''],
    ['lost / duplicated / out of order', (run) => lostDupOrder(run), 'sum'],
    ['server CPU µs per delivered message', (run) => perDelivery(run, run?.cpuByComponent.nodes), 'load phase; nodes only'],
    ['stack CPU µs per delivered message', (run) => perDelivery(run, run?.stackCpuSeconds), 'load phase; + nginx, PostgreSQL, Redis'],
    ...(['PostgreSQL', 'Redis', 'nginx'] as const).map(
      (component): Row => [`  of which ${component} µs per delivered message`, (run) => perDelivery(run, run?.cpuByComponent[component]), 'load phase; all its processes'],
    ),
    ['messages per insert statement', (run, isBare) => (isBare ? undefined : run?.batch?.messages), 'group commit, mean over the nodes'],
    ['receipt reports per statement', (run, isBare) => (isBare ? undefined : run?.batch?.receipts), 'group commit, mean over the nodes'],
    ['PostgreSQL checkpoints during the run', (run, isBare) => (isBare ? undefined : run?.background?.checkpoints), 'the whole server; each makes the next write of every page log it whole'],
    ['PostgreSQL autovacuum and autoanalyze runs', (run, isBare) => (isBare ? undefined : run?.background?.autovacuums), "during the run, on the benchmark's tables"],
    ['loadgen CPU (% of a core)', (run) => run?.summary.cpu.processCpuPct, ''],
    ['machine CPU busy (% of all cores)', (run) => run?.machineBusyPct, 'load phase; everything, kernel included: near 100 means saturated'],
    ['idle sockets held', (run, isBare) => (run === oursCluster ? undefined : idleOf(isBare)?.connected), `target ${values.idle}`],
    ['server KB per idle socket', (run, isBare) => (run === oursCluster ? undefined : kb(idleOf(isBare)?.rssBytesPerSocket)), 'RSS delta after a full GC; nodes only'],
    ['  of which V8 heap in use', (run, isBare) => (run === oursCluster ? undefined : kb(idleOf(isBare)?.heapBytesPerSocket)), 'what the sockets keep alive'],
  ];
  const withCluster = oursCluster !== undefined;
  const first = redisModes[0] === 'cluster' ? 'Redis Cluster 3+3' : 'Redis';
  const header = withCluster
    ? `| metric | ours (${nodes} nodes + nginx, Redis) | ours (${nodes} nodes + nginx, Redis Cluster 3+3) | bare relay | cluster/single | ours (Redis)/bare | note |`
    : `| metric | ours (${nodes} node${nodes === 1 ? '' : 's'} + nginx, ${first}) | bare relay | ours/bare | note |`;
  const lines = [
    `# npm run bench — ${new Date().toISOString()}`,
    '',
    `Machine: ${machineLine()}; everything co-located (${nodes} nodes, nginx, PostgreSQL, Redis${withCluster || redisModes[0] === 'cluster' ? ' (the Redis Cluster: 6 redis-server processes)' : ''}, load generator).`,
    `Scenario: ${JSON.stringify(scenario)}`,
    '',
    header,
    withCluster ? '|---|---|---|---|---|---|---|' : '|---|---|---|---|---|',
    ...rows.map(([name, value, note]) => {
      const [a, b] = [value(ours, false), value(bare, true)];
      if (!withCluster) return `| ${name} | ${fmt(a)} | ${fmt(b)} | ${ratio(a, b)} | ${note} |`;
      const c = value(oursCluster, false);
      return `| ${name} | ${fmt(a)} | ${fmt(c)} | ${fmt(b)} | ${ratio(c, a)} | ${ratio(a, b)} | ${note} |`;
    }),
    '',
    `Verdicts: ours ${verdict(ours)};${withCluster ? ` ours on the Redis Cluster ${verdict(oursCluster)};` : ''} bare ${verdict(bare)}.`,
    oursIdle?.stoppedBy ? `Cluster idle connections stopped early: ${oursIdle.stoppedBy}` : '',
    bareIdle?.stoppedBy ? `Relay idle connections stopped early: ${bareIdle.stoppedBy}` : '',
  ];
  const text = lines.join('\n');
  console.log(`\n${text}`);
  writeFileSync(join(REPORTS, `bench-${stamp}.md`), `${text}\n`);
  writeFileSync(join(REPORTS, `bench-${stamp}.json`), JSON.stringify({ scenario, machine: machineLine(), results: { ours, oursCluster, bare, oursIdle, bareIdle } }, null, 2));
  console.log(`\nreports/bench-${stamp}.{md,json}, load generator reports: reports/bench-${stamp}-{ours-${nodes}n,bare}.{json,html}`);
}

function kb(bytes: number | undefined): number | undefined {
  return bytes === undefined ? undefined : bytes / 1024;
}

await main();
