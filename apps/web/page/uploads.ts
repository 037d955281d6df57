/**
 * Uploads: an Attach button (any file; images and voice notes are shown in place), and a Record
 * toggle that records a voice note with MediaRecorder. A chosen or recorded file is uploaded through
 * the SDK (slot, PUT, server-side check) and sent at once as a message that attaches it by id.
 * Messages show their uploads through attachments.ts.
 */
import type { ChatError } from '@chat/client';
import type { PageApi } from './api.ts';
import { byId } from './dom.ts';

export function installUploads(page: PageApi): void {
  const attach = byId<HTMLInputElement>('attach-input');
  const record = byId<HTMLButtonElement>('record-button');
  const status = byId('upload-status');
  let recorder: MediaRecorder | null = null;

  async function sendFile(file: Blob, name: string, kind: 'image' | 'file', body: string): Promise<void> {
    const conversation = page.openConversation;
    const chat = page.client;
    if (!conversation || !chat) return;
    status.textContent = `Uploading ${name}…`;
    try {
      const upload = await chat.upload(file, { conversationId: conversation.id, name });
      chat.send({ conversationId: conversation.id, body, kind, attachments: [{ uploadId: upload.id }] });
      status.textContent = '';
    } catch (error) {
      status.textContent = '';
      page.notice(`Could not upload ${name}: ${(error as ChatError).message}`);
    }
  }

  attach.addEventListener('change', () => {
    const files = [...(attach.files ?? [])];
    attach.value = '';
    for (const file of files) void sendFile(file, file.name, file.type.startsWith('image/') ? 'image' : 'file', file.name);
  });

  record.addEventListener('click', async () => {
    if (recorder) {
      recorder.stop();
      return;
    }
    let stream: MediaStream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      page.notice(`No microphone: ${(error as Error).message}`);
      return;
    }
    const type = ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus', 'audio/webm'].find((candidate) => MediaRecorder.isTypeSupported(candidate)) ?? '';
    const current = new MediaRecorder(stream, type ? { mimeType: type } : {});
    const chunks: Blob[] = [];
    current.addEventListener('dataavailable', (event) => chunks.push(event.data));
    current.addEventListener('stop', () => {
      for (const track of stream.getTracks()) track.stop();
      recorder = null;
      record.setAttribute('aria-pressed', 'false');
      record.textContent = 'Record';
      const mimeType = current.mimeType || 'audio/webm';
      const file = new Blob(chunks, { type: mimeType });
      const name = `voice-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-')}.${mimeType.includes('ogg') ? 'ogg' : 'webm'}`;
      void sendFile(file, name, 'file', 'Voice note');
    });
    current.start();
    recorder = current;
    record.setAttribute('aria-pressed', 'true');
    record.textContent = 'Stop';
  });

  page.onOpen((conversation) => {
    attach.disabled = !conversation;
    record.disabled = !conversation;
  });
}
