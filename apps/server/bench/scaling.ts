/**
 * `npm run bench:scaling` — does a replica add capacity? One fixed open-loop load (default 600 msgs/s,
 * 1:1 conversations, no receipts or typing) against our cluster at several node counts (default 1, 3
 * and 6) in one run, then against the bare relay, on one machine. Prints one table: per node count the
 * stack CPU per delivered message and its split (nodes, PostgreSQL, Redis, nginx), messages per insert
 * statement, end-to-end latency, how busy the machine was, and the ratios the scaling targets are
 * stated in (6 nodes / 1 node, 3 nodes / bare relay).
 *
 * The capacity model's other input: before its load, the middle node count's cluster (3 by default)
 * holds --idle N sockets (default 5000) idle: memory per socket, and CPU per 1,000 idle sockets per
 * component over what the same cluster uses with none.
 *
 * The control: the bare relay run as a cluster (bare-relay.ts with Redis: Socket.IO's sharded adapter,
 * one INCR per message) at the same node counts, behind the same nginx, under the same load. Its
 * growth with the node count is what any Socket.IO cluster pays on this machine (processes sharing
 * its cores, fewer messages per wake-up); ours beyond it is what our design adds. `--skip-bare-cluster`
 * leaves it out.
 *
 * `--placement conversation` puts both members of each conversation on one node, `--placement one` every
 * device on one node (the load generator's flag): what is left of the growth with the node count once
 * no message crosses nodes, or once one node does all the work beside idle ones.
 *
 *   npm run bench:scaling -- [--nodes 1,3,6] [--rate 600/s] [--clients 2000] [--duration 30s] [--idle 5000] [--adapter routed|classic|sharded] [--placement random|conversation|one] [--skip-bare] [--skip-bare-cluster]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { holdIdleSockets, type IdleResult } from './connections.ts';
import {
  adapterEnv,
  benchSecret,
  COMPONENTS,
  cpuOver,
  fmt,
  lostDupOrder,
  machineLine,
  perDelivery,
  ratio,
  REPORTS,
  runBare,
  runBareCluster,
  runLoad,
  verdict,
  withOurCluster,
  type Component,
  type Run,
  type Scenario,
} from './stack.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1,3,6' },
    rate: { type: 'string', default: '600/s' },
    clients: { type: 'string', default: '2000' },
    duration: { type: 'string', default: '30s' },
    idle: { type: 'string', default: '5000' },
    'idle-window': { type: 'string', default: '20' },
    adapter: { type: 'string' },
    'rate-limits': { type: 'string', default: 'on' },
    'skip-bare': { type: 'boolean', default: false },
    'skip-bare-cluster': { type: 'boolean', default: false },
    placement: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(
    'npm run bench:scaling -- [--nodes 1,3,6] [--rate 600/s] [--clients 2000] [--duration 30s] [--idle 5000 (0: skip)] [--idle-window 20 (s)] [--adapter routed|classic|sharded] [--rate-limits on|off] [--placement random|conversation|one] [--skip-bare] [--skip-bare-cluster]',
  );
  console.log('Env: DATABASE_URL (server for the throwaway databases), REDIS_URL (default redis://127.0.0.1:6379)');
  process.exit(0);
}

const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const counts = values.nodes!.split(',').map(Number);
if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 16)) throw new Error(`--nodes takes node counts from 1 to 16, comma-separated: ${values.nodes}`);
const idleOn = counts[Math.floor(counts.length / 2)]!;
const { secret, token } = benchSecret();
const scenario: Scenario = {
  clients: values.clients!,
  conversations: String(Math.floor(Number(values.clients) / 2)),
  'group-size': '2',
  'devices-per-user': '1',
  rate: values.rate!,
  duration: values.duration!,
  ramp: '500/s',
  transport: 'websocket',
  churn: '0',
  typing: '0',
  receipts: 'none',
  presence: '0',
  ...(values.placement && { placement: values.placement }),
};

interface IdleCost {
  nodes: number;
  held: IdleResult;
  /** CPU µs per second per 1,000 idle sockets, per component. */
  cpuPerThousand: Record<Component, number>;
}

