import type { ConversationKind } from '@chat/protocol';
import { UsageError, type Options } from './options.ts';
import { Random } from './random.ts';

export interface PlannedDevice {
  /** Global index over all devices of the run (it goes into every message body). */
  index: number;
  transport: 'websocket' | 'polling';
}

export interface PlannedUser {
  index: number;
  id: string;
  /** The worker thread that owns the user and every device of it. */
  worker: number;
  devices: PlannedDevice[];
  /** With `--placement conversation` or `one`: the sticky key every device of the user sends (its first conversation's, or one for all). */
  sticky?: string;
}

export interface PlannedConversation {
  index: number;
  kind: ConversationKind;
  /** User indexes; the first creates the conversation. */
  members: number[];
}

export interface Plan {
  users: PlannedUser[];
  conversations: PlannedConversation[];
  devices: number;
}

export function userId(runId: string, index: number): string {
  return `lg-${runId}-${index}`;
}

/**
 * Who exists and who talks to whom, decided up front from the seed so a scenario run repeats. Users
 * are dealt to workers round-robin; members are drawn from a shuffled deck so every user is in about
 * the same number of conversations and creators are spread (the server's per-user budget for creating
 * conversations is small).
 */
export function buildPlan(options: Options): Plan {
  const random = new Random(options.seed);
  const users: PlannedUser[] = [];
  let devices = 0;
  while (devices < options.clients) {
    const count = Math.min(random.int(options.devicesPerUser.min, options.devicesPerUser.max), options.clients - devices);
    const index = users.length;
    const planned: PlannedUser = { index, id: userId(options.runId, index), worker: index % options.workers, devices: [] };
    for (let i = 0; i < count; i++) {
      const transport = options.transport === 'mixed' ? (random.next() < 0.5 ? 'websocket' : 'polling') : options.transport;
      planned.devices.push({ index: devices++, transport });
    }
    users.push(planned);
  }
  if (users.length < options.groupSize.max) throw new UsageError(`--group-size up to ${options.groupSize.max} needs that many users; the plan has ${users.length}`);

  const deck: number[] = [];
  const draw = (): number => {
    if (deck.length === 0) deck.push(...random.shuffle(users.map((user) => user.index)));
    return deck.pop()!;
  };
  const pairs = new Set<string>();
  const pairKey = (a: number, b: number) => (a < b ? `${a}|${b}` : `${b}|${a}`);
  const directOnly = options.groupSize.max === 2;

  const conversations: PlannedConversation[] = [];
  for (let index = 0; index < options.conversations; index++) {
    const size = random.int(options.groupSize.min, options.groupSize.max);
    const creator = draw();
    if (size === 2) {
      const partner = directPartner(creator, draw(), users.length, pairs, pairKey, random);
      if (partner !== null) {
        pairs.add(pairKey(creator, partner));
        conversations.push({ index, kind: 'direct', members: [creator, partner] });
        continue;
      }
      if (directOnly) throw new UsageError(`--conversations ${options.conversations}: ran out of distinct user pairs for direct conversations`);
    }
    const members = [creator];
    const taken = new Set(members);
    while (members.length < size) {
      let candidate = draw();
      while (taken.has(candidate)) candidate = random.int(0, users.length - 1);
      taken.add(candidate);
      members.push(candidate);
    }
    conversations.push({ index, kind: 'group', members });
  }
  if (options.placement === 'one') for (const user of users) user.sticky = 'one';
  if (options.placement === 'conversation') {
    for (const conversation of conversations) for (const member of conversation.members) users[member]!.sticky ??= `conv-${conversation.index}`;
  }
  return { users, conversations, devices };
}

/** A partner with whom `creator` has no direct conversation yet: the drawn one, else any; null if none is left. */
function directPartner(creator: number, drawn: number, userCount: number, pairs: Set<string>, key: (a: number, b: number) => string, random: Random): number | null {
  if (drawn !== creator && !pairs.has(key(creator, drawn))) return drawn;
  for (let attempt = 0; attempt < 32; attempt++) {
    const candidate = random.int(0, userCount - 1);
    if (candidate !== creator && !pairs.has(key(creator, candidate))) return candidate;
  }
  const start = random.int(0, userCount - 1);
  for (let offset = 0; offset < userCount; offset++) {
    const candidate = (start + offset) % userCount;
    if (candidate !== creator && !pairs.has(key(creator, candidate))) return candidate;
  }
  return null;
}
