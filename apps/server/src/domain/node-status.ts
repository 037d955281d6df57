import { monitorEventLoopDelay, type ELDHistogram } from 'node:perf_hooks';
import type { NodeReport } from '../state/node-status.ts';

/** What the sampler reads from the node besides its metrics. */
export interface NodeProbe {
  nodeId: string;
  version: string;
  startedAt: Date;
  draining(): boolean;
  /** True when not draining and every dependency answers (what /readyz says). */
  ready(): Promise<boolean>;
  /** This node's connected sockets, and the distinct users they belong to. */
  connections(): { sockets: number; users: number };
}

/** The node's cumulative counters since it started; the sampler reports their differences. */
export interface NodeCounterTotals {
  /** Sends this node accepted, over sockets and REST. */
  msgsIn: number;
  /** Fan-out frames written to this node's sockets. */
  msgsOut: number;
  /** Ack count per bucket upper bound (seconds, `Infinity` for the last), over every event. */
  acks: Map<number, number>;
}

/** Where the sampler reads the counters (the node's Prometheus metrics). */
export interface NodeCounters {
  nodeCounters(): Promise<NodeCounterTotals>;
}

interface Totals extends NodeCounterTotals {
  at: number;
}

/**
 * How often the event-loop delay monitors (this sampler's and prom-client's) take a sample. Each
 * sample is a timer wake-up, paid even by an idle node; a stall longer than this always delays a
 * sample, so the lag alert (p99 > 200 ms) and the console still see every stall that matters.
 */
export const EVENT_LOOP_SAMPLE_MS = 50;

/**
 * One node's status report, each call covering the interval since the previous one. Rates and the
 * ack p99 are differences of the node's own cumulative counters between two calls, so sampling adds
 * no work to the message path:
 * - msgs in / msgs out: see NodeCounterTotals;
 * - ack p99: the upper bound of the ack latency bucket holding the 99th percentile of the
 *   interval's acks (0 when there were none; the last finite bound when it lies beyond it);
 * - event-loop lag: p99 of perf_hooks' event-loop delay over the interval.
 */
export class NodeStatusSampler {
  readonly #counters: NodeCounters;
  readonly #probe: NodeProbe;
  readonly #loop: ELDHistogram;
  #last: Totals | null = null;

  constructor(counters: NodeCounters, probe: NodeProbe) {
    this.#counters = counters;
    this.#probe = probe;
    this.#loop = monitorEventLoopDelay({ resolution: EVENT_LOOP_SAMPLE_MS });
    this.#loop.enable();
  }

  async sample(): Promise<NodeReport> {
    const totals = await this.#totals();
    const last = this.#last ?? totals;
    this.#last = totals;
    const seconds = (totals.at - last.at) / 1000;
    const rate = (now: number, before: number) => (seconds > 0 ? round(Math.max(0, now - before) / seconds) : 0);
    const lag = this.#loop.count > 0 ? this.#loop.percentile(99) / 1e6 : 0;
    this.#loop.reset();
    const { sockets, users } = this.#probe.connections();
    return {
      id: this.#probe.nodeId,
      version: this.#probe.version,
      startedAt: this.#probe.startedAt.toISOString(),
      uptimeSeconds: Math.floor((Date.now() - this.#probe.startedAt.getTime()) / 1000),
      ready: await this.#probe.ready(),
      draining: this.#probe.draining(),
      sockets,
      users,
      eventLoopLagMs: round(lag),
      heapUsedBytes: process.memoryUsage().heapUsed,
      msgsInPerSecond: rate(totals.msgsIn, last.msgsIn),
      msgsOutPerSecond: rate(totals.msgsOut, last.msgsOut),
      ackP99Ms: round(p99(totals.acks, last.acks) * 1000),
    };
  }

  stop(): void {
    this.#loop.disable();
  }

  async #totals(): Promise<Totals> {
    const counters = await this.#counters.nodeCounters();
    return { at: performance.now(), ...counters };
  }
}

/** The upper bound (seconds) of the bucket holding the 99th percentile of the acks between two cumulative snapshots. */
export function p99(now: ReadonlyMap<number, number>, before: ReadonlyMap<number, number>): number {
  const bounds = [...now.keys()].sort((a, b) => a - b);
  const delta = (le: number) => (now.get(le) ?? 0) - (before.get(le) ?? 0);
  const total = delta(Infinity);
  if (total <= 0) return 0;
  const finite = bounds.filter(Number.isFinite);
  for (const le of finite) if (delta(le) >= total * 0.99) return le;
  return finite.at(-1) ?? 0;
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
