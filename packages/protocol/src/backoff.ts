/** Capped exponential back-off, the one formula every retry loop of the cluster and its clients uses. */
export interface BackoffPolicy {
  /** Delay ceiling of the first attempt; each further attempt doubles it. */
  initialMs: number;
  /** Upper bound of any delay. */
  maxMs: number;
}

/**
 * Delay before retry number `attempt` (1-based): uniformly between half and all of
 * min(maxMs, initialMs·2^(attempt-1)), so many clients failing together do not retry in lockstep,
 * and never less than what the server asked for (`retryAfterMs`). `random` is injectable for tests.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, retryAfterMs = 0, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(Math.max(attempt, 1) - 1, 30));
  return Math.max(retryAfterMs, Math.round(ceiling * (0.5 + random() * 0.5)));
}
