import type { Cluster } from 'ioredis';
import { hashTag, isCluster, type RedisClient } from '../../state/redis-client.ts';
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
 * One Redis: one script per fan-out reads where the recipients' connections are (presence's
 * `conns:{<userId>}` hashes, connectionId → nodeId) and publishes one frame to each other node
 * holding one, so a fan-out costs one round trip, and fan-outs leave in the order they were issued
 * (scripts run in order on one connection).
 *
 * ARGV: connections key before and after the user id, channel prefix, this node, except ('' for
 * none), user room prefix, devices mode ('1' or ''), the packet, the number of users, the users,
 * then (devices mode) the wanted connection ids. Returns how many frames it published.
 */
const PUBLISH_TO_HOLDERS = `
local connsBefore, connsAfter, channels, self, except, roomPrefix, devices, packet = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7] == '1', ARGV[8]
local users = tonumber(ARGV[9])
local wanted = {}
if devices then
  for i = 10 + users, #ARGV do wanted[ARGV[i]] = true end
end
local byNode, nodes = {}, {}
for i = 10, 9 + users do
  local user = ARGV[i]
  local entries = redis.call('HGETALL', connsBefore .. user .. connsAfter)
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
  redis.call('PUBLISH', channels .. '{' .. node .. '}', cjson.encode(target) .. '\\n' .. packet)
end
return #nodes
`;

/**
 * Node-addressed channels: each node subscribes to `<prefix>node:{<its id>}` only, so a frame
 * published to a node costs that node alone one receive, and costs Redis one copy. Frames go only to
 * the nodes presence says hold a recipient; no node subscribes per room or per user, so there is no
 * subscription that could be missing when a socket connects.
 *
 * On one Redis this is plain pub/sub, published from the lookup script. On a Redis Cluster it is
 * sharded pub/sub (SSUBSCRIBE/SPUBLISH: a frame travels to the one shard that owns the channel's
 * slot, not to every shard): the node reads the recipients' `conns` hashes (each in its user's slot),
 * then publishes; publishes are issued in the order the fan-outs were, whatever order the lookups
 * answer in, so one node's frames to another stay in order.
 *
 * A frame is `<JSON of the target>\n<Socket.IO packet as encoded by the sender>`: the receiver
 * parses the small target and writes the packet as it is (JSON never holds a raw newline).
 *
 * Delivery is at most once, like any Redis pub/sub: a frame published while the receiver is not
 * subscribed (Redis restarting, a shard failing over, the receiver gone) is lost, and the client
 * catches up through resync or its gap fetch.
 */
export class NodeBus {
  readonly #pub: RedisClient;
  readonly #sub: RedisClient;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #nodeId: string;
  readonly #conns: { before: string; after: string };
  readonly #roomPrefix: string;
  readonly #publishToHolders: RedisScript | null;
  readonly #onError: (error: unknown) => void;
  /** Cluster mode: settles when the previous fan-out's publishes were issued. */
  #issued: Promise<unknown> = Promise.resolve();
  /** Settles when Redis first confirmed this node's subscription. */
  readonly subscribed: Promise<void>;
  #confirm!: () => void;
  #confirmed = false;

