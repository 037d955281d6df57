/**
 * The faults a chaos run injects into a running cluster, one per phase: SIGKILL of a node (and its
 * restart), a Redis restart or, on a Redis Cluster, a master failover, a PostgreSQL outage under the
 * outage probe, and a SIGTERM drain. Each reports what happened, and records what the checks measure
 * afterwards (presence settling back to the live sockets, the drain's exit, the failover's times).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster, ClusterNode } from '@chat/testkit/cluster';
import { Redis } from 'ioredis';
import { waitUntil, type PrivatePostgres, type PrivateRedis, type PrivateRedisCluster } from '@chat/testkit/services';
import type { Io } from '@chat/loadgen/coordinator';
import type { ChaosOptions, PhaseName } from './options.ts';
import type { OutageProbe } from './probe.ts';
import { FAILOVER_TIMEOUT_MS, offText, presenceBoundMs, reregisterBoundMs, type ChaosReport, type Measured, type Settled } from './report.ts';
import { keysPerMaster, pickFailoverVictim, presenceMismatch, timeUntilZero, type RedisTarget, type StateKeys } from './verify.ts';

/** What the faults act on. */
export interface FaultTargets {
  options: ChaosOptions;
  io: Io;
  cluster: Cluster;
  /** The Redis the nodes use, as the presence checks reach it. */
  target: RedisTarget;
  keys: StateKeys;
  postgres: PrivatePostgres;
  /** The single Redis (`--redis single`). */
  redis: PrivateRedis | undefined;
  /** The Redis Cluster (`--redis cluster`). */
  redisCluster: PrivateRedisCluster | undefined;
  probe: OutageProbe;
  /** The failover is recorded here as soon as it is over. */
  report: ChaosReport;
}

/** How a fault went: what happened, for a reader, and whether the fault itself went as planned. */
export interface FaultOutcome {
  detail: string;
  ok: boolean;
}

export class Faults {
  /** Indexes of the nodes a fault restarted. */
  readonly restarted = new Set<number>();
  ghostAfterKill: Measured['ghostAfterKill'] = null;
  ghostAfterRedis: Measured['ghostAfterRedis'] = null;
  drainExit: Measured['drainExit'] = null;
  readonly #t: FaultTargets;
  readonly #nodes: readonly ClusterNode[];

  constructor(targets: FaultTargets) {
    this.#t = targets;
    this.#nodes = targets.cluster.nodes;
  }

  run(name: PhaseName): Promise<FaultOutcome> {
    switch (name) {
      case 'kill':
        return this.#kill();
      case 'redis':
        return this.#redis();
      case 'postgres':
        return this.#postgres();
      case 'drain':
        return this.#drain();
    }
  }

