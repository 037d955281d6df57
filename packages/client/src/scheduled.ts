import type { Attachment, ScheduledMessage, ScheduledPage } from '@chat/protocol';
import { v7 as uuidv7 } from 'uuid';
import type { ClientContext } from './context.ts';

export interface ScheduleInput {
  conversationId: string;
  body: string;
  /** When to send it: at most 1 s in the past, at most SCHEDULE_MAX_AHEAD_DAYS ahead. */
  sendAt: Date | string;
  attachments?: Attachment[];
  /**
   * The message's id on this device; generated when absent. Pass the same one to retry a schedule
   * whose answer was lost (a timeout, a disconnect): the server answers the stored one.
   */
  clientMsgId?: string;
}

const iso = (value: Date | string) => (value instanceof Date ? value.toISOString() : value);

/**
 * Messages to be sent later by the server, exactly once, whether or not this device is online then.
 * Every change (made here, on another device of mine, or the server sending or failing one) is
 * emitted as `scheduledUpdated`: the server pushes the others' to this device (changes.ts), and this
 * device's own come from the acks.
 */
export class ScheduledMessages {
  readonly #ctx: ClientContext;

  constructor(ctx: ClientContext) {
    this.#ctx = ctx;
  }

  /** Rejects with `send_at_out_of_range` for a time in the past or too far ahead, `not_found` for a conversation I am not in. */
  async schedule(input: ScheduleInput): Promise<{ scheduled: ScheduledMessage; duplicate: boolean }> {
    const result = await this.#ctx.request('message:schedule', {
      conversationId: input.conversationId,
      clientMsgId: input.clientMsgId ?? uuidv7(),
      body: input.body,
      sendAt: iso(input.sendAt),
      ...(input.attachments && { attachments: input.attachments }),
    });
    if (!result.duplicate) this.#ctx.emit('scheduledUpdated', result.scheduled);
    return result;
  }

  /** One page of my pending scheduled messages (in one conversation, or all), soonest first. */
  list(options: { conversationId?: string; cursor?: string; limit?: number } = {}): Promise<ScheduledPage> {
    return this.#ctx.request('message:scheduled-list', options);
  }

  /** Changes body and/or time; `scheduled_not_pending` once the server has started sending it. */
  async edit(scheduledId: string, change: { body?: string; sendAt?: Date | string }): Promise<ScheduledMessage> {
    const payload = { scheduledId, ...(change.body !== undefined && { body: change.body }), ...(change.sendAt !== undefined && { sendAt: iso(change.sendAt) }) };
    return this.#changed((await this.#ctx.request('message:scheduled-edit', payload)).scheduled);
  }

  /** It is never sent; `scheduled_not_pending` once the server has started sending it. */
  async cancel(scheduledId: string): Promise<ScheduledMessage> {
    return this.#changed((await this.#ctx.request('message:scheduled-cancel', { scheduledId })).scheduled);
  }

  #changed(scheduled: ScheduledMessage): ScheduledMessage {
    this.#ctx.emit('scheduledUpdated', scheduled);
    return scheduled;
  }
}
