/**
 * `npm run cluster -- --nodes 3 --port 8080` — the chat cluster of docker-compose.yml without Docker:
 * the local PostgreSQL and Redis, N node processes, nginx in front. Ctrl-C stops everything. The
 * nodes get every configuration variable of this process's environment (see HELP).
 */
import { relative } from 'node:path';
import { parseArgs } from 'node:util';
import { CLUSTER_DEFAULTS, startCluster, type Cluster } from './cluster.ts';

const DEFAULT_NOTES: Record<string, string> = {
  DATABASE_URL: 'that database is created if missing',
  DEV_TOKENS: 'POST /v1/dev/token mints tokens for anyone: local use only',
};

const HELP = `npm run cluster -- [--nodes 3] [--port 8080] [--base-port 3001] [--verbose]

Migrates the database, starts N chat nodes (node-1..node-N) and nginx in front of them with the
repository's nginx.conf (sticky on ?sticky=<id>). Ctrl-C (SIGINT) or SIGTERM drains the nodes, stops
nginx and removes the run folder (.data/cluster/run-*).

Flags:
  --nodes N        how many nodes (default 3)
  --port P         nginx listens on 127.0.0.1:P (default 8080)
  --base-port B    node-1 listens on 127.0.0.1:B, node-2 on B+1, ... (default 3001)
  --verbose        print every node's and nginx's output, prefixed [node-1], [nginx]
  --help           this text

Environment: every variable of the node's configuration (the README's configuration table, e.g.
MESSAGE_MAX_LENGTH, RATE_LIMITS, DATABASE_POOL_SIZE) that is set reaches every node; empty counts as
unset. NODE_ID, HOST and PORT are the cluster's. Unset, these take docker-compose.yml's values:
${Object.entries(CLUSTER_DEFAULTS)
  .map(([name, value]) => `  ${name.padEnd(21)} ${value}${DEFAULT_NOTES[name] ? ` (${DEFAULT_NOTES[name]})` : ''}`)
  .join('\n')}
Migrations are applied once before the nodes start, to DATABASE_DIRECT_URL when set (DATABASE_URL
leading through PgBouncer with ?pgbouncer=true), else to DATABASE_URL.
nginx is looked up on PATH, then in /usr/sbin and /usr/local/sbin.`;

function fail(message: string): never {
  process.stderr.write(`${message} (see npm run cluster -- --help)\n`);
  process.exit(2);
}

function integer(flag: string, value: string, min: number, max: number): number {
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || parsed < min || parsed > max) fail(`--${flag}: expected an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  return parsed;
}

function parse() {
  try {
    return parseArgs({
      options: {
        nodes: { type: 'string', default: '3' },
        port: { type: 'string', default: '8080' },
        'base-port': { type: 'string', default: '3001' },
        verbose: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (error) {
    fail((error as Error).message);
  }
}

const values = parse();
if (values.help) {
  process.stdout.write(`${HELP}\n`);
  process.exit(0);
}
const nodes = integer('nodes', values.nodes, 1, 64);
const port = integer('port', values.port, 1, 65535);
const basePort = integer('base-port', values['base-port'], 1, 65536 - nodes);

let cluster: Cluster;
try {
  cluster = await startCluster({ nodes, port, basePort, verbose: values.verbose });
} catch (error) {
  process.stderr.write(`cluster did not start: ${(error as Error).message}\n`);
  process.exit(1);
}

process.stdout.write(
  [
    `chat cluster: ${cluster.url} (nginx → ${nodes} node${nodes === 1 ? '' : 's'})`,
    ...cluster.nodes.map((node) => `  ${node.id.padEnd(8)} ${node.url}  pid ${node.pid}`),
    `  nginx    pid ${cluster.nginxPid}, run folder ${relative(process.cwd(), cluster.dir) || cluster.dir} (access.log)`,
    'Ctrl-C to stop',
    '',
  ].join('\n'),
);

let signalled = false;
function onSignal(signal: NodeJS.Signals | 'parent gone'): void {
  if (signalled) {
    // A second Ctrl-C: do not wait for the drain; the library's exit handler kills what is left.
    process.stderr.write(`${signal} again: killing\n`);
    process.exit(1);
  }
  signalled = true;
  process.stdout.write(`${signal}: draining the nodes, then stopping nginx…\n`);
  cluster.stop().then(
    () => {
      process.stdout.write('stopped\n');
      process.exit(0);
    },
    (error: unknown) => {
      process.stderr.write(`stop failed: ${String(error)}\n`);
      process.exit(1);
    },
  );
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
// `npm run` passes a SIGTERM to its shell, which dies without passing it on: a reparented CLI would
// otherwise keep the whole cluster running with nobody left to stop it.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent && !signalled) onSignal('parent gone');
}, 500).unref();
