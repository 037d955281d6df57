/**
 * Exactly-once accounting of one conversation at one device.
 *
 * Seqs are gap-free per conversation, so "which messages did this device get" is a set of integers
 * above the conversation's seq when the load started (`base`). It is kept as the highest seq received
 * plus the ranges still missing below it: O(1) while messages arrive in order, O(gaps) otherwise,
 * never O(messages) — thousands of devices times thousands of messages stay small.
 */
export type Receipt = 'new' | 'late' | 'duplicate' | 'history';

/** Past this many missing ranges the oldest is given up on (counted as lost for good), to stay bounded. */
export const MAX_GAPS = 1024;

export class SeqWindow {
  /** Seqs at or below this belong to before the load (system messages of the conversation's creation). */
  readonly base: number;
  /** Highest seq received, own or not. */
  high: number;
  /** Highest seq delivered by the server (not the device's own ack): what out-of-order is judged against. */
  highDelivered: number;
  received = 0;
  duplicates = 0;
  outOfOrder = 0;
  /** Missing seqs dropped from `gaps` when it overflowed; they count as lost even if they come later. */
  abandoned = 0;
  // Missing ranges below `high` as flat [from, to] pairs, ascending and disjoint. A new gap always
  // lies above every existing one, so appending keeps the order.
  readonly #gaps: number[] = [];

  constructor(base: number) {
    this.base = base;
    this.high = base;
    this.highDelivered = base;
  }

  /**
   * Records a `message` event. `own` is the sender device's own message (from its ack): it fills the
   * set but is no delivery, so it does not make a delivery from another sender look out of order.
   * - `new`: first time, in order; `late`: first time, but below a seq this device already had
   *   delivered (an out-of-order delivery); `duplicate`: this seq was already received;
   *   `history`: at or below `base`, not part of the load.
   */
  add(seq: number, own = false): Receipt {
    if (seq <= this.base) return 'history';
    let result: Receipt;
    if (seq > this.high) {
      if (seq > this.high + 1) this.#addGap(this.high + 1, seq - 1);
      this.high = seq;
      result = 'new';
    } else if (this.#fill(seq)) {
      result = 'new';
    } else {
      this.duplicates += 1;
      return 'duplicate';
    }
    this.received += 1;
    if (!own) {
      if (seq < this.highDelivered) {
        this.outOfOrder += 1;
        result = 'late';
      } else {
        this.highDelivered = seq;
      }
    }
    return result;
  }

  /** How many seqs in (base, upTo] this device has not received. */
  missing(upTo: number): number {
    if (upTo <= this.base) return 0;
    let count = this.abandoned + Math.max(0, upTo - this.high);
    for (let i = 0; i < this.#gaps.length; i += 2) {
      const from = this.#gaps[i]!;
      if (from > upTo) break;
      count += Math.min(this.#gaps[i + 1]!, upTo) - from + 1;
    }
    return count;
  }

  /** Up to `limit` missing seqs in (base, upTo], lowest first: examples for a report. */
  missingSample(upTo: number, limit = 10): number[] {
    const sample: number[] = [];
    for (let i = 0; i < this.#gaps.length && sample.length < limit; i += 2) {
      for (let seq = this.#gaps[i]!; seq <= Math.min(this.#gaps[i + 1]!, upTo) && sample.length < limit; seq++) sample.push(seq);
    }
    for (let seq = Math.max(this.high, this.base) + 1; seq <= upTo && sample.length < limit; seq++) sample.push(seq);
    return sample;
  }

  /** Missing ranges currently held (for tests and memory checks). */
  get gapCount(): number {
    return this.#gaps.length / 2;
  }

  #addGap(from: number, to: number): void {
    this.#gaps.push(from, to);
    if (this.#gaps.length > MAX_GAPS * 2) {
      this.abandoned += this.#gaps[1]! - this.#gaps[0]! + 1;
      this.#gaps.splice(0, 2);
    }
  }

  /** Removes `seq` from the missing ranges; false when it was not missing (already received). */
  #fill(seq: number): boolean {
    // Binary search for the last range starting at or below seq.
    let low = 0;
    let high = this.#gaps.length / 2 - 1;
    let found = -1;
    while (low <= high) {
      const mid = (low + high) >> 1;
      if (this.#gaps[mid * 2]! <= seq) {
        found = mid;
        low = mid + 1;
      } else {
        high = mid - 1;
      }
    }
    if (found < 0) return false;
    const i = found * 2;
    const from = this.#gaps[i]!;
    const to = this.#gaps[i + 1]!;
    if (seq > to) return false;
    if (from === to) this.#gaps.splice(i, 2);
    else if (seq === from) this.#gaps[i] = from + 1;
    else if (seq === to) this.#gaps[i + 1] = to - 1;
    else this.#gaps.splice(i, 2, from, seq - 1, seq + 1, to);
    return true;
  }
}

/** What the final audit found over many windows. */
export interface AuditResult {
  /** Device × message pairs that should have arrived: every device of every member, for every seq acked. */
  expected: number;
  received: number;
  lost: number;
  duplicates: number;
  outOfOrder: number;
  /** Windows (device × conversation) still missing something. */
  incomplete: number;
  samples: Array<{ device: string; conversationId: string; missing: number[]; lost: number }>;
}

export interface AuditEntry {
  device: string;
  conversationId: string;
  window: SeqWindow;
}

/**
 * Compares what each device received with what was acked: per conversation, every seq up to the
 * highest acked one is expected (seqs are gap-free, and only load messages are written after `base`).
 */
export function audit(entries: Iterable<AuditEntry>, maxAcked: ReadonlyMap<string, number>, sampleLimit = 20): AuditResult {
  const result: AuditResult = { expected: 0, received: 0, lost: 0, duplicates: 0, outOfOrder: 0, incomplete: 0, samples: [] };
  for (const { device, conversationId, window } of entries) {
    const upTo = Math.max(window.base, maxAcked.get(conversationId) ?? window.base);
    const expected = upTo - window.base;
    const lost = window.missing(upTo);
    result.expected += expected;
    result.received += expected - lost;
    result.lost += lost;
    result.duplicates += window.duplicates;
    result.outOfOrder += window.outOfOrder;
    if (lost > 0) {
      result.incomplete += 1;
      if (result.samples.length < sampleLimit) result.samples.push({ device, conversationId, missing: window.missingSample(upTo), lost });
    }
  }
  return result;
}

export function mergeAudits(results: AuditResult[], sampleLimit = 20): AuditResult {
  const merged: AuditResult = { expected: 0, received: 0, lost: 0, duplicates: 0, outOfOrder: 0, incomplete: 0, samples: [] };
  for (const result of results) {
    merged.expected += result.expected;
    merged.received += result.received;
    merged.lost += result.lost;
    merged.duplicates += result.duplicates;
    merged.outOfOrder += result.outOfOrder;
    merged.incomplete += result.incomplete;
    for (const sample of result.samples) if (merged.samples.length < sampleLimit) merged.samples.push(sample);
  }
  return merged;
}
