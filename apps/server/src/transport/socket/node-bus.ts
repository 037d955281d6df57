import type { Redis } from 'ioredis';
import { defineScript, type RedisScript } from '../../state/redis-script.ts';
import type { Target } from './local-delivery.ts';

/** Who a fan-out is for: every connection of the users, or only the listed connections of theirs. */
export interface Recipients {
  userIds: readonly string[];
  /** The connection that caused the change (it has the result in its ack): skipped. */
  except?: string | undefined;
  /** When set, only these connection ids (the socket-id rooms); otherwise each user's room. */
  devices?: readonly string[];
}

/*
 * One script per fan-out: it reads where the recipients' connections are (presence's `conns:<userId>`
 * hashes, connectionId → nodeId) and publishes one frame to each other node holding one, so a
 * fan-out costs one round trip, and fan-outs leave in the order they were issued (scripts run in
 * order on one connection).
 *
 * ARGV: connections key prefix, channel prefix, this node, except ('' for none), user room prefix,
 * devices mode ('1' or ''), the packet, the number of users, the users, then (devices mode) the
 * wanted connection ids. Returns how many frames it published.
 */
const PUBLISH_TO_HOLDERS = `
local conns, channels, self, except, roomPrefix, devices, packet = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] == '1', ARGV[7]
local users = tonumber(ARGV[8])
local wanted = {}
if devices then
  for i = 9 + users, #ARGV do wanted[ARGV[i]] = true end
end
local byNode, nodes = {}, {}
for i = 9, 8 + users do
  local user = ARGV[i]
  local entries = redis.call('HGETALL', conns .. user)
  for j = 1, #entries, 2 do
    local conn, node = entries[j], entries[j + 1]
    if node ~= self and conn ~= except then
      local room
      if devices then
        if wanted[conn] then room = conn end
      else
        room = roomPrefix .. user
      end
      if room then
        local rooms = byNode[node]
        if not rooms then
          rooms = {}
          byNode[node] = rooms
          nodes[#nodes + 1] = node
        end
        rooms[room] = true
      end
    end
  end
end
for _, node in ipairs(nodes) do
  local list = {}
  for room in pairs(byNode[node]) do list[#list + 1] = room end
  local target = { rooms = list }
  if except ~= '' then target.except = except end
  redis.call('PUBLISH', channels .. node, cjson.encode(target) .. '\\n' .. packet)
end
return #nodes
`;

/**
 * Node-addressed channels on Redis pub/sub: each node subscribes to `<prefix>node:<its id>` only, so
 * a frame published to a node costs that node alone one receive, and costs Redis one copy. Frames go
 * only to the nodes presence says hold a recipient; no node subscribes per room or per user, so there
 * is no subscription that could be missing when a socket connects.
 *
 * A frame is `<JSON of the target>\n<Socket.IO packet as encoded by the sender>`: the receiver
 * parses the small target and writes the packet as it is (JSON never holds a raw newline).
 *
 * Delivery is at most once, like any Redis pub/sub: a frame published while the receiver is not
 * subscribed (Redis restarting, the receiver gone) is lost, and the client catches up through
 * resync or its gap fetch.
 */
export class NodeBus {
  readonly #sub: Redis;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #nodeId: string;
  readonly #connectionsPrefix: string;
  readonly #roomPrefix: string;
  readonly #publishToHolders: RedisScript;
  readonly #onError: (error: unknown) => void;
  /** Settles when Redis first confirmed this node's subscription. */
  readonly subscribed: Promise<void>;
  #confirm!: () => void;
  #confirmed = false;

  /**
   * @param options.connectionsPrefix where presence keeps each user's connections (connectionsKeyPrefix)
   * @param options.roomPrefix the user room is `roomPrefix + userId` (connection.ts userRoom)
   */
  constructor(
    pub: Redis,
    sub: Redis,
    options: { channelPrefix: string; nodeId: string; connectionsPrefix: string; roomPrefix: string; onError: (error: unknown) => void },
  ) {
    this.#sub = sub;
    this.#prefix = `${options.channelPrefix}node:`;
    this.#nodeId = options.nodeId;
    this.#channel = this.#prefix + options.nodeId;
    this.#connectionsPrefix = options.connectionsPrefix;
    this.#roomPrefix = options.roomPrefix;
    this.#publishToHolders = defineScript(pub, 'busPublishToHolders', 0, PUBLISH_TO_HOLDERS);
    this.#onError = options.onError;
    this.subscribed = new Promise((resolve) => (this.#confirm = resolve));
  }

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

  /**
   * Publishes `packet` to every other node that holds a connection of the recipients, in one script
   * call. Resolves with the number of frames published; rejects when Redis could not be reached.
   */
  async publishToHolders(recipients: Recipients, packet: string): Promise<number> {
    const { userIds, except, devices } = recipients;
    const args = [this.#connectionsPrefix, this.#prefix, this.#nodeId, except ?? '', this.#roomPrefix, devices ? '1' : '', packet, userIds.length, ...userIds, ...(devices ?? [])];
    return (await this.#publishToHolders(...args)) as number;
  }
}
