/**
 * Uploaded attachments as messages show them (the timeline, a thread's root and replies): an image's
 * thumbnail (a link to the full file), a player for audio, a download link for anything else, each
 * from a short-lived signed URL asked for when shown and kept in PageState until shortly before it
 * expires.
 */
import type { ChatClient } from '@chat/client';
import type { Message, UploadUrls } from '@chat/protocol';
import { h } from './dom.ts';

/** Signed URLs per upload id (PageState.uploadUrls). */
export type UploadUrlCache = Map<string, Promise<UploadUrls>>;

function urlsOf(cache: UploadUrlCache, client: ChatClient, uploadId: string): Promise<UploadUrls> {
  const cached = cache.get(uploadId);
  const fresh = cached?.then((urls) => Date.parse(urls.expiresAt) - Date.now() > 30_000);
  const pending = (async () => {
    if (cached && (await fresh)) return cached;
    return client.uploadUrls(uploadId);
  })();
  cache.set(uploadId, pending);
  pending.catch(() => cache.delete(uploadId));
  return pending;
}

/** The message's uploaded attachments, filled in as their URLs arrive; null when it has none. */
export function attachmentsOf(cache: UploadUrlCache, client: ChatClient | null, message: Message): HTMLElement | null {
  const uploads = message.deletedAt === null ? message.attachments.filter((attachment) => attachment.uploadId) : [];
  if (uploads.length === 0 || !client) return null;
  return h(
    'div',
    { class: 'attachments' },
    ...uploads.map((attachment) => {
      const slot = h('div', { class: 'attachment', 'data-upload-id': attachment.uploadId!, 'data-mime': attachment.mime }, h('span', { class: 'attachment-name' }, attachment.name));
      urlsOf(cache, client, attachment.uploadId!).then(
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
