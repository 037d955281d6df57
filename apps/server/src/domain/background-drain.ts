/**
 * Runs `drain` in the background whenever work was reported: at most one run at a time, started on
 * the next turn of the event loop (so the request that reported the work answers first, and
 * everything reported in the same turn is drained together), and started again after a run if
 * `pending()` says more arrived meanwhile. `drain` must not throw.
 */
export class BackgroundDrain {
  readonly #drain: () => Promise<void>;
  readonly #pending: () => boolean;
  #running: Promise<void> | null = null;

  constructor(drain: () => Promise<void>, pending: () => boolean) {
    this.#drain = drain;
    this.#pending = pending;
  }

  /** Work was reported: starts a run unless one is going (which picks the work up). */
  kick(): void {
    if (this.#running) return;
    this.#running = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.#drain())
      .finally(() => {
        this.#running = null;
        if (this.#pending()) this.kick();
      });
  }

  /** Resolves once everything reported so far is drained. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }
}
