/**
 * Uploads: an Attach button (any file; images and voice notes are shown in place), and a Record
 * toggle that records a voice note with MediaRecorder. A chosen or recorded file is uploaded through
 * the SDK (slot, PUT, server-side check) and sent at once as a message that attaches it by id.
 * Messages show their uploads: an image's thumbnail (a link to the full file), a player for audio, a
 * download link for anything else, each from a short-lived signed URL asked for when shown.
 */
import type { ChatClient, ChatError } from '@chat/client';
import type { Message, UploadUrls } from '@chat/protocol';
import type { PageApi } from './api.ts';
import { byId, h } from './dom.ts';

/** Signed URLs per upload id, reused until shortly before they expire. */
const urlCache = new Map<string, Promise<UploadUrls>>();

function urlsOf(client: ChatClient, uploadId: string): Promise<UploadUrls> {
  const cached = urlCache.get(uploadId);
  const fresh = cached?.then((urls) => Date.parse(urls.expiresAt) - Date.now() > 30_000);
  const pending = (async () => {
    if (cached && (await fresh)) return cached;
    return client.uploadUrls(uploadId);
  })();
  urlCache.set(uploadId, pending);
  pending.catch(() => urlCache.delete(uploadId));
  return pending;
}

/** The message's uploaded attachments, filled in as their URLs arrive; null when it has none. */
export function attachmentsOf(client: ChatClient | null, message: Message): HTMLElement | null {
  const uploads = message.deletedAt === null ? message.attachments.filter((attachment) => attachment.uploadId) : [];
  if (uploads.length === 0 || !client) return null;
  return h(
    'div',
    { class: 'attachments' },
    ...uploads.map((attachment) => {
      const slot = h('div', { class: 'attachment', 'data-upload-id': attachment.uploadId!, 'data-mime': attachment.mime }, h('span', { class: 'attachment-name' }, attachment.name));
      urlsOf(client, attachment.uploadId!).then(
        (urls) => slot.replaceChildren(viewOf(urls)),
        () => slot.replaceChildren(h('span', { class: 'attachment-name' }, `${attachment.name} (unavailable)`)),
      );
      return slot;
    }),
  );
}

function viewOf({ upload, url, thumbnailUrl }: UploadUrls): HTMLElement {
  if (thumbnailUrl) {
    const image = h('img', { class: 'attachment-image', src: thumbnailUrl, alt: upload.name, width: upload.width ?? '', height: upload.height ?? '' });
    // The thumbnail's own size (at most 320 px a side) wins over the original's, kept in proportion.
    image.removeAttribute('width');
    image.removeAttribute('height');
    return h('a', { href: url, target: '_blank', rel: 'noopener', title: upload.name }, image);
  }
  if (upload.mime.startsWith('audio/')) {
    const seconds = upload.durationMs === null ? '' : ` (${Math.round(upload.durationMs / 1000)} s)`;
    return h(
      'figure',
      { class: 'attachment-audio' },
      h('audio', { controls: true, preload: 'metadata', src: url, 'aria-label': `${upload.name}${seconds}` }),
      h('figcaption', {}, `${upload.name}${seconds}`),
    );
  }
  return h('a', { class: 'attachment-file', href: url, download: upload.name }, `${upload.name} (${Math.max(1, Math.round(upload.size / 1024))} KB)`);
}

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
