import type { Db } from '../db/client.ts';
import { BackgroundDrain } from './background-drain.ts';
import type { Fanout } from './fanout.ts';
import type { ServiceLog } from '../logger.ts';

export interface CallMilestoneOptions {
  /** Messages a direct conversation needs before its pair may call (CALL_MIN_MESSAGES; 0: no rule, nothing to do). */
  minMessages: number;
  log: Pick<ServiceLog, 'warn'>;
}

/** Conversations known to be past the milestone, remembered so their messages need no query; bounded. */
const MAX_SETTLED = 50_000;

/**
 * A direct conversation whose message count reaches CALL_MIN_MESSAGES gets `conversation:milestone`,
 * to both members, once: the conditional update that records it is what makes it once, across nodes
 * and retries. Told about every committed message (`committed`, on the send path: it returns at once
 * and never throws); the check runs in the background, one query per batch of conversations that
 * reached the count in the same turn of the event loop. Each conversation is asked about once per
 * node: a seq never goes back, so after one check past the count the milestone is recorded (here or
 * by another node) or the conversation is a group.
 */
export class CallMilestones {
  readonly #db: Db;
  readonly #fanout: Fanout;
  readonly #options: CallMilestoneOptions;
  /** Conversations whose milestone this node already checked: nothing more to do. */
  readonly #settled = new Set<string>();
  /** Conversations that reached the count since the last check. */
  #pending = new Set<string>();
  readonly #loop = new BackgroundDrain(
    () => this.#drain(),
    () => this.#pending.size > 0,
  );

  constructor(db: Db, fanout: Fanout, options: CallMilestoneOptions) {
    this.#db = db;
    this.#fanout = fanout;
    this.#options = options;
  }

  /** A message was committed with this seq. */
  committed(message: { conversationId: string; seq: number }): void {
    const { minMessages } = this.#options;
    if (minMessages <= 0 || message.seq < minMessages || this.#settled.has(message.conversationId)) return;
    this.#pending.add(message.conversationId);
    this.#loop.kick();
  }

  /** Resolves once every conversation reported so far is checked and announced (shutdown, tests). */
  idle(): Promise<void> {
    return this.#loop.idle();
  }

  async #drain(): Promise<void> {
    while (this.#pending.size > 0) {
      const conversationIds = [...this.#pending].filter((id) => !this.#settled.has(id));
      this.#pending = new Set();
      if (conversationIds.length === 0) continue;
      try {
        await this.#check(conversationIds);
      } catch (error) {
        this.#options.log.warn({ err: error, conversations: conversationIds.length }, 'calls: milestone check failed');
      }
    }
  }

  async #check(conversationIds: string[]): Promise<void> {
    const { minMessages } = this.#options;
    const reached = await this.#db.$queryRaw<Array<{ id: string; lowId: string; highId: string; at: Date }>>`
      UPDATE conversations SET calls_unlocked_at = now()
      WHERE id = ANY(${conversationIds}::uuid[]) AND kind = 'direct' AND last_seq >= ${minMessages} AND calls_unlocked_at IS NULL
      RETURNING id::text AS id, direct_low_id AS "lowId", direct_high_id AS "highId", calls_unlocked_at AS at`;
    if (this.#settled.size + conversationIds.length > MAX_SETTLED) this.#settled.clear();
    for (const id of conversationIds) this.#settled.add(id);
    for (const row of reached) {
      this.#fanout.toUsers([row.lowId, row.highId], 'conversation:milestone', {
        conversationId: row.id,
        kind: 'calls_unlocked',
        messageCount: minMessages,
        reachedAt: new Date(row.at).toISOString(),
      });
    }
  }
}