async function main(): Promise<void> {
  mkdirSync(REPORTS, { recursive: true });
  const runs = new Map<number, Run>();
  const bareRuns = new Map<number, Run>();
  let idle: IdleCost | undefined;
  for (const nodes of counts) {
    const options = { nodes, secret, stamp, rateLimits: values['rate-limits'] !== 'off', env: adapterEnv(values.adapter) };
    await withOurCluster(options, async (cluster, databaseUrl) => {
      const pids = () => cluster.nodes.map((node) => node.pid);
      const name = `ours-${nodes}n`;
      // Idle sockets first, on fresh processes, so the load phase's garbage does not blur the memory delta.
      if (nodes === idleOn && Number(values.idle) > 0) {
        const windowMs = Number(values['idle-window']) * 1000;
        const empty = await cpuOver(pids(), windowMs);
        const held = await holdIdleSockets(cluster.url, Number(values.idle), pids, (i) => token(`idle-${i}`));
        const quiet = await cpuOver(pids(), windowMs);
        held.release();
        // What the sockets add over the same cluster holding none.
        const perThousand = (c: Component) => (held.connected > 0 ? ((quiet[c] - empty[c]) * 1e6) / (windowMs / 1000) / (held.connected / 1000) : NaN);
        idle = { nodes, held: { ...held }, cpuPerThousand: Object.fromEntries(COMPONENTS.map((c) => [c, perThousand(c)])) as Record<Component, number> };
      }
      await runLoad(cluster.url, pids(), scenario, ['--jwt-secret', secret], { warmup: true, name, stamp });
      runs.set(nodes, await runLoad(cluster.url, pids(), scenario, ['--jwt-secret', secret], { name, stamp, metricsUrls: cluster.nodes.map((node) => node.url), databaseUrl }));
    });
    // Side by side with ours at the same node count, so a drift of the shared box hits both alike.
    if (!values['skip-bare-cluster']) bareRuns.set(nodes, await runBareCluster(nodes, scenario, stamp));
  }
  const bare = values['skip-bare'] ? undefined : await runBare(scenario, stamp);
  report(runs, bareRuns, bare, idle);
}

