/**
 * Two-party video calls. The server only signals (invite, ring, accept, reject, cancel, end, and
 * relaying SDP and ICE between the two devices in the call); camera and microphone flow browser to
 * browser over WebRTC. The caller offers once the callee's device has accepted; candidates that arrive
 * before the remote description are held until it is set.
 *
 * ICE servers: none are configured, so only host candidates are gathered — enough on one machine or a
 * LAN; across NATs a deployment needs STUN/TURN servers in RTC_CONFIGURATION.
 */
import type { ChatClient, ChatError } from '@chat/client';
import type { Call, CallSignal, Conversation } from '@chat/protocol';
import type { PageApi } from './api.ts';
import { byId } from './dom.ts';

const RTC_CONFIGURATION: RTCConfiguration = { iceServers: [] };

const FINAL_TEXT: Partial<Record<Call['state'], string>> = {
  rejected: 'Call declined',
  cancelled: 'Call cancelled',
  ended: 'Call ended',
  missed: 'No answer',
  busy: 'Busy in another call',
};

type IceCandidate = Extract<CallSignal, { type: 'ice' }>['candidate'];

interface Active {
  call: Call;
  role: 'caller' | 'callee';
  pc: RTCPeerConnection | null;
  local: MediaStream | null;
  /** ICE candidates received before the remote description. */
  early: RTCIceCandidateInit[];
  /** Signals received before this device's peer connection existed. */
  held: CallSignal[];
}

