import type { CallMedia, CallState } from '@chat/protocol';

/** A call as the store keeps it. Times are epoch ms on the store's clock. */
export interface CallRecord {
  id: string;
  callerId: string;
  calleeId: string;
  media: CallMedia;
  state: CallState;
  callerDeviceId: string;
  calleeDeviceId: string | null;
  endedBy: string | null;
  createdAt: number;
  ringDeadline: number;
  acceptedAt: number | null;
  endedAt: number | null;
  /** Last touch by the node of the caller's device, and of the accepting device (see {@link CallStore.touch}). */
  callerSeenAt: number;
  calleeSeenAt: number | null;
}

/** What one touch found for one call. */
export interface Touched {
  /** The call's state after the touch; null when it no longer exists. */
  state: CallState | null;
  /** Set when this touch ended the accepted call because the other device's node went silent. */
  ended: CallRecord | null;
}

export type NewCall = Pick<CallRecord, 'id' | 'callerId' | 'calleeId' | 'media' | 'callerDeviceId'>;

export interface CallTimings {
  /** A ringing call not accepted within this long is claimed by {@link CallStore.expireRinging}. */
  ringTimeoutMs: number;
  /**
   * Liveness of accepted calls: the node of each device in the call touches it on an interval; when
   * one side has not been touched for this long (its node died), the other side's next touch ends
   * the call. A call nobody touches (both nodes died) disappears with its busy markers after twice
   * this long: the margin lets a merely slow node end a call properly instead of finding it gone.
   */
  liveTtlMs: number;
  /** How long a finished call stays readable (late accepts get `conflict`, not `not_found`). */
  finalTtlMs: number;
}

/**
 * Calls and who is in one, shared by all nodes. Only what may be lost: every entry has a TTL.
 *
 * Atomicity: each method is one atomic step (a Lua script in Redis). `create` checks and takes both
 * parties' busy markers at once, so two calls racing for one user never both ring; `transition` is a
 * compare-and-set on the call's state, so of two devices accepting at once exactly one wins; and
 * `expireRinging` hands each timed-out call to exactly one caller cluster-wide.
 *
 * A user is busy while a marker names a live call of theirs. Markers live exactly as long as the call
 * (same TTL, refreshed together) and are removed when it reaches a final state.
 */
/** What a transition sets besides the state. */
export interface CallPatch {
  calleeDeviceId?: string;
  endedBy?: string | null;
}

/** The call as a transition left it (null if unknown or expired), and whether that transition changed it. */
export interface CallTransition {
  call: CallRecord | null;
  changed: boolean;
}

export interface CallStore {
  /**
   * Creates a ringing call whose ring deadline is `ringTimeoutMs` from now, unless a party is busy:
   * a busy caller gets `busy: 'caller'` and nothing is stored; a busy callee gets `busy: 'callee'` and
   * the call is stored already final in state `busy`.
   */
  create(call: NewCall, timings: CallTimings): Promise<{ call: CallRecord; busy: null | 'callee' } | { call: null; busy: 'caller' }>;

  get(callId: string): Promise<CallRecord | null>;

  /**
   * Moves the call to `to` (with `patch`), only if its current state is one of `from`. Accepting
   * stamps `acceptedAt`; a final state stamps `endedAt`, drops the busy markers and shortens the TTL.
   * @returns the call as it now is (null if unknown or expired) and whether this call changed it.
   */
  transition(callId: string, from: readonly CallState[], to: CallState, patch: CallPatch, timings: CallTimings): Promise<CallTransition>;

  /** Claims ringing calls past their deadline as `missed` (each returned once, to one caller). */
  expireRinging(timings: CallTimings, limit?: number): Promise<CallRecord[]>;

  /**
   * Records that each given device is still connected to a live node (the caller's device also while
   * ringing), and extends its accepted call's TTL (and markers) to 2 × `liveTtlMs` from now. An accepted call whose other device has not been
   * touched within `liveTtlMs` is ended (`endedBy` null) by this touch: exactly one toucher gets it in
   * `ended`. (A ringing call lives until its ring deadline plus `liveTtlMs` regardless, so
   * `expireRinging` always finds it.)
   * @returns per call id what the touch found; a call touched for both its devices in one batch
   *   (both on this node) reports the touch that ended it, if one did.
   */
  touch(devices: ReadonlyArray<{ callId: string; deviceId: string }>, timings: CallTimings): Promise<Map<string, Touched>>;
}

/** The states a call ends in: both stores stamp `endedAt`, free its users and keep it `finalTtlMs` more. */
export const FINAL_CALL_STATES: ReadonlySet<CallState> = new Set(['rejected', 'cancelled', 'ended', 'missed', 'busy']);

