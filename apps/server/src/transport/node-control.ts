import type { Cluster } from 'ioredis';
import type { DrainRequest } from '../plugins/lifecycle.ts';
import { hashTag, isCluster, type RedisClient } from '../state/redis-client.ts';

/**
 * Operators' commands to one node, through Redis: each node subscribes to its own channel
 * `<prefix>control:{<its id>}` (sharded pub/sub on a Redis Cluster: the channel lives on one shard).
 * Delivery is at most once, like any pub/sub: {@link requestDrain} reports how many subscribers
 * received the message, so a caller knows when nobody did. Anything on the channel that is not a
 * well-formed command is ignored (reported through `onError`), never thrown.
 */
export class NodeControl {
  readonly #pub: RedisClient;
  readonly #sub: RedisClient;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #onError: (error: unknown) => void;

  constructor(pub: RedisClient, sub: RedisClient, options: { channelPrefix: string; nodeId: string; onError: (error: unknown) => void }) {
    this.#pub = pub;
    this.#sub = sub;
    this.#prefix = `${options.channelPrefix}control:`;
    this.#channel = this.#channelOf(options.nodeId);
    this.#onError = options.onError;
  }

  #channelOf(nodeId: string): string {
    return this.#prefix + hashTag(nodeId);
  }

  /** Subscribes to this node's channel; ioredis subscribes again by itself after a reconnect. */
  listen(onDrain: (request: DrainRequest) => void): Promise<void> {
    const sharded = isCluster(this.#sub);
    this.#sub.on(sharded ? 'smessage' : 'message', (channel: string, message: string) => {
      if (channel !== this.#channel) return;
      const request = parseDrain(message);
      if (request) onDrain(request);
      else this.#onError(new Error(`ignored a malformed control message: ${message.slice(0, 100)}`));
    });
    return (sharded ? this.#sub.ssubscribe(this.#channel) : this.#sub.subscribe(this.#channel)).then(() => {});
  }

  /** Asks `nodeId` to drain. Resolves with the number of subscribers that received the request (0: nobody listens). */
  async requestDrain(nodeId: string, request: DrainRequest): Promise<number> {
    const message = JSON.stringify({ type: 'drain', keyId: request.keyId, via: request.via });
    const channel = this.#channelOf(nodeId);
    return Number(isCluster(this.#pub) ? await (this.#pub as Cluster).spublish(channel, message) : await this.#pub.publish(channel, message));
  }
}

function parseDrain(message: string): DrainRequest | null {
  try {
    const parsed = JSON.parse(message) as Record<string, unknown>;
    if (parsed['type'] === 'drain' && typeof parsed['keyId'] === 'string' && typeof parsed['via'] === 'string') return { keyId: parsed['keyId'], via: parsed['via'] };
  } catch {
    // falls through: not JSON
  }
  return null;
}
