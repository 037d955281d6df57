import { presenceStatusSchema, type Presence, type PresenceStatus } from '@chat/protocol';

/** One device's socket. `connectionId` is unique cluster-wide (a Socket.IO socket id is). */
export interface PresenceConnection {
  userId: string;
  connectionId: string;
  nodeId: string;
}

/** A user as one viewer should see them. */
export interface PresenceView {
  userId: string;
  /** False while no connection is alive, and for an invisible user unless the viewer is that user. */
  online: boolean;
  /** The chosen status while `online`, otherwise `'offline'`. */
  status: Presence['status'];
  /**
   * Epoch ms of the last moment others could see the user online: when their last connection went,
   * or when they turned invisible. Null while `online`, and for a user never seen.
   */
  lastSeenAt: number | null;
}

export interface WentOffline {
  userId: string;
  /** Epoch ms, as in {@link PresenceView.lastSeenAt}. */
  lastSeenAt: number | null;
  /** Invisible users go offline too; callers announce the transition only to those who saw them. */
  status: PresenceStatus;
}

/**
 * Who is online, per connection and across nodes. A user is online while any of their connections on
 * any live node is registered; the store tells callers about the transitions so each is broadcast once.
 *
 * Atomicity: every method is one atomic step against the shared state (a Lua script in Redis), so
 * nodes racing on the same user (a device leaving node A while another joins node B) always see a
 * consistent order: exactly one of them observes each online/offline transition.
 *
 * Node death: a node calls {@link heartbeat} every few seconds. A node silent for longer than
 * `nodeTtlMs` is dead; the next {@link reapDeadNodes} (any node's) removes its connections. A node
 * killed with SIGKILL therefore vanishes within `nodeTtlMs` plus the reaping interval.
 *
 * Time is the store's clock (Redis `TIME`), so nodes with skewed clocks agree on liveness and
 * lastSeenAt.
 */
export interface PresenceStore {
  /**
   * Registers a connection and marks its node alive. Idempotent: registering a known connection
   * again changes nothing and reports `cameOnline: false`.
   * @returns `cameOnline` true only when this is the user's first live connection.
   */
  connect(connection: PresenceConnection): Promise<{ cameOnline: boolean; status: PresenceStatus }>;

  /**
   * Removes a connection. Unknown connections (already disconnected, reaped, or owned by another
   * node) are ignored and report `wentOffline: false`, so a late or repeated call never reports a
   * second transition.
   * @returns `wentOffline` true only when this was the user's last live connection; `lastSeenAt` is
   *   then what others will see, otherwise null.
   */
  disconnect(connection: PresenceConnection): Promise<{ wentOffline: boolean; lastSeenAt: number | null; status: PresenceStatus }>;

  /**
   * Marks the node alive until `nodeTtlMs` from now.
   * @returns `reaped` true when the node had been declared dead since its previous heartbeat (a long
   *   pause, a Redis outage): its connections are gone and their users were reported offline, so the
   *   node must `connect` every socket it still holds again. Reported once.
   */
  heartbeat(nodeId: string): Promise<{ reaped: boolean }>;

  /**
   * Removes the connections of every node silent for longer than `nodeTtlMs`. Safe to run on every
   * node at once: each dead node is reaped by exactly one caller, and a user is reported only when
   * their last connection anywhere went, never while they hold a connection on a live node.
   * A reaped user's lastSeenAt is their dead node's last heartbeat. `spare` (the caller's own id) is
   * never reaped: a node that is running is alive, however late its last heartbeat landed.
   */
  reapDeadNodes(options?: { spare?: string }): Promise<{ deadNodes: string[]; wentOffline: WentOffline[] }>;

  /**
   * Removes every connection of `nodeId` now, as if it had died, with the same reports. A node
   * calls it for its own id before it serves: when a previous process ran under that id (a restart
   * with a stable NODE_ID, within `nodeTtlMs` of its death) its connections must not be adopted as
   * the new process's, where nothing would ever remove them.
   */
  reapNode(nodeId: string): Promise<WentOffline[]>;