  async #kill(): Promise<FaultOutcome> {
    const { cluster: c, options, io } = this.#t;
    const nodes = this.#nodes;
    const exit = await c.killNode(0, 'SIGKILL');
    await sleep(options.downMs);
    await c.restartNode(0);
    this.restarted.add(0);
    // No ghosts: within the presence bound, the restarted node's presence entries are exactly
    // its live sockets (the killed process's connections reaped, not adopted), and so are every
    // other node's and all users' connections (its users who reconnected elsewhere included).
    const ghosts = await this.#presenceSettles(`SIGKILL of ${nodes[0]!.id}`, presenceBoundMs(options));
    this.ghostAfterKill = ghosts;
    if (ghosts.ms === null) io.log(`${nodes[0]!.id}'s last lines:\n${c.logs(0).slice(-20).join('\n')}`);
    return { detail: `${nodes[0]!.id} ${exit.signal ?? exit.code}, restarted after ${options.downMs} ms; ${presenceText(ghosts)}`, ok: exit.signal === 'SIGKILL' };
  }

  async #redis(): Promise<FaultOutcome> {
    const { redis, redisCluster } = this.#t;
    if (redisCluster) return this.#failover(redisCluster);
    await redis!.stop();
    await redis!.start();
    return { detail: `stopped and started again (every key gone); ${await this.#checkPresenceAfterRedis('Redis restart')}`, ok: true };
  }

  async #postgres(): Promise<FaultOutcome> {
    const { options, probe, postgres } = this.#t;
    await probe.ready(options.reconnectBoundMs);
    await postgres.stop();
    const stoppedAt = performance.now();
    // Probes start after the stop has completed and end a little before the restart, so every
    // one of them meets a database that is down.
    await probe.during(Math.max(200, options.downMs - 500), 100, options.unavailableBoundMs);
    await sleep(Math.max(0, options.downMs - (performance.now() - stoppedAt)));
    await postgres.start();
    const downMs = Math.round(performance.now() - stoppedAt);
    await probe.retryRefused(30_000);
    return { detail: `down for ${downMs} ms`, ok: true };
  }

  async #drain(): Promise<FaultOutcome> {
    const c = this.#t.cluster;
    const started = performance.now();
    const exit = await c.killNode(1, 'SIGTERM');
    const drainMs = Math.round(performance.now() - started);
    this.drainExit = { code: exit.code, ms: drainMs };
    await c.restartNode(1);
    this.restarted.add(1);
    return { detail: `${this.#nodes[1]!.id} exited with code ${exit.code ?? exit.signal} after ${drainMs} ms, restarted`, ok: exit.code === 0 };
  }

  // The master holding the most presence keys is SIGKILLed; its replica must take over (every slot
  // served again), and the old master, started again after --down, must rejoin as the new one's replica.
  async #failover(rc: PrivateRedisCluster): Promise<FaultOutcome> {
    const { options, keys, report } = this.#t;
    const masters = await rc.masters();
    const counts = await keysPerMaster(
      masters.map((master) => master.port),
      keys.presence,
    );
    const victim = pickFailoverVictim(counts);
    const replicas = await rc.replicasOf(victim);
    const killedAt = performance.now();
    await rc.kill(victim);
    await rc.waitHealthy(FAILOVER_TIMEOUT_MS);
    const failoverMs = Math.round(performance.now() - killedAt);
    const promoted = (await rc.masters()).find((master) => replicas.includes(master.port))?.port ?? null;
    await sleep(options.downMs);
    const downMs = Math.round(performance.now() - killedAt);
    const startedAt = performance.now();
    await rc.start(victim);
    await rc.waitHealthy(FAILOVER_TIMEOUT_MS);
    let rejoined = true;
    await waitUntil(() => isSyncedReplicaOf(victim, promoted), FAILOVER_TIMEOUT_MS, `the old master :${victim} as a replica`).catch(() => (rejoined = false));
    const rejoinMs = Math.round(performance.now() - startedAt);
    report.redisFailover = { master: victim, presenceKeys: Object.fromEntries(counts), promoted, failoverMs, downMs, rejoinMs };
    const spread = [...counts].map(([port, n]) => `:${port} ${n}`).join(', ');
    const presence = await this.#checkPresenceAfterRedis('Redis failover');
    return {
      detail: `SIGKILL master :${victim} (presence keys ${spread}), replica ${promoted === null ? 'NONE' : `:${promoted}`} promoted in ${failoverMs} ms; down ${downMs} ms, started again: ${rejoined ? `a synced replica after ${rejoinMs} ms` : 'NOT a replica'}; ${presence}`,
      ok: promoted !== null && rejoined,
    };
  }

  // Presence in Redis is exactly the nodes' live sockets: each node's index, and all users'
  // connections (no ghost left by a dead process or a lost disconnect, no socket forgotten).
  // A look a busy node or Redis does not answer in time is -1: not settled yet, and not a failed run.
  async #presenceSettles(after: string, boundMs: number): Promise<Settled> {
    const { target, keys, io } = this.#t;
    const look = async () => {
      try {
        return await presenceMismatch(target, keys, await Promise.all(this.#nodes.map(async (node) => ({ id: node.id, sockets: await connectedSockets(node.url) }))));
      } catch (error) {
        return { off: -1, detail: `no answer: ${error instanceof Error ? error.message : String(error)}` };
      }
    };
    const result = await timeUntilZero(async () => (await look()).off, boundMs);
    if (result.ms === null) io.log(`presence check after the ${after} failed: ${(await look()).detail}`);
    return result;
  }

  // After a Redis restart or failover each node registers all its sockets again (one by one), and
  // after a failover replays its recent disconnects. Bound: as long as a client may take to
  // reconnect, at least the presence bound.
  async #checkPresenceAfterRedis(label: string): Promise<string> {
    const result = await this.#presenceSettles(label, reregisterBoundMs(this.#t.options));
    this.ghostAfterRedis = { ...result, label };
    return presenceText(result);
  }
}

function presenceText(result: Settled): string {
  return result.ms === null ? `presence NOT = live sockets within the bound (${offText(result.last)})` : `presence = live sockets after ${result.ms} ms`;
}

/** Whether the Redis at `port` is a replica of the one at `masterPort`, its link up and its initial sync done. */
async function isSyncedReplicaOf(port: number, masterPort: number | null): Promise<boolean> {
  const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => {});
  try {
    await redis.connect();
    const info = await redis.info('replication');
    return /^role:slave\r?$/m.test(info) && /^master_link_status:up\r?$/m.test(info) && (masterPort === null || new RegExp(`^master_port:${masterPort}\\r?$`, 'm').test(info));
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

async function connectedSockets(nodeUrl: string): Promise<number> {
  const text = await fetch(`${nodeUrl}/metrics`, { signal: AbortSignal.timeout(5000) }).then((response) => response.text());
  const match = /^chat_connected_sockets(?:\{[^}]*\})? ([0-9.e+]+)$/m.exec(text);
  if (!match) throw new Error(`${nodeUrl}/metrics has no chat_connected_sockets`);
  return Number(match[1]);
}
