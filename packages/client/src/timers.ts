// Timers typed without Node's `Timeout` so the SDK compiles and runs the same in browsers.
export type Timer = ReturnType<typeof setTimeout>;

/** Back-off settings shared by message retries and reconnects after a refusal. */
export interface RetryOptions {
  /**
   * First delay; each further attempt doubles it.
   * @default 250
   */
  initialDelayMs?: number;
  /**
   * Upper bound of a delay.
   * @default 10000
   */
  maxDelayMs?: number;
}

/**
 * Capped exponential back-off with jitter: attempt n waits between half and all of
 * min(max, initial·2^(n-1)), so thousands of clients failing together do not retry in lockstep;
 * never less than what the server asked for (`retryAfterMs`).
 */
export function backoff(attempt: number, options: Required<RetryOptions>, retryAfterMs = 0): number {
  const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** Math.min(attempt - 1, 30));
  return Math.max(retryAfterMs, Math.round(ceiling * (0.5 + Math.random() * 0.5)));
}