  /**
   * Sets the user's chosen status, online or not. Turning invisible while online moves lastSeenAt to
   * now, and lastSeenAt stays frozen while invisible, so it never reveals an invisible session.
   * @returns the previous status and whether the user has a live connection, so callers can announce
   *   a visible change (invisible looks like going offline to others).
   */
  setStatus(userId: string, status: PresenceStatus): Promise<{ previous: PresenceStatus; online: boolean }>;

  /**
   * The users as `viewerId` should see them, in the order asked. Invisible users look offline to
   * everyone but themselves; without `viewerId` everyone is seen from outside. With `selfView` each
   * user is seen as by themselves (online whenever a device is connected, invisible or not): one
   * lookup for "who has a device", where asking as each user would take one per user.
   */
  get(userIds: readonly string[], options?: PresenceViewpoint): Promise<PresenceView[]>;
}

export interface PresenceOptions {
  /** How long a node may go without a heartbeat before its connections are reaped. */
  nodeTtlMs: number;
}

/** How long a reaped node is remembered so its next heartbeat can say so. Longer than any pause a socket survives. */
export const REAPED_MEMORY_MS = 24 * 60 * 60 * 1000;

export type PresenceViewpoint = { viewerId?: string; selfView?: false } | { viewerId?: undefined; selfView: true };

/** Who looks at `userId`, per {@link PresenceStore.get}'s options. */
export function viewerOf(userId: string, options: PresenceViewpoint): string | undefined {
  return options.selfView ? userId : options.viewerId;
}

/** The one place the visibility rule lives, shared by both stores. */
export function presenceView(userId: string, viewerId: string | undefined, connected: boolean, status: PresenceStatus, lastSeenAt: number | null): PresenceView {
  const online = connected && (status !== 'invisible' || userId === viewerId);
  return { userId, online, status: online ? status : 'offline', lastSeenAt: online ? null : lastSeenAt };
}

/** Statuses arrive from clients; a typo must not be persisted as a fifth status. */
export function assertStatus(status: string): asserts status is PresenceStatus {
  if (!presenceStatusSchema.safeParse(status).success) throw new RangeError(`Unknown presence status: ${status}`);
}

interface UserRecord {
  status: PresenceStatus;
  lastSeenAt: number | null;
}

/**
 * The single-process store: the same semantics as the Redis one, with JavaScript's run-to-completion
 * giving the atomicity (no method awaits mid-update). Nodes are only names here.
 */
export class MemoryPresenceStore implements PresenceStore {
  readonly #nodeTtlMs: number;
  readonly #now: () => number;
  readonly #lastBeat = new Map<string, number>();
  readonly #reapedUntil = new Map<string, number>();
  /** nodeId → connectionId → userId */
  readonly #byNode = new Map<string, Map<string, string>>();
  /** userId → connectionId → nodeId */
  readonly #byUser = new Map<string, Map<string, string>>();
  readonly #users = new Map<string, UserRecord>();

  constructor(options: PresenceOptions & { now?: () => number }) {
    this.#nodeTtlMs = options.nodeTtlMs;
    this.#now = options.now ?? Date.now;
  }

  async connect({ userId, connectionId, nodeId }: PresenceConnection): Promise<{ cameOnline: boolean; status: PresenceStatus }> {
    this.#lastBeat.set(nodeId, this.#now());
    const status = this.#statusOf(userId);
    const conns = this.#byUser.get(userId) ?? new Map<string, string>();
    const previousNode = conns.get(connectionId);
    if (previousNode === nodeId) return { cameOnline: false, status };
    if (previousNode !== undefined) this.#byNode.get(previousNode)?.delete(connectionId);
    const cameOnline = conns.size === 0;
    conns.set(connectionId, nodeId);
    this.#byUser.set(userId, conns);
    const nodeConns = this.#byNode.get(nodeId) ?? new Map<string, string>();
    nodeConns.set(connectionId, userId);
    this.#byNode.set(nodeId, nodeConns);
    return { cameOnline, status };
  }

