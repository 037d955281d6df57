import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Retries an assertion until it passes or the deadline passes, then rethrows its last failure.
 * For anything that happens asynchronously on a real server: never sleep-and-hope.
 */
export async function eventually<T>(assertion: () => T | Promise<T>, { timeoutMs = 5000, intervalMs = 25 } = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await assertion();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(intervalMs);
    }
  }
}