export function installCalls(page: PageApi): void {
  const panel = byId('call');
  const title = byId('call-title');
  const stateText = byId('call-state');
  const remoteVideo = byId<HTMLVideoElement>('remote-video');
  const localVideo = byId<HTMLVideoElement>('local-video');
  const accept = byId<HTMLButtonElement>('call-accept');
  const reject = byId<HTMLButtonElement>('call-reject');
  const hangup = byId<HTMLButtonElement>('call-hangup');
  const callButton = byId<HTMLButtonElement>('call-button');

  let active: Active | null = null;
  let hideTimer: ReturnType<typeof setTimeout> | null = null;
  // For diagnostics and the browser tests: the live peer connection, if any.
  (globalThis as { chatCall?: () => RTCPeerConnection | null }).chatCall = () => active?.pc ?? null;

  const name = (call: Call) => page.displayName(active?.role === 'callee' || call.calleeId === page.userId ? call.callerId : call.calleeId);

  function show(text: string, state: string, buttons: { accept?: boolean; reject?: boolean; hangup?: boolean }): void {
    if (hideTimer) clearTimeout(hideTimer);
    hideTimer = null;
    panel.hidden = false;
    stateText.textContent = text;
    stateText.dataset['state'] = state;
    // No video to show before the other side answers: the panel stays compact until then.
    panel.dataset['media'] = ['connecting', 'connected', 'disconnected', 'answering'].includes(state) ? 'on' : 'off';
    accept.hidden = !buttons.accept;
    reject.hidden = !buttons.reject;
    hangup.hidden = !buttons.hangup;
  }

  /** Stops media and closes the connection; the panel shows why for a moment. */
  function finish(text: string | null): void {
    const ending = active;
    active = null;
    ending?.pc?.close();
    for (const track of ending?.local?.getTracks() ?? []) track.stop();
    remoteVideo.srcObject = null;
    localVideo.srcObject = null;
    callButton.disabled = false;
    if (!text) {
      panel.hidden = true;
      return;
    }
    show(text, 'closed', {});
    hideTimer = setTimeout(() => (panel.hidden = true), 3000);
  }

  async function media(): Promise<MediaStream> {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    localVideo.srcObject = stream;
    return stream;
  }

  function connection(current: Active, client: ChatClient): RTCPeerConnection {
    const pc = new RTCPeerConnection(RTC_CONFIGURATION);
    current.pc = pc;
    for (const track of current.local?.getTracks() ?? []) pc.addTrack(track, current.local!);
    pc.addEventListener('icecandidate', ({ candidate }) => {
      if (candidate && active === current) void client.signal(current.call.id, { type: 'ice', candidate: candidate.toJSON() as IceCandidate }).catch(() => {});
    });
    pc.addEventListener('track', ({ streams }) => {
      if (streams[0]) remoteVideo.srcObject = streams[0];
    });
    pc.addEventListener('connectionstatechange', () => {
      if (active !== current) return;
      const state = pc.connectionState;
      const text = {
        new: 'Connecting…',
        connecting: 'Connecting…',
        connected: `In a call with ${name(current.call)}`,
        disconnected: 'Connection interrupted…',
        failed: 'Connection failed',
        closed: 'Call ended',
      }[state];
      show(text, state, { hangup: true });
    });
    return pc;
  }

  async function onSignal(current: Active, client: ChatClient, signal: CallSignal): Promise<void> {
    const pc = current.pc;
    if (!pc) return void current.held.push(signal);
    if (signal.type === 'ice') {
      if (!pc.remoteDescription) current.early.push(signal.candidate as RTCIceCandidateInit);
      else await pc.addIceCandidate(signal.candidate as RTCIceCandidateInit).catch(() => {});
      return;
    }
    await pc.setRemoteDescription({ type: signal.type, sdp: signal.sdp });
    for (const candidate of current.early.splice(0)) await pc.addIceCandidate(candidate).catch(() => {});
    if (signal.type === 'offer') {
      await pc.setLocalDescription(await pc.createAnswer());
      await client.signal(current.call.id, { type: 'answer', sdp: pc.localDescription!.sdp });
    }
  }

  async function place(client: ChatClient, calleeId: string): Promise<void> {
    callButton.disabled = true;
    show(`Calling ${page.displayName(calleeId)}…`, 'starting', { hangup: true });
    title.textContent = `Call with ${page.displayName(calleeId)}`;
    let local: MediaStream;
    try {
      local = await media();
    } catch (error) {
      return finish(`Camera or microphone unavailable: ${(error as Error).message}`);
    }
    try {
      const call = await client.invite(calleeId, 'video');
      active = { call, role: 'caller', pc: null, local, early: [], held: [] };
      if (call.state === 'busy') return finish(FINAL_TEXT.busy!);
      show(`Ringing ${page.displayName(calleeId)}…`, 'ringing', { hangup: true });
    } catch (error) {
      for (const track of local.getTracks()) track.stop();
      finish(`Could not call: ${(error as ChatError).message}`);
    }
  }

  async function answer(client: ChatClient): Promise<void> {
    const current = active;
    if (current?.role !== 'callee') return;
    show('Answering…', 'answering', { hangup: true });
    try {
      current.local = await media();
      // The peer connection exists before the accept: the caller's offer may arrive right after it.
      connection(current, client);
      current.call = await client.acceptCall(current.call.id);
      for (const signal of current.held.splice(0)) await onSignal(current, client, signal);
    } catch (error) {
      if (active === current) {
        void client.rejectCall(current.call.id).catch(() => {});
        finish(`Could not answer: ${(error as Error).message}`);
      }
    }
  }

  function leave(client: ChatClient): void {
    const current = active;
    if (!current) {
      finish(null);
      return;
    }
    const { call, role } = current;
    const request = call.state === 'accepted' ? client.endCall(call.id) : role === 'caller' ? client.cancelCall(call.id) : client.rejectCall(call.id);
    request.catch(() => {});
    finish(role === 'callee' && call.state === 'ringing' ? 'Call declined' : 'Call ended');
  }

  accept.addEventListener('click', () => page.client && void answer(page.client));
  reject.addEventListener('click', () => page.client && leave(page.client));
  hangup.addEventListener('click', () => page.client && leave(page.client));
  panel.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && page.client && active) leave(page.client);
  });
  callButton.addEventListener('click', () => {
    const client = page.client;
    const conversation = page.openConversation;
    const other = conversation ? page.otherMember(conversation) : null;
    if (client && other && !active) void place(client, other);
  });

  page.onOpen((conversation: Conversation | null) => {
    callButton.hidden = conversation?.kind !== 'direct' || !page.otherMember(conversation);
  });

  page.onClient((client) => {
    client.on('callRinging', (call) => {
      if (active) return; // The server answers `busy` to the caller; a second ring here is another device's race.
      active = { call, role: 'callee', pc: null, local: null, early: [], held: [] };
      title.textContent = `Call from ${page.displayName(call.callerId)}`;
      show(`${page.displayName(call.callerId)} is calling (${call.media})`, 'ringing', { accept: true, reject: true });
      accept.focus();
    });
    client.on('callUpdated', (call) => {
      const current = active;
      if (!current || current.call.id !== call.id) return;
      current.call = call;
      if (call.state === 'accepted') {
        if (current.role === 'callee') {
          // Another device of mine answered: stop ringing here.
          if (call.calleeDeviceId !== client.deviceId) finish('Answered on another device');
          return;
        }
        if (call.callerDeviceId !== client.deviceId || current.pc) return;
        show('Connecting…', 'connecting', { hangup: true });
        const pc = connection(current, client);
        void pc
          .createOffer()
          .then((offer) => pc.setLocalDescription(offer))
          .then(() => client.signal(call.id, { type: 'offer', sdp: pc.localDescription!.sdp }))
          .catch((error: Error) => {
            void client.endCall(call.id).catch(() => {});
            finish(`Could not connect: ${error.message}`);
          });
        return;
      }
      const text = FINAL_TEXT[call.state];
      if (text) finish(call.state === 'ended' && call.endedBy === page.userId ? 'Call ended' : text);
    });
    client.on('milestone', ({ conversationId, kind }) => {
      // With CALL_MIN_MESSAGES set, calls open up once a direct conversation has that many messages.
      if (kind === 'calls_unlocked' && page.openConversation?.id === conversationId) page.notice('You can call each other now: use the camera button.');
    });
    client.on('callSignal', ({ callId, signal }) => {
      const current = active;
      if (current && current.call.id === callId) void onSignal(current, client, signal).catch((error: Error) => console.warn('call signal:', error.message));
    });
    client.on('disconnected', () => {
      // Signals go to this device by its socket id, which a reconnect changes: a call still being set
      // up cannot finish. One already connected keeps its media, which does not flow through us.
      if (active && page.client === client && active.pc?.connectionState !== 'connected') leave(client);
    });
  });
}
