import type { ClaimedRow, Outcome, ScheduledStore } from '../db/scheduled-messages.ts';
import { toAppError } from '../errors.ts';
import type { MessageService } from './messages.ts';
import { toWireScheduled, type ScheduledMessageService } from './scheduled-messages.ts';
import type { ServiceLog } from '../logger.ts';

/**
 * How long a claim is held. A node that dies mid-round leaves its rows `sending`; another node takes
 * them over this long after the claim, so a crash delays those messages by at most this much.
 */
export const SCHEDULER_LEASE_MS = 15_000;
/** Claims of one row after which it fails for good (`unavailable`) instead of being tried again. */
const MAX_ATTEMPTS = 10;

export interface SchedulerOptions {
  /** Recorded on each claimed row (`claimed_by`). */
  nodeId: string;
  pollMs: number;
  batch: number;
  leaseMs?: number;
  log: Pick<ServiceLog, 'warn'>;
  /** Told after each round that claimed something: how many rows, and what became of each. */
  onRound?: (claimed: number) => void;
  onOutcome?: (outcome: 'sent' | 'failed' | 'retry') => void;
  /** Seconds between a message's `sendAt` and its commit. */
  onLag?: (seconds: number) => void;
}

/**
 * Every node runs one: a poll loop that claims due scheduled messages (a lease, see ScheduledStore)
 * and sends each through the normal send path (MessageService.send: membership, order, idempotency,
 * fan-out, notifications), then records the whole round in one statement and tells each sender's
 * devices. No timer lives in one process only: the rows are the schedule, and any node sends them.
 *
 * Exactly once: the message is sent with the row's clientMsgId, and the send path is idempotent per
 * (sender, clientMsgId). A node killed between the send and the finish leaves the row `sending`;
 * when the lease ends another node sends it again, finds the message already there and records it.
 *
 * Order: a round's rows get their seqs in `sendAt` order within each conversation (the writer keeps
 * the order sends start in). Rows due at nearly the same time but claimed by two nodes' concurrent
 * rounds may interleave.
 */
export class Scheduler {
  readonly #store: ScheduledStore;
  readonly #messages: MessageService;
  readonly #scheduled: ScheduledMessageService;
  readonly #options: SchedulerOptions;
  #timer: NodeJS.Timeout | null = null;
  #round: Promise<void> = Promise.resolve();
  #stopped = true;

  constructor(store: ScheduledStore, messages: MessageService, scheduled: ScheduledMessageService, options: SchedulerOptions) {
    this.#store = store;
    this.#messages = messages;
    this.#scheduled = scheduled;
    this.#options = options;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#next(0);
  }

  /** Stops polling and waits for the round in flight, whose sends and finish complete. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#round;
  }

  /**
   * One round: claims up to a batch and sends it. Answers how many rows it claimed (a full batch
   * means more may be due). Exposed for tests that drive the scheduler by hand.
   */
  async runOnce(): Promise<number> {
    const claimed = await this.#store.claim(this.#options.batch, this.#options.leaseMs ?? SCHEDULER_LEASE_MS, this.#options.nodeId);
    if (claimed.length === 0) return 0;
    this.#options.onRound?.(claimed.length);
    // Started in sendAt order, all at once: the writer applies one conversation's messages in the
    // order their sends started (see MessageWriter), and batches the round into few statements.
    const outcomes = (await Promise.all(claimed.map((row) => this.#send(row)))).filter((outcome) => outcome !== null);
    const finished = await this.#store.finish(outcomes);
    const rows = new Map(claimed.map((row) => [row.id, row]));
    for (const outcome of outcomes) {
      const row = rows.get(outcome.id);
      const updatedAt = finished.get(outcome.id);
      if (!row || updatedAt === undefined) continue;
      this.#options.onOutcome?.(outcome.status);
      const scheduled = toWireScheduled({
        ...row,
        status: outcome.status,
        messageId: outcome.status === 'sent' ? outcome.messageId : null,
        error: outcome.status === 'failed' ? outcome.error : null,
        updatedAt,
      });
      this.#scheduled.announce(row.senderId, scheduled);
    }
    return claimed.length;
  }

  /** Sends one row; null when it should be tried again after its lease (a retryable failure). */
  async #send(row: ClaimedRow): Promise<Outcome | null> {
    try {
      const { message } = await this.#messages.send(row.senderId, {
        conversationId: row.conversationId,
        clientMsgId: row.clientMsgId,
        body: row.body,
        attachments: row.attachments as never,
      });
      this.#options.onLag?.((Date.parse(message.createdAt) - new Date(row.sendAt).getTime()) / 1000);
      return { id: row.id, status: 'sent', messageId: message.id };
    } catch (error) {
      const appError = toAppError(error);
      // The sender left (not_found), the body no longer fits (validation), the clientMsgId names
      // another conversation's message (conflict): final. A retryable one may pass on a later try.
      if (!appError.toWire().retryable) return { id: row.id, status: 'failed', error: appError.code };
      if (row.attempts >= MAX_ATTEMPTS) return { id: row.id, status: 'failed', error: 'unavailable' };
      this.#options.log.warn({ err: error, scheduledId: row.id, attempts: row.attempts }, 'scheduled message not sent; tried again after its lease');
      this.#options.onOutcome?.('retry');
      return null;
    }
  }

  #next(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#round = this.#tick();
    }, delayMs);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    let full = false;
    try {
      full = (await this.runOnce()) >= this.#options.batch;
    } catch (error) {
      this.#options.log.warn({ err: error }, 'scheduler: round failed');
    }
    this.#next(full ? 0 : this.#options.pollMs);
  }
}
