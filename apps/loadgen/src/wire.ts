import type { ConversationKind } from '@chat/protocol';
import type { AuditResult } from './accounting.ts';
import type { Options } from './options.ts';
import type { PlannedUser } from './plan.ts';
import type { Snapshot } from './stats.ts';

/** `workerData` of a worker thread: the run and the users (with all their devices) it owns. */
export interface WorkerInit {
  options: Options;
  worker: number;
  users: PlannedUser[];
}

export interface CreateTask {
  index: number;
  kind: ConversationKind;
  /** Local user index of the creator (the conversation's first member). */
  creator: number;
  /** The other members' user ids. */
  others: string[];
}

export interface Registration {
  conversationId: string;
  /** The conversation's last seq right after creation: load messages come after it. */
  base: number;
  /** Members owned by this worker (user indexes). */
  localMembers: number[];
}

/**
 * Coordinator → worker requests. Each is answered once with a {@link Reply} of the same id. Times are
 * epoch ms of the shared clock (`performance.timeOrigin + performance.now()`), so all workers start a
 * phase together.
 */
export type Command =
  | { cmd: 'tick' }
  | { cmd: 'connect'; startAt: number; rate: number; deadline: number }
  | { cmd: 'create'; tasks: CreateTask[]; deadline: number }
  | { cmd: 'register'; registrations: Registration[] }
  | { cmd: 'load'; startAt: number; durationMs: number; rate: number; typing: number; churn: number; presence: number; drainDeadline: number }
  /** Ends the load phase now instead of at `durationMs`; the drain then lasts until `drainDeadline`. */
  | { cmd: 'finish'; drainDeadline: number }
  | { cmd: 'audit'; maxAcked: Array<[string, number]>; deadline: number }
  | { cmd: 'close' };

export interface Results {
  tick: Snapshot;
  connect: { connected: number; failed: number };
  create: { created: Array<{ index: number; conversationId: string; base: number }>; failed: number };
  register: { windows: number };
  load: {
    maxAcked: Array<[string, number]>;
    unacked: number;
    offline: number;
    /** Devices whose last unplanned disconnect was not followed by a resync. */
    unrecovered: number;
    /** [conversationId, seq, messageId] of every acked message, with `recordAcked` only. */
    acked: Array<[string, number, string]>;
  };
  audit: AuditResult & {
    waitedMs: number;
    duplicateSamples: Array<{ device: string; conversationId: string; seq: number }>;
    /** Deliveries below a seq the device already had delivered: `after` is that seq. */
    lateSamples: Array<{ device: string; conversationId: string; seq: number; after: number; resync: boolean }>;
  };
  finish: Record<string, never>;
  close: Record<string, never>;
}

export type Request = Command & { id: number };
export type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };
