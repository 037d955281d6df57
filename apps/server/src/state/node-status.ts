import type { AdminNodeSample, AdminNodeStatus } from '@chat/protocol';

/** What a node reports; the store adds when it received it (`lastHeartbeatAt`). */
export type NodeReport = Omit<AdminNodeStatus, 'lastHeartbeatAt'>;

/**
 * What each node reports about itself for the operator's console (GET /v1/admin/nodes): one status
 * snapshot per node, replaced every interval, and the last samples of it for the sparklines. A node
 * whose last report is older than `ttlMs` is dead: it is never listed, and its entries are removed by
 * the next read. Report times are the store's clock (Redis `TIME` in a cluster), so nodes with skewed
 * clocks are judged alike.
 */
export interface NodeStatusStore {
  /** Records `report` as its node's current status, and appends its sample to the node's history. */
  publish(report: NodeReport): Promise<void>;
  /** Every live node's last status, sorted by id. */
  list(): Promise<AdminNodeStatus[]>;
  /** Each live node's samples of the last `historyMs`, oldest first, at most `historyLimit`. */
  history(): Promise<Record<string, AdminNodeSample[]>>;
  /** Forgets a node at once (a node that stops cleanly). */
  remove(nodeId: string): Promise<void>;
}

export interface NodeStatusOptions {
  /** A node silent for longer is dead (PRESENCE_NODE_TTL_MS). */
  ttlMs: number;
  /** @default 300 */
  historyLimit?: number;
  /** @default 600_000 */
  historyMs?: number;
}

export const HISTORY_LIMIT = 300;
export const HISTORY_MS = 10 * 60_000;

export function sampleOf(report: NodeReport, at: number): AdminNodeSample {
  return { at, sockets: report.sockets, msgsInPerSecond: report.msgsInPerSecond, msgsOutPerSecond: report.msgsOutPerSecond, ackP99Ms: report.ackP99Ms };
}

/** One process's nodes (single-node mode: the node itself). */
export class MemoryNodeStatusStore implements NodeStatusStore {
  readonly #now: () => number;
  readonly #ttlMs: number;
  readonly #historyLimit: number;
  readonly #historyMs: number;
  readonly #nodes = new Map<string, { report: NodeReport; at: number; samples: AdminNodeSample[] }>();

  constructor(options: NodeStatusOptions & { now?: () => number }) {
    this.#now = options.now ?? Date.now;
    this.#ttlMs = options.ttlMs;
    this.#historyLimit = options.historyLimit ?? HISTORY_LIMIT;
    this.#historyMs = options.historyMs ?? HISTORY_MS;
  }

  async publish(report: NodeReport): Promise<void> {
    const at = this.#now();
    const samples = this.#nodes.get(report.id)?.samples ?? [];
    samples.push(sampleOf(report, at));
    if (samples.length > this.#historyLimit) samples.splice(0, samples.length - this.#historyLimit);
    this.#nodes.set(report.id, { report, at, samples });
  }

  async list(): Promise<AdminNodeStatus[]> {
    return this.#live()
      .map(([, { report, at }]) => ({ ...report, lastHeartbeatAt: new Date(at).toISOString() }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async history(): Promise<Record<string, AdminNodeSample[]>> {
    const since = this.#now() - this.#historyMs;
    return Object.fromEntries(this.#live().map(([id, { samples }]) => [id, samples.filter((sample) => sample.at >= since)]));
  }

  async remove(nodeId: string): Promise<void> {
    this.#nodes.delete(nodeId);
  }

  #live() {
    const cutoff = this.#now() - this.#ttlMs;
    for (const [id, node] of this.#nodes) if (node.at < cutoff) this.#nodes.delete(id);
    return [...this.#nodes];
  }
}
