import type { Call, CallMedia, CallSignal, CallState } from '@chat/protocol';
import { v7 as uuidv7 } from 'uuid';
import type { Db } from '../db/client.ts';
import { AppError } from '../errors.ts';
import type { CallRecord, CallStore, CallTimings } from '../state/calls.ts';
import type { PresenceStore } from '../state/presence.ts';
import type { Fanout } from './fanout.ts';
import type { NotificationWriter } from './notification-writer.ts';
import type { PushPublisher } from './push.ts';

export interface CallOptions {
  ringTimeoutMs: number;
  /** A live call whose node stopped touching it (crashed) is gone this long after the last touch. */
  stateTtlMs: number;
  /** Messages the pair's direct conversation needs before they may call (0: no rule). */
  minMessages: number;
}

/** How long a finished call can still be read (`call:get`; a late accept learns it is over). */
const FINAL_TTL_MS = 60_000;

interface Hosted {
  callId: string;
  deviceId: string;
  /** The last state this node knew, to tell the parties if the call vanishes with a dead node. */
  call: CallRecord;
}

/**
 * WebRTC call signaling between two users: invite, ring every device of the callee, the first accept
 * wins, reject/cancel/end, and relay of SDP and ICE between the two devices in the call (the caller's
 * device and the accepting one), wherever they are connected. Media never passes through here.
 *
 * State lives in the CallStore (Redis in a cluster) with TTLs, never in PostgreSQL. Each node touches
 * the calls of the devices it serves (`sweep`): if a node dies, the node of the other device ends its
 * calls within CALL_STATE_TTL_MS and tells both users; if both die, the calls expire by themselves.
 * Ring timeouts are claimed by whichever node sweeps first, so they fire even if the caller's node died.
 */
export class CallService {
  readonly #db: Db;
  readonly #store: CallStore;
  readonly #presence: PresenceStore;
  readonly #fanout: Fanout;
  readonly #notifications: Pick<NotificationWriter, 'system'>;
  readonly #push: PushPublisher | null;
  readonly #options: CallOptions;
  readonly #timings: CallTimings;
  /** Calls a device on this node is in, by `${callId}|${deviceId}`. */
  readonly #hosted = new Map<string, Hosted>();

  /**
   * @param notifications where missed calls are noted for the callee.
   * @param push where a callee with no connected device is told of the ringing call; none without one.
   */
  constructor(db: Db, store: CallStore, presence: PresenceStore, fanout: Fanout, notifications: Pick<NotificationWriter, 'system'>, push: PushPublisher | null, options: CallOptions) {
    this.#db = db;
    this.#store = store;
    this.#presence = presence;
    this.#fanout = fanout;
    this.#notifications = notifications;
    this.#push = push;
    this.#options = options;
    this.#timings = { ringTimeoutMs: options.ringTimeoutMs, liveTtlMs: options.stateTtlMs, finalTtlMs: FINAL_TTL_MS };
  }