/** Calls of one process (single-node mode, tests). Expired entries are pruned lazily. */
export class MemoryCallStore implements CallStore {
  readonly #now: () => number;
  readonly #calls = new Map<string, { call: CallRecord; expiresAt: number }>();
  readonly #markers = new Map<string, { callId: string; expiresAt: number }>();

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  async create(input: NewCall, timings: CallTimings): Promise<{ call: CallRecord; busy: null | 'callee' } | { call: null; busy: 'caller' }> {
    const now = this.#now();
    this.#prune(now);
    if (this.#markers.has(input.callerId)) return { call: null, busy: 'caller' };
    const calleeBusy = this.#markers.has(input.calleeId);
    const call: CallRecord = {
      ...input,
      state: calleeBusy ? 'busy' : 'ringing',
      calleeDeviceId: null,
      endedBy: null,
      createdAt: now,
      ringDeadline: now + timings.ringTimeoutMs,
      acceptedAt: null,
      endedAt: calleeBusy ? now : null,
      callerSeenAt: now,
      calleeSeenAt: null,
    };
    if (calleeBusy) {
      this.#calls.set(call.id, { call, expiresAt: now + timings.finalTtlMs });
      return { call: { ...call }, busy: 'callee' };
    }
    const expiresAt = call.ringDeadline + timings.liveTtlMs;
    this.#calls.set(call.id, { call, expiresAt });
    this.#markers.set(call.callerId, { callId: call.id, expiresAt });
    this.#markers.set(call.calleeId, { callId: call.id, expiresAt });
    return { call: { ...call }, busy: null };
  }

  async get(callId: string): Promise<CallRecord | null> {
    this.#prune(this.#now());
    const entry = this.#calls.get(callId);
    return entry ? { ...entry.call } : null;
  }

  async transition(callId: string, from: readonly CallState[], to: CallState, patch: CallPatch, timings: CallTimings): Promise<CallTransition> {
    const now = this.#now();
    this.#prune(now);
    const entry = this.#calls.get(callId);
    if (!entry) return { call: null, changed: false };
    if (!from.includes(entry.call.state)) return { call: { ...entry.call }, changed: false };
    this.#apply(entry, to, patch, now, timings);
    return { call: { ...entry.call }, changed: true };
  }

  async expireRinging(timings: CallTimings, limit = 100): Promise<CallRecord[]> {
    const now = this.#now();
    this.#prune(now);
    const claimed: CallRecord[] = [];
    for (const entry of this.#calls.values()) {
      if (claimed.length >= limit) break;
      if (entry.call.state !== 'ringing' || entry.call.ringDeadline > now) continue;
      this.#apply(entry, 'missed', { endedBy: null }, now, timings);
      claimed.push({ ...entry.call });
    }
    return claimed;
  }

  async touch(devices: ReadonlyArray<{ callId: string; deviceId: string }>, timings: CallTimings): Promise<Map<string, Touched>> {
    const now = this.#now();
    this.#prune(now);
    const results: Array<[string, Touched]> = [];
    for (const { callId, deviceId } of devices) {
      const entry = this.#calls.get(callId);
      if (!entry) {
        results.push([callId, { state: null, ended: null }]);
        continue;
      }
      const call = entry.call;
      if (call.state === 'ringing' && deviceId === call.callerDeviceId) call.callerSeenAt = now;
      if (call.state !== 'accepted') {
        results.push([callId, { state: call.state, ended: null }]);
        continue;
      }
      const caller = deviceId === call.callerDeviceId;
      if (caller) call.callerSeenAt = now;
      else if (deviceId === call.calleeDeviceId) call.calleeSeenAt = now;
      const other = caller ? call.calleeSeenAt : call.callerSeenAt;
      if ((other ?? 0) < now - timings.liveTtlMs) {
        this.#apply(entry, 'ended', { endedBy: null }, now, timings);
        results.push([callId, { state: 'ended', ended: { ...call } }]);
        continue;
      }
      entry.expiresAt = now + 2 * timings.liveTtlMs;
      for (const userId of [call.callerId, call.calleeId]) {
        const marker = this.#markers.get(userId);
        if (marker?.callId === callId) marker.expiresAt = entry.expiresAt;
      }
      results.push([callId, { state: 'accepted', ended: null }]);
    }
    return byCall(results);
  }

  #apply(entry: { call: CallRecord; expiresAt: number }, to: CallState, patch: CallPatch, now: number, timings: CallTimings): void {
    const call = entry.call;
    call.state = to;
    if (patch.calleeDeviceId !== undefined) call.calleeDeviceId = patch.calleeDeviceId;
    if (patch.endedBy !== undefined) call.endedBy = patch.endedBy;
    if (to === 'accepted') {
      call.acceptedAt = now;
      call.calleeSeenAt = now;
    }
    if (FINAL_CALL_STATES.has(to)) {
      call.endedAt = now;
      entry.expiresAt = now + timings.finalTtlMs;
      for (const userId of [call.callerId, call.calleeId]) {
        if (this.#markers.get(userId)?.callId === call.id) this.#markers.delete(userId);
      }
    } else {
      entry.expiresAt = now + 2 * timings.liveTtlMs;
      for (const userId of [call.callerId, call.calleeId]) {
        const marker = this.#markers.get(userId);
        if (marker?.callId === call.id) marker.expiresAt = entry.expiresAt;
      }
    }
  }

  #prune(now: number): void {
    for (const [id, entry] of this.#calls) if (entry.expiresAt <= now) this.#calls.delete(id);
    for (const [userId, marker] of this.#markers) if (marker.expiresAt <= now) this.#markers.delete(userId);
  }
}

/** Per call id, what the touches found: where one call was touched twice, the touch that ended it wins. */
export function byCall(touched: Iterable<[string, Touched]>): Map<string, Touched> {
  const results = new Map<string, Touched>();
  for (const [callId, found] of touched) if (!results.get(callId)?.ended) results.set(callId, found);
  return results;
}
