import type { ClientEventName, ClientEventResults, ClientPayload } from '@chat/protocol';
import { ChatError } from './errors.ts';
import type { Emit } from './events.ts';
import type { ClientConfig } from './options.ts';
import { ClientState } from './state.ts';

/** Emits a protocol event and resolves with its ok-result (`ChatClient.request`). */
export type Requester = <E extends ClientEventName>(event: E, payload: ClientPayload<E>, options?: { timeoutMs?: number }) => Promise<ClientEventResults[E]>;

/**
 * What the client's modules share: the resolved options, what is known of the conversations, the
 * session's facts (who I am, whether the connection is up or the client closed) and the two ways
 * out (`emit` to the app's listeners, `request` to the server). Every other piece of state belongs
 * to the one module that changes it. Holds no socket: a module driven through a context needs no server.
 */
export class ClientContext {
  readonly config: ClientConfig;
  readonly state: ClientState;
  readonly emit: Emit;
  readonly request: Requester;

  /** The authenticated user, known once connected. */
  userId: string | null = null;
  /** The socket is connected (the connection's set-up may still be running). */
  connected = false;
  /** `close()` was called: nothing more is sent, every timer stops. */
  closed = false;
  /** My unread notification count as last heard; null before the first list or event. */
  unreadNotifications: number | null = null;
  /** Conversations I archived, as last heard (list, resync, pushes, acks). */
  readonly archived = new Set<string>();

  #connectedSignal: { promise: Promise<void>; resolve: () => void } | null = null;

  constructor(config: ClientConfig, emit: Emit, request: Requester) {
    this.config = config;
    this.emit = emit;
    this.request = request;
    this.state = new ClientState(config.maxTrackedMessages);
    for (const { conversationId, version } of config.since) this.state.ensure(conversationId).advance(version);
  }

  /** Resolves on the next connect (or close): what a retry loop waits on instead of spinning. */
  whenConnected(): Promise<void> {
    if (this.connected || this.closed) return Promise.resolve();
    if (!this.#connectedSignal) {
      let resolve = () => {};
      const promise = new Promise<void>((done) => (resolve = done));
      this.#connectedSignal = { promise, resolve };
    }
    return this.#connectedSignal.promise;
  }

  /** Wakes everything waiting in {@link whenConnected}; called once connected, and on close. */
  signalConnected(): void {
    this.#connectedSignal?.resolve();
    this.#connectedSignal = null;
  }
}

export function closedError(): ChatError {
  return new ChatError('closed', 'The client is closed');
}
