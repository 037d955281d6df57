/**
 * The admin API's answers (`/v1/admin/*`), as the server sends them and the admin page reads them.
 * Types only: the routes validate their inputs with their own schemas, and these bodies are the
 * server's output. Times are ISO 8601 strings unless said.
 */

/** A node's status as `GET /v1/admin/nodes` lists it. Rates and latencies are over its last report interval. */
export interface AdminNodeStatus {
  id: string;
  version: string;
  startedAt: string;
  uptimeSeconds: number;
  ready: boolean;
  draining: boolean;
  sockets: number;
  users: number;
  /** p99 event-loop delay. */
  eventLoopLagMs: number;
  heapUsedBytes: number;
  /** Sends the node accepted (`message:send` ok, socket or REST). */
  msgsInPerSecond: number;
  /** Fan-outs written to the node's sockets. */
  msgsOutPerSecond: number;
  /** Upper bound of the `chat_ack_latency_seconds` bucket holding the p99; 0 without acks. */
  ackP99Ms: number;
  /** When the shared store received the node's last report. */
  lastHeartbeatAt: string;
}

/** One point of a node's history (`GET /v1/admin/nodes/history`). */
export interface AdminNodeSample {
  /** Epoch ms, the shared store's clock. */
  at: number;
  sockets: number;
  msgsInPerSecond: number;
  msgsOutPerSecond: number;
  ackP99Ms: number;
}

export interface AdminNodesHistory {
  intervalMs: number;
  /** Each live node's samples of the last 10 minutes, oldest first. */
  nodes: Record<string, AdminNodeSample[]>;
}

/** One connected device of a user, as the node holding it reports it. */
export interface AdminDevice {
  connectionId: string;
  nodeId: string;
  transport: 'websocket' | 'polling';
  /** The Socket.IO handshake's time. */
  connectedAt: string;
  /** The client's address as the node resolved it (TRUST_PROXY). */
  address?: string;
}

/** A user as `GET /v1/admin/users/:id` answers. */
export interface AdminUser {
  id: string;
  /** null for a user the database has no row of (known to presence or a node only). */
  displayName: string | null;
  status: string;
  lastSeenAt: string | null;
  devices: AdminDevice[];
  /** Current memberships. */
  conversations: number;
  /** The active revocation: tokens issued before it are refused. */
  revokedBefore: string | null;
}

/** `POST /v1/admin/users/:id/disconnect`'s answer. */
export interface AdminDisconnectResult {
  userId: string;
  /** Sockets closed across the cluster. */
  disconnected: number;
  revokedBefore: string | null;
}
