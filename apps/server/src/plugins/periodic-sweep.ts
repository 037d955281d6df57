import type { FastifyBaseLogger } from 'fastify';

const MAX_INTERVAL_MS = 10 * 60_000;

export interface PeriodicSweep {
  /** Ends the timer and waits for a sweep under way. */
  stop(): Promise<void>;
}

/**
 * Runs `sweep` on this node every quarter of `ttlMs` (at least 1 s, at most 10 min), jittered so nodes
 * started together do not sweep in step, and never two at once on one node. The sweeps themselves
 * must be safe to run on every node at the same time. A failed sweep is logged; the next one retries.
 * @param options.swept the log line after a sweep that deleted something; `failed` the one after a failure.
 */
export function startPeriodicSweep(log: FastifyBaseLogger, options: { ttlMs: number; sweep: () => Promise<number>; swept: string; failed: string }): PeriodicSweep {
  const every = Math.max(1000, Math.min(MAX_INTERVAL_MS, options.ttlMs / 4));
  let running: Promise<void> | null = null;
  const run = () => {
    running ??= options
      .sweep()
      .then(
        (deleted) => {
          if (deleted > 0) log.info({ deleted }, options.swept);
        },
        (error: unknown) => log.warn({ err: error }, options.failed),
      )
      .finally(() => {
        running = null;
      });
  };
  const timer = setInterval(run, every * (0.75 + Math.random() / 2));
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}
