import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  clientEventSchemas,
  limits,
  type Call,
  type CallSignalRelay,
  type ClientEventResults,
  type ClientPayload,
  type ConversationMilestone,
  type Notification,
  type NotificationsRead,
  type ServerToClientEvents,
} from '../src/index.ts';

// The contract the browser client is built against: pinned at the type level and by the schemas.
describe('notification and call protocol', () => {
  it('types every event, payload and ack result', () => {
    expectTypeOf<ClientPayload<'notification:mark-read'>>().toEqualTypeOf<{ notificationIds: string[] } | { all: true }>();
    expectTypeOf<ClientPayload<'call:invite'>>().toEqualTypeOf<{ calleeId: string; media: 'audio' | 'video' }>();
    expectTypeOf<ClientEventResults['call:accept']>().toEqualTypeOf<{ call: Call }>();
    expectTypeOf<ClientEventResults['notification:mark-read']>().toEqualTypeOf<NotificationsRead>();
    expectTypeOf<ClientEventResults['notification:list']['notifications']>().toEqualTypeOf<Notification[]>();
    expectTypeOf<Parameters<ServerToClientEvents['call:ringing']>[0]>().toEqualTypeOf<Call>();
    expectTypeOf<Parameters<ServerToClientEvents['call:signal']>[0]>().toEqualTypeOf<CallSignalRelay>();
    expectTypeOf<Parameters<ServerToClientEvents['conversation:milestone']>[0]>().toEqualTypeOf<ConversationMilestone>();
    expectTypeOf<Parameters<ServerToClientEvents['notification:new']>[0]>().toEqualTypeOf<{ notification: Notification; unreadCount: number }>();
    expectTypeOf<Call['state']>().toEqualTypeOf<'ringing' | 'accepted' | 'rejected' | 'cancelled' | 'ended' | 'missed' | 'busy'>();
  });

  it('accepts what browsers send and refuses the rest', () => {
    const callId = '0190a5f5-0000-7000-8000-000000000001';
    const signal = clientEventSchemas['call:signal'];
    expect(signal.safeParse({ callId, signal: { type: 'offer', sdp: 'v=0\r\n' } }).success).toBe(true);
    // RTCIceCandidate.toJSON(), and the end-of-candidates marker.
    expect(
      signal.safeParse({ callId, signal: { type: 'ice', candidate: { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0', sdpMLineIndex: 0, usernameFragment: null } } }).success,
    ).toBe(true);
    expect(signal.safeParse({ callId, signal: { type: 'ice', candidate: { candidate: '' } } }).success).toBe(true);
    expect(signal.safeParse({ callId, signal: { type: 'offer', sdp: 'x'.repeat(limits.sdpLength + 1) } }).success).toBe(false);
    expect(signal.safeParse({ callId, signal: { type: 'pranswer', sdp: 'v=0' } }).success).toBe(false);
    expect(signal.safeParse({ callId, signal: { type: 'ice', sdp: 'v=0' } }).success).toBe(false);

    const markRead = clientEventSchemas['notification:mark-read'];
    expect(markRead.safeParse({ all: true }).success).toBe(true);
    expect(markRead.safeParse({ all: false }).success).toBe(false);
    expect(markRead.safeParse({ notificationIds: [] }).success).toBe(false);
    expect(markRead.safeParse({ notificationIds: [callId], all: true }).success).toBe(false);
    expect(markRead.safeParse({ notificationIds: Array.from({ length: limits.notificationBatch + 1 }, () => callId) }).success).toBe(false);
    expect(clientEventSchemas['call:invite'].safeParse({ calleeId: 'bob', media: 'screen' }).success).toBe(false);
    expect(clientEventSchemas['notification:list'].safeParse({ unreadOnly: true, limit: limits.pageSize }).success).toBe(true);
  });
});
