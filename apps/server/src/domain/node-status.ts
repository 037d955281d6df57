import { monitorEventLoopDelay, type ELDHistogram } from 'node:perf_hooks';
import type { Metrics } from '../plugins/metrics.ts';
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

/** The REST twin of message:send (transport/http/rest.ts). */
const REST_SEND_ROUTE = '/v1/conversations/:conversationId/messages';

interface Totals {
  at: number;
  msgsIn: number;
  msgsOut: number;
  /** Cumulative ack count per bucket upper bound (seconds), over every event. */
  acks: Map<number, number>;
}

/**
 * One node's status report, each call covering the interval since the previous one. Rates and the
 * ack p99 are differences of the node's own Prometheus counters between two calls, so sampling adds
 * no work to the message path:
 * - msgs in: sends this node accepted: message:send acked ok on a socket
 *   (chat_socket_events_total) or answered 2xx over REST (chat_http_request_duration_seconds count);
 * - msgs out: fan-outs written to this node's sockets (chat_fanout_frames_total local + received);
 * - ack p99: the upper bound of the chat_ack_latency_seconds bucket holding the 99th percentile of
 *   the interval's acks (0 when there were none; the last finite bound when it lies beyond it);
 * - event-loop lag: p99 of perf_hooks' event-loop delay over the interval.
 */
export class NodeStatusSampler {
  readonly #metrics: Metrics;
  readonly #probe: NodeProbe;
  readonly #loop: ELDHistogram;
  #last: Totals | null = null;

  constructor(metrics: Metrics, probe: NodeProbe) {
    this.#metrics = metrics;
    this.#probe = probe;
    this.#loop = monitorEventLoopDelay({ resolution: 10 });
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
    const [events, requests, frames, acks] = await Promise.all([
      this.#metrics.socketEvents.get(),
      this.#metrics.httpRequestDuration.get(),
      this.#metrics.fanoutFrames.get(),
      this.#metrics.ackLatency.get(),
    ]);
    const socketSends = events.values.filter((v) => v.labels['event'] === 'message:send' && v.labels['outcome'] === 'ok').reduce((sum, v) => sum + v.value, 0);
    const restSends = requests.values
      .filter(
        (v) => v.metricName === 'chat_http_request_duration_seconds_count' && v.labels['route'] === REST_SEND_ROUTE && v.labels['method'] === 'POST' && String(v.labels['status']).startsWith('2'),
      )
      .reduce((sum, v) => sum + v.value, 0);
    const msgsIn = socketSends + restSends;
    const msgsOut = frames.values.filter((v) => v.labels['direction'] === 'local' || v.labels['direction'] === 'received').reduce((sum, v) => sum + v.value, 0);
    const buckets = new Map<number, number>();
    for (const v of acks.values) {
      if (v.metricName !== 'chat_ack_latency_seconds_bucket') continue;
      const bound = (v.labels as Record<string, string | number | undefined>)['le'];
      const le = bound === '+Inf' ? Infinity : Number(bound);
      buckets.set(le, (buckets.get(le) ?? 0) + v.value);
    }
    return { at: performance.now(), msgsIn, msgsOut, acks: buckets };
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
