/**
 * What every private service shares: an instance still running when the process exits is killed and
 * its folder removed (synchronously, on 'exit'), start-up waits poll until the service answers, and a
 * child process is stopped with SIGTERM, then SIGKILL if it lingers.
 */
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/** A private service that a test stops and starts again (an outage) on the same port. */
export interface RestartableService {
  /** How a client reaches it (the service's own URL scheme). */
  readonly url: string;
  readonly port: number;
  /** Stops it; resolves once it is down. */
  stop(): Promise<void>;
  /** Starts it again on the same port (and data folder); resolves when it accepts connections. */
  start(): Promise<void>;
  /** Stops it for good and removes what it left behind. Idempotent. */
  destroy(): Promise<void>;
}

const cleanups = new Set<() => void>();
let exitHooked = false;
/** Runs `cleanup` (synchronously) when the process exits, unless the returned function was called first. */
export function onExit(cleanup: () => void): () => void {
  if (!exitHooked) {
    exitHooked = true;
    process.on('exit', () => {
      for (const run of cleanups) run();
    });
  }
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

/** Polls `probe` every 100 ms until it is true; throws once `timeoutMs` has passed. */
export async function waitUntil(probe: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what} did not come up within ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** SIGTERM, SIGKILL if it is still running 5 s later; resolves once it has exited (`exited`). */
export async function terminate(child: ChildProcess, exited: Promise<void>): Promise<void> {
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(5000)]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await exited;
}