  async disconnect({ userId, connectionId, nodeId }: PresenceConnection): Promise<{ wentOffline: boolean; lastSeenAt: number | null; status: PresenceStatus }> {
    const conns = this.#byUser.get(userId);
    if (conns?.get(connectionId) !== nodeId) return { wentOffline: false, lastSeenAt: null, status: this.#statusOf(userId) };
    this.#byNode.get(nodeId)?.delete(connectionId);
    if (!this.#removeUserConnection(userId, conns, connectionId)) return { wentOffline: false, lastSeenAt: null, status: this.#statusOf(userId) };
    const record = this.#user(userId);
    if (record.status !== 'invisible') record.lastSeenAt = this.#now();
    return { wentOffline: true, lastSeenAt: record.lastSeenAt, status: record.status };
  }

  async heartbeat(nodeId: string): Promise<{ reaped: boolean }> {
    const now = this.#now();
    this.#lastBeat.set(nodeId, now);
    const until = this.#reapedUntil.get(nodeId);
    this.#reapedUntil.delete(nodeId);
    return { reaped: until !== undefined && until > now };
  }

  async reapDeadNodes(options: { spare?: string } = {}): Promise<{ deadNodes: string[]; wentOffline: WentOffline[] }> {
    const now = this.#now();
    const deadNodes: string[] = [];
    const wentOffline: WentOffline[] = [];
    for (const [nodeId, lastBeat] of this.#lastBeat) {
      if (lastBeat >= now - this.#nodeTtlMs || nodeId === options.spare) continue;
      deadNodes.push(nodeId);
      wentOffline.push(...this.#reap(nodeId, lastBeat));
      this.#reapedUntil.set(nodeId, now + REAPED_MEMORY_MS);
    }
    for (const [nodeId, until] of this.#reapedUntil) if (until <= now) this.#reapedUntil.delete(nodeId);
    return { deadNodes, wentOffline };
  }

  async reapNode(nodeId: string): Promise<WentOffline[]> {
    return this.#reap(nodeId, this.#lastBeat.get(nodeId) ?? this.#now());
  }

  #reap(nodeId: string, lastBeat: number): WentOffline[] {
    const wentOffline: WentOffline[] = [];
    for (const [connectionId, userId] of this.#byNode.get(nodeId) ?? []) {
      const conns = this.#byUser.get(userId);
      if (conns?.get(connectionId) !== nodeId) continue;
      if (!this.#removeUserConnection(userId, conns, connectionId)) continue;
      const record = this.#user(userId);
      if (record.status !== 'invisible') record.lastSeenAt = lastBeat;
      wentOffline.push({ userId, lastSeenAt: record.lastSeenAt, status: record.status });
    }
    this.#byNode.delete(nodeId);
    this.#lastBeat.delete(nodeId);
    return wentOffline;
  }

  async setStatus(userId: string, status: PresenceStatus): Promise<{ previous: PresenceStatus; online: boolean }> {
    assertStatus(status);
    const record = this.#user(userId);
    const previous = record.status;
    const online = this.#byUser.has(userId);
    if (status === 'invisible' && previous !== 'invisible' && online) record.lastSeenAt = this.#now();
    record.status = status;
    return { previous, online };
  }

  async get(userIds: readonly string[], options: PresenceViewpoint = {}): Promise<PresenceView[]> {
    return userIds.map((userId) => presenceView(userId, viewerOf(userId, options), this.#byUser.has(userId), this.#statusOf(userId), this.#users.get(userId)?.lastSeenAt ?? null));
  }

  /** @returns whether that was the user's last connection. */
  #removeUserConnection(userId: string, conns: Map<string, string>, connectionId: string): boolean {
    conns.delete(connectionId);
    if (conns.size > 0) return false;
    this.#byUser.delete(userId);
    return true;
  }

  #statusOf(userId: string): PresenceStatus {
    return this.#users.get(userId)?.status ?? 'online';
  }

  /** Created on first write only, as in Redis: connecting alone leaves no record behind. */
  #user(userId: string): UserRecord {
    let record = this.#users.get(userId);
    if (!record) {
      record = { status: 'online', lastSeenAt: null };
      this.#users.set(userId, record);
    }
    return record;
  }
}
