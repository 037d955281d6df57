import type { Attachment, ClientPayload, Message, MessageKind } from '@chat/protocol';
import type { ChatError } from './errors.ts';

/** What `send()` takes. */
export interface SendInput {
  conversationId: string;
  body: string;
  kind?: MessageKind;
  attachments?: Attachment[];
  /** Quotes this message (a reply in the conversation's main line). */
  replyToId?: string;
  /**
   * Sends it as a reply in this message's thread: a message of the same conversation that is not a
   * reply itself (else the send fails with `validation`). The reply is a message of the conversation
   * like any other (next seq, `message` event); its root comes back as `messageUpdated` with the new
   * `thread` summary.
   */
  threadRootId?: string;
  /**
   * The idempotency key. Give one only to resend a message from an earlier session (e.g. an outbox
   * persisted by the app); it must match the protocol's `clientMsgId` format.
   * @default a new UUID v7
   */
  clientMsgId?: string;
}

/** The local record of an own message, returned at once by `send()` and updated in place. */
export interface OutgoingMessage {
  readonly clientMsgId: string;
  readonly conversationId: string;
  /** Exactly what goes on the wire, the same on every attempt. */
  readonly payload: ClientPayload<'message:send'>;
  /** `sending` until acked (`sent`) or refused for good (`failed`); see `statusOf` for delivered/read. */
  readonly state: 'sending' | 'sent' | 'failed';
  /** The stored message (id, seq) once sent. */
  readonly message: Message | null;
  /** Why it failed; null otherwise. */
  readonly error: ChatError | null;
  /** `message:send` emits so far, including retries. */
  readonly attempts: number;
  /** Resolves with the stored message, or rejects with the error that made it `failed`. Replaced by `retry()`. */
  readonly acked: Promise<Message>;
}

/** The mutable side of {@link OutgoingMessage}, only for the client. */
export class Outgoing implements OutgoingMessage {
  readonly clientMsgId: string;
  readonly conversationId: string;
  readonly payload: ClientPayload<'message:send'>;
  state: 'sending' | 'sent' | 'failed' = 'sending';
  message: Message | null = null;
  error: ChatError | null = null;
  attempts = 0;
  acked: Promise<Message>;
  #resolve: (message: Message) => void = () => {};
  #reject: (error: ChatError) => void = () => {};

  constructor(payload: ClientPayload<'message:send'>) {
    this.payload = payload;
    this.clientMsgId = payload.clientMsgId;
    this.conversationId = payload.conversationId;
    this.acked = this.#pending();
  }

  restart(): void {
    this.state = 'sending';
    this.error = null;
    this.acked = this.#pending();
  }

  sent(message: Message): void {
    this.state = 'sent';
    this.message = message;
    this.#resolve(message);
  }

  fail(error: ChatError): void {
    this.state = 'failed';
    this.error = error;
    this.#reject(error);
  }

  #pending(): Promise<Message> {
    const promise = new Promise<Message>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Callers may only watch `status` events: a failure nobody awaits must not be an unhandled rejection.
    promise.catch(() => {});
    return promise;
  }
}
