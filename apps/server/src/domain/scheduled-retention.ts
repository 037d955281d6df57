import type { ScheduledStore } from '../db/scheduled-messages.ts';

/** Finished rows one statement deletes; a sweep repeats statements until fewer than this are left. */
export const RETENTION_SWEEP_BATCH = 500;

export interface ScheduledRetentionOptions {
  /** A row that finished (sent, failed, canceled) longer ago than this is deleted (SCHEDULED_RETENTION_HOURS). */
  retentionMs: number;
  /** @default RETENTION_SWEEP_BATCH */
  batch?: number;
  /** Told after each statement that deleted rows: how many. */
  onSwept?: (count: number) => void;
}

/**
 * Keeps `scheduled_messages` from growing forever: deletes the rows that finished more than the
 * retention ago (by `updated_at`, the database's clock), in statements of at most `batch` rows, each
 * its own short transaction. `pending` and `sending` rows are never touched. Safe on every node at
 * once: concurrent sweeps skip each other's locked rows (see ScheduledStore.sweep), so each row is
 * deleted once and nobody waits.
 *
 * Until swept, a finished row still answers for its `clientMsgId` (a retried `message:schedule`
 * gets it back as a duplicate) and makes edit and cancel answer `scheduled_not_pending`; afterwards
 * they answer as for a row that never existed (`not_found`; a sent message still makes its
 * `clientMsgId` a `conflict`). The list (`message:scheduled-list`) shows pending and sending rows only.
 */
export class ScheduledRetention {
  readonly #store: ScheduledStore;
  readonly #retentionMs: number;
  readonly #batch: number;
  readonly #onSwept: (count: number) => void;
  #running: Promise<number> | null = null;
  #stopped = false;

  constructor(store: ScheduledStore, options: ScheduledRetentionOptions) {
    this.#store = store;
    this.#retentionMs = options.retentionMs;
    this.#batch = options.batch ?? RETENTION_SWEEP_BATCH;
    this.#onSwept = options.onSwept ?? (() => {});
  }

  /**
   * Deletes every expired finished row, batch after batch; answers how many. A call while a sweep
   * runs joins it. After stop(), deletes nothing more.
   */
  sweep(): Promise<number> {
    this.#running ??= this.#sweep().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  /** The running sweep ends after its current statement; resolves once it has. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running?.catch(() => {});
  }

  async #sweep(): Promise<number> {
    let total = 0;
    while (!this.#stopped) {
      const deleted = await this.#store.sweep(this.#retentionMs, this.#batch);
      total += deleted;
      if (deleted > 0) this.#onSwept(deleted);
      if (deleted < this.#batch) break;
    }
    return total;
  }
}
