import type { Db } from '../db/client.ts';
import type { Principal } from '../plugins/auth.ts';

/**
 * Users exist because a trusted token says so: the first connect creates the row from the claims,
 * later ones refresh the display name. A small per-node memo spares a write for every REST call.
 */
export class UserService {
  readonly #db: Db;
  readonly #known = new Map<string, string>();
  static readonly #MEMO_SIZE = 10_000;

  constructor(db: Db) {
    this.#db = db;
  }

  /** Creates or updates the user named by the principal; idempotent and safe under concurrency. */
  async ensure(principal: Principal, options: { force?: boolean } = {}): Promise<void> {
    if (!options.force && this.#known.get(principal.userId) === principal.displayName) return;
    const now = new Date();
    await this.#db.user.upsert({
      where: { id: principal.userId },
      create: { id: principal.userId, displayName: principal.displayName, lastSeenAt: now },
      update: { displayName: principal.displayName, lastSeenAt: now },
    });
    if (this.#known.size >= UserService.#MEMO_SIZE) this.#known.clear();
    this.#known.set(principal.userId, principal.displayName);
  }
}
