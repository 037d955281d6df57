import type { Presence, PresenceStatus } from '@chat/protocol';
import type { Db } from '../db/client.ts';
import type { PresenceConnection, PresenceStore, PresenceView, WentOffline } from '../state/presence.ts';
import type { Fanout } from './fanout.ts';

/**
 * How far back a failover replay reaches: longer than a Redis Cluster takes to notice a dead master
 * and promote its replica (cluster-node-timeout, 15 s by default) plus the time this node takes to
 * see the new topology and run the replay (a presence tick, a slot refresh).
 */
export const REPLAY_WINDOW_MS = 120_000;
/** Bounds the replay memory under a disconnect storm (about 150 bytes each). */
const REPLAY_MAX_DISCONNECTS = 100_000;
/** Bounds the users whose announcement waits for PostgreSQL (one id each). */
const DEFERRED_MAX_USERS = 100_000;

export interface PresenceServiceOptions {
  /**
   * A transition's announcement (or its `last_seen_at` record) failed, PostgreSQL being unreachable
   * for the contacts query; {@link PresenceService.retryDeferred} announces it later.
   */
  onDeferred?: (error: unknown, pending: number) => void;
}

/**
 * Who is online, as the users who share a conversation with someone see it. The store (Redis in a
 * cluster) knows every device on every node; this service turns its transitions into
 * `presence:updated` events for the user's contacts, and keeps `users.last_seen_at` for the record.
 *
 * An invisible user's transitions are not announced (they look offline all along); turning invisible
 * is announced as going offline, and turning visible again as coming online.
 *
 * The store change and its announcement are separate steps: a transition always reaches the store,
 * and an announcement that fails (PostgreSQL unreachable: the contacts are read from it) is kept and
 * made again by {@link retryDeferred}, with the user's state as it is then, so contacts never keep
 * seeing a user online who left during a database outage. What a deferred announcement costs is
 * its delay (until PostgreSQL answers and the next retry), and, if this node dies meanwhile, the
 * announcement itself: the contacts see the change on their next presence fetch.
 */
export class PresenceService {
  readonly #db: Db;
  readonly #store: PresenceStore;
  readonly #fanout: Fanout;
  /** This node's disconnects of the last {@link REPLAY_WINDOW_MS}, oldest first, for {@link replayDisconnects}. */
  readonly #recentDisconnects: Array<{ connection: PresenceConnection; at: number }> = [];
  /** Users whose last transition was not announced, oldest first. */
  readonly #deferred = new Set<string>();
  readonly #onDeferred: NonNullable<PresenceServiceOptions['onDeferred']>;

  constructor(db: Db, store: PresenceStore, fanout: Fanout, options: PresenceServiceOptions = {}) {
    this.#db = db;
    this.#store = store;
    this.#fanout = fanout;
    this.#onDeferred = options.onDeferred ?? (() => {});
  }

  /** How many users' announcements wait for {@link retryDeferred}. */
  get deferredCount(): number {
    return this.#deferred.size;
  }

