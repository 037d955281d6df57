import type { BackoffPolicy } from '@chat/protocol';

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

/** The SDK's retry options as the protocol's back-off policy (defaults: 250 ms doubling up to 10 s). */
export function retryPolicy(options: RetryOptions = {}): BackoffPolicy {
  return { initialMs: options.initialDelayMs ?? 250, maxMs: options.maxDelayMs ?? 10_000 };
}
