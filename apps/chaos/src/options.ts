import { parseArgs } from 'node:util';
import { parseDuration, parseNumber, parseRate, UsageError, type Flag } from '@chat/loadgen/options';

export const PHASES = ['kill', 'redis', 'postgres', 'drain'] as const;
export const REDIS_MODES = ['single', 'cluster'] as const;
export type RedisMode = (typeof REDIS_MODES)[number];
/**
 * - `kill`: SIGKILL a node, start it again `--down` later;
 * - `redis`: with `--redis single`, restart Redis (every key is gone: it runs without persistence);
 *   with `--redis cluster`, a master failover: SIGKILL the master holding the most presence keys,
 *   wait for its replica's promotion, keep it down for `--down`, start it again (it rejoins as a replica);
 * - `postgres`: stop PostgreSQL for `--down`, probing sends meanwhile;
 * - `drain`: SIGTERM a node (graceful drain), then start it again.
 */
export type PhaseName = (typeof PHASES)[number];

export interface ChaosOptions {
  clients: number;
  /** Messages per second over all senders. */
  rate: number;
  /** Load before the first phase, and after each one before the next. */
  settleMs: number;
  /** How long a SIGKILLed node and PostgreSQL stay down. */
  downMs: number;
  phases: PhaseName[];
  /** One private redis-server (REDIS_URL), or a private Redis Cluster of 3 masters + 3 replicas (REDIS_CLUSTER_NODES). */
  redis: RedisMode;
  groupSize: string;
  devicesPerUser: string;
  workers: number | null;
  /** PRESENCE_NODE_TTL_MS of the nodes: how soon a SIGKILLed node's users must be shown offline. */
  presenceTtlMs: number;
  /** Longest a device may take from an unplanned disconnect to connected and resynced. */
  reconnectBoundMs: number;
  /** Longest a send may wait for its `unavailable` while PostgreSQL is down. */
  unavailableBoundMs: number;
  /** Most a node's heap may grow over the run (after the run vs. before the load), MiB. */
  heapBoundMiB: number;
  seed: number | null;
  out: string;
  verbose: boolean;
  quiet: boolean;
}

export const flags = {
  clients: { type: 'string', arg: 'N', default: '500', help: 'SDK clients (devices) sending and receiving through nginx, in direct and group conversations.' },
  rate: { type: 'string', arg: 'N/s', default: '50/s', help: 'Messages per second over all senders, sent continuously through the whole run (each reaches ~8 devices, plus read receipts).' },
  phases: { type: 'string', arg: 'LIST', default: PHASES.join(','), help: `Faults in order, comma-separated: ${PHASES.join(', ')} (see the README).` },
  settle: { type: 'string', arg: 'TIME', default: '12s', help: 'Load before the first fault and after each; the load lasts about phases × (settle + fault) + settle.' },
  duration: { type: 'string', arg: 'TIME', default: 'from --settle', help: 'Alternatively the whole load phase: sets --settle to (duration - phases × down) / (phases + 1).' },
  down: { type: 'string', arg: 'TIME', default: '5s', help: 'How long the SIGKILLed node, PostgreSQL and (--redis cluster) the SIGKILLed Redis master, once its replica took over, stay down.' },
  redis: {
    type: 'string',
    arg: 'MODE',
    default: 'single',
    help: "single: one private redis-server, which the redis phase restarts (every key gone); cluster: a private Redis Cluster, 3 masters + 3 replicas (the nodes get REDIS_CLUSTER_NODES), where the redis phase SIGKILLs the master holding the most presence keys, waits for its replica's promotion, and starts it again after --down (it rejoins as a replica).",
  },
  'group-size': { type: 'string', arg: 'A..B', default: '2..8', help: 'Members per conversation: 2 is a direct conversation, more a group.' },
  'devices-per-user': { type: 'string', arg: 'A..B', default: '1..2', help: 'Devices per user; every message is expected on every device of every member.' },
  workers: { type: 'string', arg: 'N', default: 'cores-1', help: "The load generator's worker threads." },
  'presence-ttl': { type: 'string', arg: 'TIME', default: '5s', help: "The nodes' PRESENCE_NODE_TTL_MS (lowered from 20 s so the ghost check is quick)." },
  'reconnect-bound': { type: 'string', arg: 'TIME', default: '20s', help: 'Longest a device may take to reconnect and resync after a disconnect it did not ask for.' },
  'unavailable-bound': { type: 'string', arg: 'TIME', default: '5s', help: "Longest a send may wait for `unavailable` while PostgreSQL is down (the SDK's ack timeout is 10 s)." },
  'heap-bound': { type: 'string', arg: 'MiB', default: '32', help: "Most a node's heap may grow over the run: after a forced GC once the clients are gone, vs. after one before the load." },
  seed: { type: 'string', arg: 'N', default: 'random', help: 'Seed of the load plan, to repeat a run.' },
  out: { type: 'string', arg: 'FILE', default: 'reports/chaos-<time>.json', help: 'The check table and the load summary as JSON.' },
  verbose: { type: 'boolean', default: 'false', help: "Forward the nodes' and nginx's output." },
  quiet: { type: 'boolean', default: 'false', help: 'No live progress line.' },
  help: { type: 'boolean', default: 'false', help: 'This text.' },
} as const satisfies Record<string, Flag>;

