/** Event name → listener arguments. */
export type EventMap<T> = { [K in keyof T]: unknown[] };

type Listener<Args extends unknown[]> = (...args: Args) => void;

/**
 * A minimal typed event emitter that runs in browsers and Node alike. A listener that throws does not
 * stop the other listeners nor the SDK's own bookkeeping: its error is rethrown on a microtask, where
 * the host reports it like any uncaught error (as DOM `EventTarget` does).
 */
export class Emitter<Events extends EventMap<Events>> {
  // Created on first subscription: thousands of clients without listeners pay for one empty Map each.
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Subscribes and returns the matching unsubscribe function. */
  on<E extends keyof Events>(event: E, listener: Listener<Events[E]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  /** Subscribes for the next emission only. */
  once<E extends keyof Events>(event: E, listener: Listener<Events[E]>): () => void {
    const off = this.on(event, (...args) => {
      off();
      listener(...args);
    });
    return off;
  }

  off<E extends keyof Events>(event: E, listener: Listener<Events[E]>): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    set.delete(listener as Listener<never>);
    if (set.size === 0) this.#listeners.delete(event);
  }

  listenerCount(event: keyof Events): number {
    return this.#listeners.get(event)?.size ?? 0;
  }

  protected emit<E extends keyof Events>(event: E, ...args: Events[E]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as Listener<Events[E]>)(...args);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
