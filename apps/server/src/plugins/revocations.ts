import { setTimeout as sleep } from 'node:timers/promises';
import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { RevocationList, RevocationStore } from '../domain/revocations.ts';
import { AppError } from '../errors.ts';

declare module 'fastify' {
  interface FastifyInstance {
    revocations: Revocations;
  }
}

/** How soon a node that could not load them yet tries again (it refuses every token meanwhile). */
const RETRY_MS = 1000;
/** Longest a node's start waits for the control channel before loading (Redis away at start). */
const SUBSCRIBE_WAIT_MS = 2000;

export interface Revocations {
  /**
   * Throws `token_revoked` when a token of `userId` issued at `issuedAt` (epoch ms) is revoked, and
   * `unavailable` while this node has not loaded the revocations yet. Memory only.
   */
  check(userId: string, issuedAt: number): void;
  /** Whether a token of `userId` issued at `issuedAt` is revoked, as far as this node knows now. */
  isRevoked(userId: string, issuedAt: number): boolean;
  /**
   * Calls `listener` after every periodic reload that found active revocations: the backstop for a
   * node that missed a revocation's notices closes the sessions they cover there.
   */
  onReload(listener: () => void): void;
  /** The user's active revocation instant, or null. */
  revokedBefore(userId: string): Date | null;
  /**
   * Revokes every token of the user issued before now: committed to the database first, then
   * applied by every node; resolves once every node that received it confirmed (a node that did not
   * within the timeout picks it up at its next reload). Resolves with the stored instant, which a
   * later revocation only moves forward.
   */
  revoke(userId: string): Promise<Date>;
}

/**
 * Token revocation across the cluster: PostgreSQL holds them (a restarted or new node enforces them),
 * every node keeps the active ones in memory (loaded at start, after it listens on the control
 * channel, so no revocation falls between the load and the notices), notified through the control
 * channel, and reloaded every TOKEN_REVOCATION_RELOAD_MS as a backstop. Checking a token costs a map lookup.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const maxLifetimeMs = config.jwt.maxLifetimeSeconds * 1000;
    const list = new RevocationList(config.jwt.maxLifetimeSeconds);
    const store = new RevocationStore(app.sql);
    let loaded = false;
    const reloadListeners: Array<() => void> = [];

    app.control.handle('revocation', (payload) => {
      const { userId, revokedBefore } = (payload ?? {}) as { userId?: unknown; revokedBefore?: unknown };
      if (typeof userId !== 'string' || typeof revokedBefore !== 'number') throw new Error('malformed revocation notice');
      list.apply(userId, revokedBefore);
      return true;
    });

    async function reload(): Promise<void> {
      const rows = await store.active(new Date(Date.now() - maxLifetimeMs));
      for (const row of rows) list.apply(row.userId, row.revokedBefore.getTime());
      list.prune();
      loaded = true;
    }

    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const schedule = () => {
      if (stopped) return;
      timer = setTimeout(
        () => {
          reload()
            .then(() => {
              if (list.size > 0) for (const listener of reloadListeners) listener();
            })
            .catch((error: unknown) => app.log.warn({ err: error }, 'token revocations: reload failed; enforcing the ones in memory'))
            .finally(schedule);
        },
        loaded ? config.jwt.revocationReloadMs : Math.min(RETRY_MS, config.jwt.revocationReloadMs),
      );
      timer.unref();
    };
    await Promise.race([app.control.subscribed, sleep(SUBSCRIBE_WAIT_MS)]);
    await reload().catch((error: unknown) => app.log.warn({ err: error }, 'token revocations: could not load them; refusing tokens until they are loaded'));
    schedule();
    app.lifecycle.addCheck('token revocations', async () => {
      if (!loaded) throw new Error('not loaded from the database yet');
    });
    app.addHook('onClose', async () => {
      stopped = true;
      clearTimeout(timer);
    });

    app.decorate<Revocations>('revocations', {
      check(userId, issuedAt) {
        if (!loaded) throw new AppError('unavailable', 'This node cannot check token revocations yet; retry');
        if (list.isRevoked(userId, issuedAt)) throw new AppError('token_revoked', 'The token was revoked: get a new one');
      },
      isRevoked: (userId, issuedAt) => list.isRevoked(userId, issuedAt),
      onReload(listener) {
        reloadListeners.push(listener);
      },
      revokedBefore(userId) {
        const before = list.revokedBefore(userId);
        return before === null ? null : new Date(before);
      },
      async revoke(userId) {
        const revokedBefore = await store.revoke(userId, new Date());
        list.apply(userId, revokedBefore.getTime());
        const outcome = await app.control.request('revocation', { userId, revokedBefore: revokedBefore.getTime() });
        if (outcome.missing > 0 || outcome.failed.length > 0) {
          app.log.warn({ userId, missing: outcome.missing, failed: outcome.failed }, 'token revocation: not every node confirmed; they apply it at their next reload');
        }
        return revokedBefore;
      },
    });
  },
  { name: 'revocations', dependencies: ['lifecycle', 'database', 'control'] },
);