  /**
   * Announces the deferred transitions, each as its user's state is now (a user who came back online
   * meanwhile is announced online), and records `last_seen_at` of those now offline. Stops at the
   * first failure, which keeps the rest for the next call: PostgreSQL is then still away.
   */
  async retryDeferred(): Promise<void> {
    if (this.#deferred.size === 0) return;
    const views = await this.#store.get([...this.#deferred]);
    for (const view of views) {
      try {
        if (!view.online && view.lastSeenAt !== null) await this.#recordLastSeen(view.userId, view.lastSeenAt);
        await this.#announceNow(view);
      } catch (error) {
        this.#onDeferred(error, this.#deferred.size);
        return;
      }
      this.#deferred.delete(view.userId);
    }
  }

  /**
   * Registers a connection; resolves once the store has it, so fan-outs find it from then on. The
   * returned `announce` tells the user's contacts when this made them come online (call it without
   * holding up the connection).
   */
  async connected(connection: PresenceConnection): Promise<{ announce: () => Promise<void> }> {
    const { cameOnline, status } = await this.#store.connect(connection);
    const announce = cameOnline && status !== 'invisible' ? () => this.#announce({ userId: connection.userId, online: true, status, lastSeenAt: null }) : () => Promise.resolve();
    return { announce };
  }

  async disconnected(connection: PresenceConnection): Promise<void> {
    this.#recentDisconnects.push({ connection, at: Date.now() });
    this.#forgetOldDisconnects();
    await this.#disconnect(connection);
  }

  /**
   * Runs this node's disconnects of the last {@link REPLAY_WINDOW_MS} again. A Redis Cluster
   * failover loses the writes its old master acknowledged but had not replicated, and refuses those
   * sent while no master served the slot; a lost or refused disconnect would leave its user shown
   * online for ever. Each replay removes only a claim this node still holds on that connection, so
   * running one twice, or after the original succeeded, changes nothing.
   */
  async replayDisconnects(): Promise<void> {
    this.#forgetOldDisconnects();
    for (const { connection } of [...this.#recentDisconnects]) await this.#disconnect(connection);
  }

  async #disconnect(connection: PresenceConnection): Promise<void> {
    const { wentOffline, lastSeenAt, status } = await this.#store.disconnect(connection);
    if (wentOffline) await this.#wentOffline({ userId: connection.userId, lastSeenAt, status });
  }

  #forgetOldDisconnects(): void {
    const horizon = Date.now() - REPLAY_WINDOW_MS;
    let drop = Math.max(0, this.#recentDisconnects.length - REPLAY_MAX_DISCONNECTS);
    while (drop < this.#recentDisconnects.length && this.#recentDisconnects[drop]!.at < horizon) drop++;
    if (drop > 0) this.#recentDisconnects.splice(0, drop);
  }

  /** Announces the users whose node died (see PresenceStore.reapDeadNodes). */
  async reaped(users: WentOffline[]): Promise<void> {
    for (const user of users) await this.#wentOffline(user);
  }

  async setStatus(userId: string, status: PresenceStatus): Promise<PresenceStatus> {
    const { previous, online } = await this.#store.setStatus(userId, status);
    if (online && previous !== status) {
      const [view] = await this.#store.get([userId]);
      if (view) await this.#announce(view);
    }
    return status;
  }

  /** Presence of the asked users that share a conversation with the viewer (and the viewer's own). */
  async get(viewerId: string, userIds: readonly string[]): Promise<Presence[]> {
    const contacts = new Set(await this.#contacts(viewerId));
    contacts.add(viewerId);
    const visible = [...new Set(userIds)].filter((id) => contacts.has(id));
    if (visible.length === 0) return [];
    return (await this.#store.get(visible, { viewerId })).map(toWire);
  }

  /**
   * Presence of each asked user, once each, for a trusted caller (a customer's backend): no contact
   * filter, but seen as other users see them, so an invisible user looks offline.
   */
  async list(userIds: readonly string[]): Promise<Presence[]> {
    return (await this.#store.get([...new Set(userIds)])).map(toWire);
  }

  async #wentOffline(user: WentOffline): Promise<void> {
    try {
      if (user.lastSeenAt !== null) await this.#recordLastSeen(user.userId, user.lastSeenAt);
      if (user.status !== 'invisible') await this.#announceNow({ userId: user.userId, online: false, status: 'offline', lastSeenAt: user.lastSeenAt });
    } catch (error) {
      this.#defer(user.userId, error);
    }
  }

  async #recordLastSeen(userId: string, lastSeenAt: number): Promise<void> {
    await this.#db.user.updateMany({ where: { id: userId }, data: { lastSeenAt: new Date(lastSeenAt) } });
  }

  async #announce(view: PresenceView): Promise<void> {
    try {
      await this.#announceNow(view);
    } catch (error) {
      this.#defer(view.userId, error);
    }
  }

  #defer(userId: string, error: unknown): void {
    // Re-inserted, so the set stays oldest first and the bound drops the oldest.
    this.#deferred.delete(userId);
    this.#deferred.add(userId);
    if (this.#deferred.size > DEFERRED_MAX_USERS) this.#deferred.delete(this.#deferred.values().next().value as string);
    this.#onDeferred(error, this.#deferred.size);
  }

  async #announceNow(view: PresenceView): Promise<void> {
    const contacts = await this.#contacts(view.userId);
    // The user's own other devices learn it too (multi-device: the status picker stays in sync).
    this.#fanout.toUsers([...contacts, view.userId], 'presence:updated', toWire(view));
  }

  /** Everyone who currently shares a conversation with the user. */
  async #contacts(userId: string): Promise<string[]> {
    const rows = await this.#db.$queryRaw<Array<{ userId: string }>>`
      SELECT DISTINCT other.user_id AS "userId"
      FROM conversation_members me
      JOIN conversation_members other ON other.conversation_id = me.conversation_id
      WHERE me.user_id = ${userId} AND me.left_at IS NULL AND other.left_at IS NULL AND other.user_id <> ${userId}`;
    return rows.map((row) => row.userId);
  }
}

function toWire(view: PresenceView): Presence {
  return { userId: view.userId, online: view.online, status: view.status, lastSeenAt: view.lastSeenAt === null ? null : new Date(view.lastSeenAt).toISOString() };
}
