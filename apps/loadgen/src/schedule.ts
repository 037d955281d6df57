import type { Arrival } from './options.ts';
import type { Random } from './random.ts';

/**
 * An open-loop arrival process: events are due at fixed (uniform) or exponential (Poisson) gaps from
 * the start, whatever happened to earlier ones. A caller that polls late gets every overdue event at
 * once and learns how late it was — a loaded generator shows up as lag instead of silently sending less.
 */
export class Schedule {
  #next: number;
  readonly #mean: number;
  readonly #arrival: Arrival;
  readonly #random: Random;

  constructor(ratePerSecond: number, arrival: Arrival, random: Random, startMs: number) {
    this.#mean = ratePerSecond > 0 ? 1000 / ratePerSecond : Infinity;
    this.#arrival = arrival;
    this.#random = random;
    this.#next = startMs + this.#gap();
  }

  /** Fires every event due at `nowMs`; returns how overdue the oldest was (0 if none was due). */
  due(nowMs: number, fire: () => void): number {
    let lag = 0;
    while (this.#next <= nowMs) {
      lag = Math.max(lag, nowMs - this.#next);
      fire();
      this.#next += this.#gap();
    }
    return lag;
  }

  #gap(): number {
    if (this.#mean === Infinity) return Infinity;
    return this.#arrival === 'poisson' ? this.#random.exponential(this.#mean) : this.#mean;
  }
}