  async invite(callerId: string, deviceId: string, calleeId: string, media: CallMedia): Promise<Call> {
    if (calleeId === callerId) throw new AppError('validation', 'calleeId: you cannot call yourself');
    // Only someone the caller shares a conversation with can be rung: strangers cannot ring anyone,
    // and whether a user id exists is not revealed (the answer is the one for a missing user).
    const shared = await this.#db.conversationMember.findFirst({
      where: { userId: calleeId, leftAt: null, conversation: { members: { some: { userId: callerId, leftAt: null } } } },
      select: { conversationId: true },
    });
    if (!shared) throw new AppError('not_found', 'User not found');
    await this.#checkPolicy(callerId, calleeId);

    const created = await this.#store.create({ id: uuidv7(), callerId, calleeId, media, callerDeviceId: deviceId }, this.#timings);
    if (created.busy === 'caller') throw new AppError('conflict', 'You are already in a call; end it first');
    const call = toWire(created.call);
    if (created.busy === 'callee') {
      this.#fanout.toUsers([callerId], 'call:updated', call, { except: deviceId });
      this.#notifications.system(calleeId, `Missed ${media} call (you were in another call)`, { actorId: callerId, payload: { callId: call.id, media } });
      return call;
    }
    this.#host(created.call, deviceId);
    this.#fanout.toUsers([calleeId], 'call:ringing', call);
    this.#fanout.toUsers([callerId], 'call:updated', call, { except: deviceId });
    if (this.#push) void this.#pushIfOffline(calleeId, call);
    return call;
  }

  /** The first accept wins; any later one (another device, a second tap) gets `conflict`. */
  async accept(userId: string, deviceId: string, callId: string): Promise<Call> {
    const current = await this.#party(userId, callId);
    if (current.calleeId !== userId) throw new AppError('forbidden', 'Only the callee can accept a call');
    const { call, changed } = await this.#store.transition(callId, ['ringing'], 'accepted', { calleeDeviceId: deviceId }, this.#timings);
    if (!call) throw new AppError('not_found', 'Call not found');
    if (!changed) throw new AppError('conflict', call.state === 'accepted' ? 'The call was answered on another device' : `The call is ${call.state}`);
    this.#host(call, deviceId);
    const wire = toWire(call);
    // Every other device of both parties: the caller learns who answered, the callee's others stop ringing.
    this.#fanout.toUsers([call.callerId, call.calleeId], 'call:updated', wire, { except: deviceId });
    return wire;
  }

  async reject(userId: string, callId: string, origin?: string): Promise<Call> {
    return this.#finish(userId, await this.#party(userId, callId), 'callee', ['ringing'], 'rejected', origin);
  }

  async cancel(userId: string, callId: string, origin?: string): Promise<Call> {
    return this.#finish(userId, await this.#party(userId, callId), 'caller', ['ringing'], 'cancelled', origin);
  }

  /** Hangs up: an accepted call ends; a ringing one is cancelled (caller) or rejected (callee). */
  async end(userId: string, callId: string, origin?: string): Promise<Call> {
    const current = await this.#party(userId, callId);
    if (current.state === 'ringing')
      return this.#finish(userId, current, current.callerId === userId ? 'caller' : 'callee', ['ringing'], current.callerId === userId ? 'cancelled' : 'rejected', origin);
    return this.#finish(userId, current, 'either', ['accepted'], 'ended', origin);
  }

  /** Relays a signal from the sending device to the other device in the call, on whatever node it is. */
  async signal(userId: string, deviceId: string, callId: string, signal: CallSignal): Promise<void> {
    const call = await this.#party(userId, callId);
    if (call.state !== 'accepted') throw new AppError('conflict', `Signals flow once the call is accepted; it is ${call.state}`);
    const mine = call.callerId === userId ? call.callerDeviceId : call.calleeDeviceId;
    if (mine !== deviceId) throw new AppError('forbidden', 'This device is not the one in the call');
    const peer = call.callerId === userId ? { userId: call.calleeId, deviceId: call.calleeDeviceId } : { userId: call.callerId, deviceId: call.callerDeviceId };
    if (peer.deviceId) this.#fanout.toDevices([{ userId: peer.userId, deviceId: peer.deviceId }], 'call:signal', { callId, fromUserId: userId, signal });
  }

  async get(userId: string, callId: string): Promise<Call> {
    return toWire(await this.#party(userId, callId));
  }

  /** A device disconnected: the calls it was in end (the caller's still ringing call is cancelled). */
  async deviceGone(userId: string, deviceId: string): Promise<void> {
    for (const hosted of [...this.#hosted.values()]) {
      if (hosted.deviceId !== deviceId) continue;
      this.#hosted.delete(key(hosted.callId, deviceId));
      let result = { call: null as CallRecord | null, changed: false };
      if (hosted.call.callerDeviceId === deviceId) result = await this.#store.transition(hosted.callId, ['ringing'], 'cancelled', { endedBy: userId }, this.#timings);
      if (!result.changed) result = await this.#store.transition(hosted.callId, ['accepted'], 'ended', { endedBy: userId }, this.#timings);
      if (result.call && result.changed) this.#announceFinal(result.call);
    }
  }

  /**
   * One round of housekeeping, run by every node on an interval: claims ring timeouts (as `missed`,
   * once cluster-wide) and keeps this node's live calls alive, telling the parties about calls that
   * vanished because the node of the other device died.
   */
  async sweep(): Promise<void> {
    for (const call of await this.#store.expireRinging(this.#timings)) {
      this.#announceFinal(call);
      this.#notifications.system(call.calleeId, `Missed ${call.media} call`, { actorId: call.callerId, payload: { callId: call.id, media: call.media } });
    }
    if (this.#hosted.size === 0) return;
    const touched = await this.#store.touch(
      [...this.#hosted.values()].map(({ callId, deviceId }) => ({ callId, deviceId })),
      this.#timings,
    );
    for (const [id, hosted] of this.#hosted) {
      const result = touched.get(hosted.callId);
      if (!result) continue;
      if (result.ended) {
        // The other device's node went silent: this touch ended the call, so this node tells everyone.
        this.#announceFinal(result.ended);
      } else if (result.state === null) {
        this.#hosted.delete(id);
        // Vanished (this node could not touch it in time): nobody else will say so.
        this.#fanout.toUsers([hosted.call.callerId, hosted.call.calleeId], 'call:updated', { ...toWire(hosted.call), state: 'ended', endedBy: null, endedAt: new Date().toISOString() });
      } else if (result.state !== 'ringing' && result.state !== 'accepted') {
        this.#hosted.delete(id);
      }
    }
  }

  async #checkPolicy(callerId: string, calleeId: string): Promise<void> {
    const needed = this.#options.minMessages;
    if (needed <= 0) return;
    const [directLowId, directHighId] = callerId < calleeId ? [callerId, calleeId] : [calleeId, callerId];
    const conversation = await this.#db.conversation.findUnique({ where: { directLowId_directHighId: { directLowId, directHighId } }, select: { lastSeq: true } });
    const count = conversation?.lastSeq ?? 0;
    if (count < needed) throw new AppError('forbidden', `Calls unlock after ${needed} messages in your direct conversation (${count} so far)`);
  }

  /** The call if the user is one of its two parties; `not_found` otherwise, exactly as for a missing call. */
  async #party(userId: string, callId: string): Promise<CallRecord> {
    const call = await this.#store.get(callId);
    if (!call || (call.callerId !== userId && call.calleeId !== userId)) throw new AppError('not_found', 'Call not found');
    return call;
  }

  /** Moves `current` (the call as its party `userId` just read it) from `from` to a final state. */
  async #finish(userId: string, current: CallRecord, who: 'caller' | 'callee' | 'either', from: readonly CallState[], to: CallState, origin?: string): Promise<Call> {
    const callId = current.id;
    if (who === 'caller' && current.callerId !== userId) throw new AppError('forbidden', 'Only the caller can cancel a call');
    if (who === 'callee' && current.calleeId !== userId) throw new AppError('forbidden', 'Only the callee can reject a call');
    const { call, changed } = await this.#store.transition(callId, from, to, { endedBy: userId }, this.#timings);
    if (!call) throw new AppError('not_found', 'Call not found');
    if (!changed) throw new AppError('conflict', `The call is ${call.state}`);
    this.#announceFinal(call, origin);
    return toWire(call);
  }

  #announceFinal(call: CallRecord, origin?: string): void {
    for (const deviceId of [call.callerDeviceId, call.calleeDeviceId]) if (deviceId) this.#hosted.delete(key(call.id, deviceId));
    this.#fanout.toUsers([call.callerId, call.calleeId], 'call:updated', toWire(call), { except: origin });
  }

  #host(call: CallRecord, deviceId: string): void {
    this.#hosted.set(key(call.id, deviceId), { callId: call.id, deviceId, call });
  }

  async #pushIfOffline(calleeId: string, call: Call): Promise<void> {
    try {
      const [view] = await this.#presence.get([calleeId], { viewerId: calleeId });
      if (!view?.online) this.#push?.send({ type: 'call', recipientId: calleeId, call });
    } catch {
      // No presence, no push: the call still rings on any device that connects.
    }
  }
}

function key(callId: string, deviceId: string): string {
  return `${callId}|${deviceId}`;
}

function toWire(call: CallRecord): Call {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    id: call.id,
    callerId: call.callerId,
    calleeId: call.calleeId,
    media: call.media,
    state: call.state,
    callerDeviceId: call.callerDeviceId,
    calleeDeviceId: call.calleeDeviceId,
    endedBy: call.endedBy,
    createdAt: new Date(call.createdAt).toISOString(),
    ringDeadline: new Date(call.ringDeadline).toISOString(),
    acceptedAt: iso(call.acceptedAt),
    endedAt: iso(call.endedAt),
  };
}
