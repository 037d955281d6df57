import fp from 'fastify-plugin';

type Check = () => Promise<void>;

/** An operator's request that this node drain (POST /v1/admin/nodes/:id/drain). */
export interface DrainRequest {
  /** The admin key's id (never the key). */
  keyId: string;
  /** The node that took the API call. */
  via: string;
}

/**
 * The node's own state as operators see it: whether it is draining, which dependencies readiness
 * depends on, and how much work is in flight (so a drain can wait for it).
 */
export class Lifecycle {
  #draining = false;
  #closing = false;
  #inflight = 0;
  #idleWaiters: Array<() => void> = [];
  readonly #checks = new Map<string, Check>();
  #drainHandler: ((request: DrainRequest) => void) | null = null;
  #drainRequested = false;

  get draining(): boolean {
    return this.#draining;
  }

  get inflight(): number {
    return this.#inflight;
  }

  /** Readiness turns false at once and stays false; new connections are refused from now on. */
  startDraining(): void {
    this.#draining = true;
  }

  /** True once the node stops taking new work from connected sockets (the last step before closing them). */
  get closing(): boolean {
    return this.#closing;
  }

  stopAcceptingWork(): void {
    this.#draining = true;
    this.#closing = true;
  }

  /**
   * What a drain request runs: the process's SIGTERM path (main.ts), else the app's own drain
   * (app.ts, for nodes built in-process). The last handler registered wins.
   */
  onDrainRequested(handler: (request: DrainRequest) => void): void {
    this.#drainHandler = handler;
  }

  /**
   * Starts the drain a request asks for, once: false when the node already drains (or was asked
   * to). The handler runs on a later turn of the event loop, so the caller answers first.
   */
  requestDrain(request: DrainRequest): boolean {
    if (this.#draining || this.#drainRequested) return false;
    const handler = this.#drainHandler;
    if (!handler) throw new Error('no drain handler registered');
    this.#drainRequested = true;
    setImmediate(() => handler(request));
    return true;
  }

  /** Registers a dependency check that readiness runs (e.g. a database ping). */
  addCheck(name: string, check: Check): void {
    this.#checks.set(name, check);
  }

  /** Runs every check with a timeout; a check that throws or hangs reports its dependency down. */
  async checkDependencies(timeoutMs: number): Promise<Record<string, 'up' | 'down'>> {
    const entries = await Promise.all(
      [...this.#checks].map(async ([name, check]) => {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('timeout')), timeoutMs);
        });
        try {
          await Promise.race([check(), timeout]);
          return [name, 'up'] as const;
        } catch {
          return [name, 'down'] as const;
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    return Object.fromEntries(entries);
  }

  /** Counts a unit of work (a socket event being handled) so a drain can wait for it to finish. */
  async track<T>(work: () => Promise<T>): Promise<T> {
    this.#inflight++;
    try {
      return await work();
    } finally {
      this.#inflight--;
      if (this.#inflight === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
    }
  }

  /** Resolves once nothing is in flight. */
  idle(): Promise<void> {
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    lifecycle: Lifecycle;
  }
}

export default fp(
  async (app) => {
    app.decorate('lifecycle', new Lifecycle());
  },
  { name: 'lifecycle' },
);