type FlagName = keyof typeof flags;

export function helpText(): string {
  const rows = Object.entries(flags).map(([name, flag]) => {
    const left = `  --${name}${'arg' in flag ? ` ${flag.arg}` : ''}`;
    return `${left.padEnd(28)}${flag.help}${flag.type === 'string' ? ` [${flag.default}]` : ''}`;
  });
  return [
    'npm run chaos -- [flags]',
    '',
    'Starts a private PostgreSQL and Redis (--redis cluster: a Redis Cluster), 3 nodes behind nginx, and SDK',
    'clients sending continuously; then, in turn, SIGKILLs a node (restarted after --down), restarts Redis',
    '(--redis cluster: SIGKILLs a master and lets its replica take over), stops PostgreSQL for --down',
    'and SIGTERMs a node. Afterwards it checks every acked message against PostgreSQL and every device,',
    'reconnects, presence, typing and node heaps, prints the table, and exits 1 if any check failed.',
    '',
    ...rows,
  ].join('\n');
}

export function parseChaosArgs(argv: string[]): { help: true } | { help: false; options: ChaosOptions } {
  const spec = Object.fromEntries(Object.entries(flags).map(([name, flag]) => [name, { type: flag.type }])) as Record<FlagName, { type: 'string' | 'boolean' }>;
  let values: Partial<Record<FlagName, string | boolean>>;
  try {
    values = parseArgs({ args: argv, options: spec, strict: true, allowPositionals: false }).values as typeof values;
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return { help: true };
  const str = (name: FlagName) => {
    const value = values[name];
    return typeof value === 'string' ? value : flags[name].default;
  };
  const phases = str('phases')
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  for (const phase of phases) if (!(PHASES as readonly string[]).includes(phase)) throw new UsageError(`--phases: unknown phase ${JSON.stringify(phase)} (known: ${PHASES.join(', ')})`);
  const redis = str('redis');
  if (!(REDIS_MODES as readonly string[]).includes(redis)) throw new UsageError(`--redis: expected ${REDIS_MODES.join(' or ')}, got ${JSON.stringify(redis)}`);
  let settleMs = parseDuration('settle', str('settle'));
  const downMs = parseDuration('down', str('down'));
  if (values.duration !== undefined) settleMs = Math.max(1000, Math.floor((parseDuration('duration', str('duration')) - phases.length * downMs) / (phases.length + 1)));
  const clients = parseNumber('clients', str('clients'), { min: 10, max: 100_000, integer: true });
  const options: ChaosOptions = {
    clients,
    rate: parseRate('rate', str('rate')),
    settleMs,
    downMs,
    phases: phases as PhaseName[],
    redis: redis as RedisMode,
    groupSize: str('group-size'),
    devicesPerUser: str('devices-per-user'),
    workers: values.workers === undefined ? null : parseNumber('workers', str('workers'), { min: 1, max: 64, integer: true }),
    presenceTtlMs: parseDuration('presence-ttl', str('presence-ttl')),
    reconnectBoundMs: parseDuration('reconnect-bound', str('reconnect-bound')),
    unavailableBoundMs: parseDuration('unavailable-bound', str('unavailable-bound')),
    heapBoundMiB: parseNumber('heap-bound', str('heap-bound'), { min: 1, max: 100_000 }),
    seed: values.seed === undefined ? null : parseNumber('seed', str('seed'), { min: 0, max: 2 ** 32 - 1, integer: true }),
    out: values.out === undefined ? `reports/chaos-${new Date().toISOString().replace(/[:.]/g, '-')}.json` : str('out'),
    verbose: values.verbose === true,
    quiet: values.quiet === true,
  };
  if (options.presenceTtlMs < 1000) throw new UsageError('--presence-ttl: at least 1s (the server refuses less)');
  if (options.rate <= 0) throw new UsageError('--rate: must be above 0: the checks need acked messages');
  return { help: false, options };
}
