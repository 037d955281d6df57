import type { Sql, Statement } from '../db/client.ts';

/**
 * The revocations a node enforces, in memory: userId → revokedBefore (epoch ms). A token of the user
 * issued before that instant is refused. Entries only move forward, so a late or repeated notice
 * never un-revokes anything, and an entry older than the longest token lifetime (it can match no
 * live token) is dropped.
 */
export class RevocationList {
  readonly #before = new Map<string, number>();
  readonly #maxLifetimeMs: number;
  readonly #now: () => number;

  constructor(maxLifetimeSeconds: number, now: () => number = Date.now) {
    this.#maxLifetimeMs = maxLifetimeSeconds * 1000;
    this.#now = now;
  }

  /** Records a revocation; an earlier one than the user's current changes nothing. */
  apply(userId: string, revokedBefore: number): void {
    if (!Number.isFinite(revokedBefore) || revokedBefore <= this.#now() - this.#maxLifetimeMs) return;
    const current = this.#before.get(userId);
    if (current === undefined || revokedBefore > current) this.#before.set(userId, revokedBefore);
  }

  /** The user's active revocation instant (epoch ms), or null. */
  revokedBefore(userId: string): number | null {
    const before = this.#before.get(userId);
    if (before === undefined) return null;
    if (before <= this.#now() - this.#maxLifetimeMs) {
      this.#before.delete(userId);
      return null;
    }
    return before;
  }

  /** Whether a token of `userId` issued at `issuedAt` (epoch ms) is revoked. */
  isRevoked(userId: string, issuedAt: number): boolean {
    if (this.#before.size === 0) return false;
    const before = this.revokedBefore(userId);
    return before !== null && issuedAt < before;
  }

  /** Drops the entries no live token can match any more. */
  prune(): void {
    const horizon = this.#now() - this.#maxLifetimeMs;
    for (const [userId, before] of this.#before) if (before <= horizon) this.#before.delete(userId);
  }

  get size(): number {
    return this.#before.size;
  }
}

/** Where revocations are committed, so a node started later (or restarted) enforces them too. */
export class RevocationStore {
  readonly #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Commits a revocation at `at`, or keeps a later one already stored; returns the stored instant. */
  async revoke(userId: string, at: Date): Promise<Date> {
    const [row] = await this.#sql.query<{ revoked_before: Date }>(REVOKE, [userId, at]);
    return row!.revoked_before;
  }

  /** Every revocation later than `since`, and removes the older ones (they can match no live token). */
  async active(since: Date): Promise<Array<{ userId: string; revokedBefore: Date }>> {
    await this.#sql.query(PRUNE, [since]);
    const rows = await this.#sql.query<{ user_id: string; revoked_before: Date }>(ACTIVE, [since]);
    return rows.map((row) => ({ userId: row.user_id, revokedBefore: row.revoked_before }));
  }
}

const REVOKE: Statement = {
  name: 'chat_token_revoke_v1',
  text: `
  INSERT INTO token_revocations (user_id, revoked_before) VALUES ($1, $2)
  ON CONFLICT (user_id) DO UPDATE SET revoked_before = GREATEST(token_revocations.revoked_before, EXCLUDED.revoked_before)
  RETURNING revoked_before`,
};
const ACTIVE: Statement = {
  name: 'chat_token_revocations_active_v1',
  text: 'SELECT user_id, revoked_before FROM token_revocations WHERE revoked_before > $1',
};
const PRUNE: Statement = {
  name: 'chat_token_revocations_prune_v1',
  text: 'DELETE FROM token_revocations WHERE revoked_before <= $1',
};
