import fp from 'fastify-plugin';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { EVENT_LOOP_SAMPLE_MS, type NodeCounterTotals, type NodeCounters } from '../domain/node-status.ts';

/** What the node-state gauges read at scrape time. */
export interface NodeState {
  draining(): boolean;
  dependencies(): Promise<Record<string, 'up' | 'down'>>;
}

/** The REST twin of message:send (transport/http/rest.ts). */
const REST_SEND_ROUTE = '/v1/conversations/:conversationId/messages';

/** The node's Prometheus metrics. One registry per app instance, so tests can run several nodes in one process. */
export class Metrics implements NodeCounters {
  readonly registry = new Registry();
  readonly connectedSockets = new Gauge({ name: 'chat_connected_sockets', help: 'Sockets connected to this node', registers: [this.registry] });
  readonly socketEvents = new Counter({
    name: 'chat_socket_events_total',
    help: 'Client events handled, by event name and outcome (ok or an error code)',
    labelNames: ['event', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly ackLatency = new Histogram({
    name: 'chat_ack_latency_seconds',
    help: 'Time from receiving a client event to sending its ack',
    labelNames: ['event'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly writeBatchSize = new Histogram({
    name: 'chat_write_batch_size',
    help: 'Items carried by one group-commit statement (messages, receipt reports): the higher, the fewer commits per item',
    labelNames: ['writer'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });
  readonly connectionsRefused = new Counter({
    name: 'chat_connections_refused_total',
    help: 'Socket connections refused at the handshake, by error code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly clusterPublishFailures = new Counter({
    name: 'chat_cluster_publish_failures_total',
    help: 'Fan-outs that could not be published to the other nodes (Redis unreachable: publish or presence lookup failed)',
    registers: [this.registry],
  });
  readonly fanoutFrames = new Counter({
    name: 'chat_fanout_frames_total',
    help: "Fan-outs and routed frames: local (fan-outs issued here, written to whichever of this node's sockets are in their rooms), sent (frames published to another node), received (frames from another node)",
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly apiKeyRequests = new Counter({
    name: 'chat_api_key_requests_total',
    help: 'Requests to the key-authenticated APIs (scope admin or server), by route and HTTP status: every admin action is counted, refused ones too',
    labelNames: ['scope', 'route', 'status'] as const,
    registers: [this.registry],
  });
  readonly rateLimited = new Counter({
    name: 'chat_rate_limited_total',
    help: 'Requests refused by the per-user rate limits, by class',
    labelNames: ['class'] as const,
    registers: [this.registry],
  });
  readonly rateLimiterFailures = new Counter({
    name: 'chat_rate_limiter_failures_total',
    help: 'Rate-limit checks that could not reach the store and were allowed',
    registers: [this.registry],
  });
  readonly floodDisconnects = new Counter({
    name: 'chat_flood_disconnects_total',
    help: 'Sockets disconnected for flooding after being rate limited',
    registers: [this.registry],
  });
  readonly slowConsumerDisconnects = new Counter({
    name: 'chat_slow_consumer_disconnects_total',
    help: 'Sockets disconnected because their unsent outbound data passed SOCKET_MAX_BUFFERED_BYTES, by transport (websocket, polling)',
    labelNames: ['transport'] as const,
    registers: [this.registry],
  });
  readonly presenceFailures = new Counter({
    name: 'chat_presence_failures_total',
    help: 'Presence updates that could not reach the store',
    registers: [this.registry],
  });
  readonly presenceDeferred = new Gauge({
    name: 'chat_presence_deferred_users',
    help: 'Users whose presence change is not yet announced because PostgreSQL (the contacts query) did not answer; retried every presence tick',
    registers: [this.registry],
  });
  readonly webhookDeliveries = new Counter({
    name: 'chat_webhook_deliveries_total',
    help: 'Notification webhook deliveries by outcome: delivered, retried (an attempt failed, another follows), failed (gave up), dropped (queue full or node stopping)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly uploads = new Counter({
    name: 'chat_uploads_total',
    help: 'Uploads by outcome: ready (verified), refused by code (upload_too_large, upload_type_mismatch, upload_incomplete), swept (unattached, deleted after UPLOAD_GC_TTL_H)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly httpRequests = new Counter({
    name: 'chat_http_requests_total',
    help: 'HTTP requests by route and status code',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly httpRequestDuration = new Histogram({
    name: 'chat_http_request_duration_seconds',
    help: 'HTTP request duration from receipt to response, by route pattern (never the raw URL), method and status code',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly scheduledOutcomes = new Counter({
    name: 'chat_scheduled_messages_total',
    help: 'Scheduled messages this node finished, by outcome: sent, failed (final, e.g. the sender left), retry (a retryable error: tried again after the lease)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly schedulerRounds = new Counter({
    name: 'chat_scheduler_rounds_total',
    help: 'Scheduler rounds on this node that claimed at least one due scheduled message',
    registers: [this.registry],
  });
  readonly schedulerClaimed = new Counter({
    name: 'chat_scheduler_claimed_total',
    help: 'Due scheduled messages this node claimed (taken over from a dead node after its lease included)',
    registers: [this.registry],
  });
  readonly scheduledSwept = new Counter({
    name: 'chat_scheduled_messages_swept_total',
    help: 'Finished scheduled messages (sent, failed, canceled) this node deleted once they were older than SCHEDULED_RETENTION_HOURS',
    registers: [this.registry],
  });
  readonly schedulerLag = new Histogram({
    name: 'chat_scheduler_lag_seconds',
    help: "From a scheduled message's sendAt to its commit as a message: within SCHEDULER_POLL_MS plus a round normally, up to the 15 s lease after a node died holding it",
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60],
    registers: [this.registry],
  });
  /** Where the state gauges below read from at scrape time (set by the plugin; absent, they read 0). */
  #state: NodeState | undefined;
  readonly draining: Gauge = new Gauge({
    name: 'chat_node_draining',
    help: '1 while this node drains (SIGTERM received: not ready, refusing new sockets), else 0',
    registers: [this.registry],
    collect: (): void => this.draining.set(this.#state?.draining() ? 1 : 0),
  });
  readonly ready: Gauge = new Gauge({
    name: 'chat_node_ready',
    help: 'What GET /readyz answers, at scrape time: 1 when not draining and every dependency answers, else 0',
    registers: [this.registry],
    collect: async (): Promise<void> => {
      const dependencies = this.#state ? await this.#state.dependencies() : {};
      this.ready.set(this.#state && !this.#state.draining() && Object.values(dependencies).every((state) => state === 'up') ? 1 : 0);
    },
  });
  readonly dependencyUp: Gauge<'dependency'> = new Gauge({
    name: 'chat_dependency_up',
    help: 'Readiness checks at scrape time, by dependency (database, redis, cluster bus): 1 when it answered within 1 s, else 0',
    labelNames: ['dependency'] as const,
    registers: [this.registry],
    collect: async (): Promise<void> => {
      for (const [dependency, state] of Object.entries(this.#state ? await this.#state.dependencies() : {})) this.dependencyUp.set({ dependency }, state === 'up' ? 1 : 0);
    },
  });

  constructor(nodeId: string, state?: NodeState) {
    this.#state = state;
    this.registry.setDefaultLabels({ node: nodeId });
    // Includes process CPU/memory, GC, and event-loop lag (nodejs_eventloop_lag_seconds).
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  }

  /**
   * The node status sampler's counters:
   * - msgs in: message:send acked ok on a socket (chat_socket_events_total) or answered 2xx over
   *   REST (chat_http_request_duration_seconds count);
   * - msgs out: chat_fanout_frames_total, local + received;
   * - acks: the chat_ack_latency_seconds buckets, summed over events.
   */
  async nodeCounters(): Promise<NodeCounterTotals> {
    const [events, requests, frames, acks] = await Promise.all([this.socketEvents.get(), this.httpRequestDuration.get(), this.fanoutFrames.get(), this.ackLatency.get()]);
    const socketSends = events.values.filter((v) => v.labels['event'] === 'message:send' && v.labels['outcome'] === 'ok').reduce((sum, v) => sum + v.value, 0);
    const restSends = requests.values
      .filter(
        (v) => v.metricName === 'chat_http_request_duration_seconds_count' && v.labels['route'] === REST_SEND_ROUTE && v.labels['method'] === 'POST' && String(v.labels['status']).startsWith('2'),
      )
      .reduce((sum, v) => sum + v.value, 0);
    const msgsOut = frames.values.filter((v) => v.labels['direction'] === 'local' || v.labels['direction'] === 'received').reduce((sum, v) => sum + v.value, 0);
    const buckets = new Map<number, number>();
    for (const v of acks.values) {
      if (v.metricName !== 'chat_ack_latency_seconds_bucket') continue;
      const bound = (v.labels as Record<string, string | number | undefined>)['le'];
      const le = bound === '+Inf' ? Infinity : Number(bound);
      buckets.set(le, (buckets.get(le) ?? 0) + v.value);
    }
    return { msgsIn: socketSends + restSends, msgsOut, acks: buckets };
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

export default fp<{ nodeId: string }>(
  async (app, { nodeId }) => {
    // Drain and readiness are read when Prometheus scrapes, so they are never stale. Readiness runs
    // the same dependency checks as /readyz (a PostgreSQL and a Redis ping, 1 s at most); one round of
    // checks serves both gauges of a scrape (prom-client collects them concurrently).
    let probe: { at: number; result: Promise<Record<string, 'up' | 'down'>> } | undefined;
    const metrics = new Metrics(nodeId, {
      draining: () => app.lifecycle.draining,
      dependencies: () => {
        if (!probe || performance.now() - probe.at > 1000) probe = { at: performance.now(), result: app.lifecycle.checkDependencies(1000) };
        return probe.result;
      },
    });
    app.decorate('metrics', metrics);
    app.addHook('onResponse', async (request, reply) => {
      // The route pattern (`/v1/conversations/:id`), never the raw URL: one series per route, not per id.
      const route = request.routeOptions.url ?? 'unmatched';
      metrics.httpRequests.inc({ route, status: reply.statusCode });
      metrics.httpRequestDuration.observe({ route, method: request.method, status: reply.statusCode }, reply.elapsedTime / 1000);
    });
  },
  { name: 'metrics', dependencies: ['lifecycle'] },
);
