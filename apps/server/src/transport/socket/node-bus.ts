import type { Redis } from 'ioredis';
import type { Target } from './local-delivery.ts';

/**
 * Node-addressed channels on Redis pub/sub: each node subscribes to `<prefix>node:<its id>` only, so
 * a frame published to a node costs that node alone one receive, and costs Redis one copy. The
 * routed fan-out finds the nodes through presence; no node subscribes per room or per user, so there
 * is no subscription that could be missing when a socket connects (the channel is subscribed before
 * the node is ready).
 *
 * A frame is `<JSON of the target>\n<Socket.IO packet as encoded by the sender>`: the receiver
 * parses the small target and writes the packet as it is (JSON.stringify never emits a raw newline).
 *
 * Delivery is at most once, like any Redis pub/sub: a frame published while the receiver is not
 * subscribed (Redis restarting, the receiver gone) is lost, and the client catches up through
 * resync or its gap fetch. Publishing never throws; failures go to `onError`.
 */
export class NodeBus {
  readonly #pub: Redis;
  readonly #sub: Redis;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #onError: (error: unknown) => void;

  constructor(pub: Redis, sub: Redis, options: { channelPrefix: string; nodeId: string; onError: (error: unknown) => void }) {
    this.#pub = pub;
    this.#sub = sub;
    this.#prefix = `${options.channelPrefix}node:`;
    this.#channel = this.#prefix + options.nodeId;
    this.#onError = options.onError;
    this.subscribed = new Promise((resolve) => (this.#confirm = resolve));
  }

  /** Settles when Redis first confirmed this node's subscription. */
  readonly subscribed: Promise<void>;
  #confirm!: () => void;
  #confirmed = false;

  /**
   * Subscribes to this node's channel and hands every frame to `receive`; {@link subscribed}
   * settles once Redis confirmed it. ioredis subscribes again by itself after a reconnect.
   */
  listen(receive: (target: Target, packet: string) => void): void {
    this.#sub.on('message', (channel: string, frame: string) => {
      if (channel !== this.#channel) return;
      const split = frame.indexOf('\n');
      let target: Target;
      try {
        target = JSON.parse(frame.slice(0, split)) as Target;
      } catch (error) {
        return this.#onError(error);
      }
      receive(target, frame.slice(split + 1));
    });
    this.#sub.subscribe(this.#channel).then(
      () => {
        this.#confirmed = true;
        this.#confirm();
      },
      (error: unknown) => this.#onError(error),
    );
  }

  /** Whether this node's channel is subscribed now (false before the first confirmation and while Redis is unreachable). */
  get listening(): boolean {
    return this.#confirmed && this.#sub.status === 'ready';
  }

  publish(nodeId: string, target: Target, packet: string): void {
    this.#pub.publish(this.#prefix + nodeId, `${JSON.stringify(target)}\n${packet}`).catch(this.#onError);
  }
}