  /**
   * @param options.connections where presence keeps each user's connections (connectionsKeyParts)
   * @param options.roomPrefix the user room is `roomPrefix + userId` (connection.ts userRoom)
   */
  constructor(
    pub: RedisClient,
    sub: RedisClient,
    options: { channelPrefix: string; nodeId: string; connections: { before: string; after: string }; roomPrefix: string; onError: (error: unknown) => void },
  ) {
    this.#pub = pub;
    this.#sub = sub;
    this.#prefix = `${options.channelPrefix}node:`;
    this.#nodeId = options.nodeId;
    this.#channel = this.#channelOf(options.nodeId);
    this.#conns = options.connections;
    this.#roomPrefix = options.roomPrefix;
    this.#publishToHolders = isCluster(pub) ? null : defineScript(pub, 'busPublishToHolders', 0, PUBLISH_TO_HOLDERS);
    this.#onError = options.onError;
    this.subscribed = new Promise((resolve) => (this.#confirm = resolve));
  }

  #channelOf(nodeId: string): string {
    return this.#prefix + hashTag(nodeId);
  }

  /**
   * Subscribes to this node's channel and hands every frame to `receive`; {@link subscribed}
   * settles once Redis confirmed it. ioredis subscribes again by itself after a reconnect (on a
   * cluster: after the shard owning the channel failed over too).
   */
  listen(receive: (target: Target, packet: string) => void): void {
    const onFrame = (channel: string, frame: string) => {
      if (channel !== this.#channel) return;
      const split = frame.indexOf('\n');
      let target: Target;
      try {
        target = JSON.parse(frame.slice(0, split)) as Target;
      } catch (error) {
        return this.#onError(error);
      }
      receive(target, frame.slice(split + 1));
    };
    const sharded = isCluster(this.#sub);
    this.#sub.on(sharded ? 'smessage' : 'message', onFrame);
    (sharded ? this.#sub.ssubscribe(this.#channel) : this.#sub.subscribe(this.#channel)).then(
      () => {
        this.#confirmed = true;
        this.#confirm();
      },
      (error: unknown) => this.#onError(error),
    );
  }

  /**
   * Resolves once every fan-out handed to {@link publishToHolders} so far has had its publishes
   * issued (on a cluster they wait for their lookups): closing the connections after it loses none
   * of them, as QUIT is answered after the commands before it.
   */
  settled(): Promise<void> {
    return this.#issued.then(() => {});
  }

  /** Whether this node's channel is subscribed now (false before the first confirmation and while Redis is unreachable). */
  get listening(): boolean {
    return this.#confirmed && this.#sub.status === 'ready';
  }

  /**
   * Publishes `packet` to every other node that holds a connection of the recipients. Resolves with
   * the number of frames published; rejects when Redis could not be reached.
   */
  async publishToHolders(recipients: Recipients, packet: string): Promise<number> {
    const { userIds, except, devices } = recipients;
    if (this.#publishToHolders) {
      const args = [this.#conns.before, this.#conns.after, this.#prefix, this.#nodeId, except ?? '', this.#roomPrefix, devices ? '1' : '', packet, userIds.length, ...userIds, ...(devices ?? [])];
      return (await this.#publishToHolders(...args)) as number;
    }
    const lookup = Promise.all(userIds.map((userId) => this.#pub.hgetall(this.#conns.before + userId + this.#conns.after)));
    // Its failure is reported through `issued` below, which may only chain it after an earlier
    // fan-out's publishes: until then it must not count as an unhandled rejection.
    lookup.catch(() => {});
    const issued = this.#issued
      .then(() => lookup)
      .then((found) => {
        const frames = framesByNode(userIds, found, { self: this.#nodeId, except, devices, roomPrefix: this.#roomPrefix });
        return [...frames].map(([nodeId, target]) => (this.#pub as Cluster).spublish(this.#channelOf(nodeId), `${JSON.stringify(target)}\n${packet}`));
      });
    this.#issued = issued.catch(() => {});
    return (await Promise.all(await issued)).length;
  }
}

/** What the lookup script computes, for the cluster path: per other node, the rooms to write to. */
function framesByNode(
  userIds: readonly string[],
  connections: ReadonlyArray<Record<string, string>>,
  options: { self: string; except: string | undefined; devices: readonly string[] | undefined; roomPrefix: string },
): Map<string, Target> {
  const wanted = options.devices ? new Set(options.devices) : null;
  const rooms = new Map<string, Set<string>>();
  userIds.forEach((userId, i) => {
    for (const [connectionId, nodeId] of Object.entries(connections[i]!)) {
      if (nodeId === options.self || connectionId === options.except) continue;
      const room = wanted ? (wanted.has(connectionId) ? connectionId : null) : options.roomPrefix + userId;
      if (room === null) continue;
      const forNode = rooms.get(nodeId) ?? new Set<string>();
      forNode.add(room);
      rooms.set(nodeId, forNode);
    }
  });
  return new Map([...rooms].map(([nodeId, set]) => [nodeId, { rooms: [...set], ...(options.except && { except: options.except }) }]));
}