function report(runs: Map<number, Run>, bareRuns: Map<number, Run>, bare: Run | undefined, idle: IdleCost | undefined): void {
  const columns: Array<[string, Run | undefined]> = [
    ...[...runs].map(([n, run]): [string, Run] => [`${n} node${n === 1 ? '' : 's'}`, run]),
    ...[...bareRuns].map(([n, run]): [string, Run] => [`bare ×${n}`, run]),
    ['bare relay', bare],
  ];
  const row = (name: string, value: (run: Run) => number | undefined, note = '') => `| ${name} | ${columns.map(([, run]) => fmt(run && value(run))).join(' | ')} | ${note} |`;
  const stack = (run: Run) => perDelivery(run, run.stackCpuSeconds);
  const first = runs.get(counts[0]!);
  const last = runs.get(counts[counts.length - 1]!);
  const three = runs.get(3) ?? runs.get(idleOn);
  const bareFirst = bareRuns.get(counts[0]!);
  const bareLast = bareRuns.get(counts[counts.length - 1]!);
  const bareThree = bareRuns.get(3) ?? bareRuns.get(idleOn);
  const growth = (a?: Run, b?: Run) => (a && b ? stack(a) / stack(b) : undefined);
  const perMessage = (r: Run, count: number) => count / Math.max(1, r.summary.messages.deliveries);
  const lines = [
    `# npm run bench:scaling — ${new Date().toISOString()}`,
    '',
    `Machine: ${machineLine()}; everything co-located (nodes, nginx, PostgreSQL, Redis, load generator).`,
    `Load: ${JSON.stringify(scenario)}${values.adapter ? `; REDIS_ADAPTER=${values.adapter}` : ''}`,
    '',
    `| metric | ${columns.map(([name]) => name).join(' | ')} | note |`,
    `|---|${columns.map(() => '---').join('|')}|---|`,
    row('acked msgs/s', (r) => r.summary.messages.ackedRate),
    row('deliveries/s', (r) => r.summary.messages.deliveryRate),
    row('stack CPU µs per delivered message', stack, 'load phase; every process of the stack'),
    ...COMPONENTS.map((c) => row(`  ${c} µs per delivered message`, (r) => perDelivery(r, r.cpuByComponent[c]))),
    row('nodes wake-ups per delivered message', (r) => perMessage(r, r.wakeupsByComponent.nodes), 'voluntary context switches, every thread'),
    row('nodes CPU µs per wake-up', (r) => (r.cpuByComponent.nodes * 1e6) / Math.max(1, r.wakeupsByComponent.nodes)),
    row(
      'stack wake-ups per delivered message',
      (r) =>
        perMessage(
          r,
          Object.values(r.wakeupsByComponent).reduce((a, b) => a + b, 0),
        ),
      'nodes, PostgreSQL, Redis, nginx',
    ),
    row('messages per insert statement', (r) => r.batch?.messages, 'group commit, mean over the nodes'),
    row('WAL bytes per acked message', (r) => (r.background ? r.background.walBytes / Math.max(1, r.summary.messages.acked) : undefined), 'the whole run (set-up included), the whole server'),
    row('end-to-end p50 (ms)', (r) => r.summary.messages.e2eMs?.p50),
    row('end-to-end p99 (ms)', (r) => r.summary.messages.e2eMs?.p99),
    row('ack p99 (ms)', (r) => r.summary.messages.ackMs?.p99),
    row('lost + duplicated + out of order', lostDupOrder),
    row('machine CPU busy (% of all cores)', (r) => r.machineBusyPct, 'near 100 means saturated'),
    row('loadgen CPU (% of a core)', (r) => r.summary.cpu.processCpuPct),
    '',
    `Stack CPU per delivered message, ${counts[counts.length - 1]} nodes / ${counts[0]} node${counts[0] === 1 ? '' : 's'}: **${ratio(last && stack(last), first && stack(first))}** (target ≤ 1.15x).`,
    `Stack CPU per delivered message, ${three ? [...runs].find(([, r]) => r === three)![0] : '?'} nodes / bare relay: **${ratio(three && stack(three), bare && stack(bare))}** (target ≤ 4x).`,
    ...(bareRuns.size > 0
      ? [
          `Control, the bare relay as a cluster of as many processes: bare ×${counts[counts.length - 1]} / bare ×${counts[0]} = **${ratio(bareLast && stack(bareLast), bareFirst && stack(bareFirst))}**; ours grows ${ratio(growth(last, first), growth(bareLast, bareFirst))} as much as the control does.`,
          `Ours at ${[...bareRuns].find(([, r]) => r === bareThree)?.[0] ?? '?'} nodes / the control at as many: **${ratio(three && stack(three), bareThree && stack(bareThree))}** (what persistence, auth, validation and our fan-out add to a minimal Socket.IO cluster).`,
        ]
      : []),
    '',
    `Verdicts: ${columns.map(([name, run]) => `${name} ${verdict(run)}`).join('; ')}.`,
  ];
  if (idle) {
    lines.push(
      '',
      `## Idle sockets (capacity-model input): ${idle.held.connected} held on ${idle.nodes} nodes through nginx, ${values['idle-window']} s window`,
      '',
      '| per idle socket | value | note |',
      '|---|---|---|',
      `| node memory (KB RSS) | ${fmt(idle.held.rssBytesPerSocket / 1024)} | after a full GC, all nodes |`,
      `| node V8 heap in use (KB) | ${fmt(idle.held.heapBytesPerSocket / 1024)} | |`,
      ...COMPONENTS.map((c) => `| ${c} CPU µs/s per 1,000 sockets | ${fmt(idle.cpuPerThousand[c])} | over the same cluster holding no socket |`),
    );
  }
  const text = lines.join('\n');
  console.log(`\n${text}`);
  writeFileSync(join(REPORTS, `bench-scaling-${stamp}.md`), `${text}\n`);
  writeFileSync(
    join(REPORTS, `bench-scaling-${stamp}.json`),
    JSON.stringify({ scenario, machine: machineLine(), runs: Object.fromEntries(runs), bareClusters: Object.fromEntries(bareRuns), bare, idle }, null, 2),
  );
  console.log(`\nreports/bench-scaling-${stamp}.{md,json}`);
}

await main();
