/**
 * Group commit: writes that arrive while earlier ones are in flight are carried by one statement, so
 * one round trip and one commit serve a whole batch. Below `maxInFlight` statements an item is written
 * at once (no added latency); above it items queue, and the next free slot takes all of them: the
 * more load, the bigger the batches. Commit cost, parsing and planning are shared by the batch, which
 * is what bounds throughput when every write commits alone.
 *
 * Guarantees:
 * - an item resolves only after the statement that carried it committed;
 * - at most one statement per `key` is in flight, so writes to one key are applied (and their results
 *   learnt) in arrival order — two concurrent statements on one row would serialize on its lock anyway,
 *   and their results could reach us in either order;
 * - a statement that fails as a whole (a deadlock, a racing unique violation) is retried one item per
 *   statement, so one bad item cannot fail the others; `flushOne` decides what such an item's own
 *   failure means, `retryAlone` when a failure is not worth retrying item by item.
 *
 * Written by hand: no library does group commit over Prisma's driver adapters.
 */
export interface GroupCommitOptions<I, O> {
  /** Writes a batch in one statement; the results are in the items' order. */
  flush: (items: I[]) => Promise<O[]>;
  /** Writes one item whose batch failed; the default is `flush([item])`. */
  flushOne?: (item: I) => Promise<O>;
  /**
   * Whether a failed batch is worth retrying item by item; when not (the database is down, say,
   * where one try per item would only multiply the wait), every item fails with the batch's error.
   * @default () => true
   */
  retryAlone?: (error: unknown) => boolean;
  /** Items with equal keys are never in two statements at once. */
  key: (item: I) => string;
  /** Most items one statement carries. */
  maxBatch: number;
  /** Statements in flight at once; keep it below the connection pool size so reads are never starved. */
  maxInFlight: number;
  /** Told the size of every batch as it is flushed (a metric: how many items one statement carries). */
  onFlush?: (items: number) => void;
}

interface Pending<I, O> {
  item: I;
  resolve: (result: O) => void;
  reject: (error: unknown) => void;
}

export class GroupCommit<I, O> {
  readonly #options: GroupCommitOptions<I, O>;
  #queue: Array<Pending<I, O>> = [];
  #inFlight = 0;
  /** Keys with a statement in flight. */
  readonly #busy = new Set<string>();

  constructor(options: GroupCommitOptions<I, O>) {
    this.#options = options;
  }

  write(item: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#inFlight < this.#options.maxInFlight && this.#queue.length > 0) {
      const batch = this.#takeBatch();
      if (batch.length === 0) return; // everything queued waits for a key already being written
      const keys = batch.map((entry) => this.#options.key(entry.item));
      this.#inFlight++;
      for (const key of keys) this.#busy.add(key);
      void this.#run(batch).finally(() => {
        for (const key of keys) this.#busy.delete(key);
        this.#inFlight--;
        this.#pump();
      });
    }
  }

  #takeBatch(): Array<Pending<I, O>> {
    const batch: Array<Pending<I, O>> = [];
    const rest: Array<Pending<I, O>> = [];
    for (const entry of this.#queue) {
      if (batch.length < this.#options.maxBatch && !this.#busy.has(this.#options.key(entry.item))) batch.push(entry);
      else rest.push(entry);
    }
    this.#queue = rest;
    return batch;
  }

  async #run(batch: Array<Pending<I, O>>): Promise<void> {
    const { flush, flushOne = async (item: I) => (await flush([item]))[0]!, retryAlone = () => true, onFlush } = this.#options;
    onFlush?.(batch.length);
    if (batch.length > 1) {
      try {
        const results = await flush(batch.map((entry) => entry.item));
        for (const [index, entry] of batch.entries()) entry.resolve(results[index]!);
        return;
      } catch (error) {
        if (!retryAlone(error)) {
          for (const entry of batch) entry.reject(error);
          return;
        }
        // Retried one by one below; each item's own outcome is what its caller gets.
      }
    }
    for (const entry of batch) await flushOne(entry.item).then(entry.resolve, entry.reject);
  }
}
