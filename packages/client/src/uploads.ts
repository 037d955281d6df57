import type { Upload, UploadUrls } from '@chat/protocol';
import type { ClientContext } from './context.ts';
import { ChatError } from './errors.ts';

/** What `upload()` takes: a browser `File` or `Blob` (name and type from it), or raw bytes. */
export type UploadBody = Blob | Uint8Array | ArrayBuffer;

export interface UploadOptions {
  /** The conversation the file is for: only messages there can attach it, and only its members download it. */
  conversationId: string;
  /**
   * The name shown to people.
   * @default the File's name, else 'file'
   */
  name?: string;
  /**
   * The declared type; the server checks it against the bytes.
   * @default the Blob's type, else 'application/octet-stream' (the server then takes the sniffed type)
   */
  mimeType?: string;
  /** Aborts the PUT of the bytes. */
  signal?: AbortSignal;
}

/**
 * The three steps of an upload: a slot (`upload:create`), the bytes PUT straight to storage through
 * the slot's short-lived URL (the server's own blob route, or S3), then `upload:complete`, which
 * verifies them. A PUT the storage refuses becomes a ChatError with the server's catalogued code
 * when it gave one (the disk backend does), else `upload_incomplete`.
 */
export async function uploadFile(ctx: ClientContext, body: UploadBody, options: UploadOptions): Promise<Upload> {
  const origin = ctx.config.url;
  const blob = body instanceof Blob ? body : new Blob([body instanceof Uint8Array ? new Uint8Array(body) : body]);
  const name = options.name ?? (typeof (body as File).name === 'string' && (body as File).name !== '' ? (body as File).name : 'file');
  const mimeType = options.mimeType ?? (blob.type || 'application/octet-stream');
  const slot = await ctx.request('upload:create', { conversationId: options.conversationId, name, mimeType, size: blob.size });
  let response: Response;
  try {
    response = await fetch(new URL(slot.putUrl, origin), { method: 'PUT', body: blob, headers: { 'content-type': mimeType }, ...(options.signal && { signal: options.signal }) });
  } catch (thrown) {
    throw new ChatError('upload_incomplete', `The upload's bytes could not be sent: ${thrown instanceof Error ? thrown.message : String(thrown)}`, { cause: thrown });
  }
  if (!response.ok) {
    const answer = (await response.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
    const code = answer?.error?.code;
    if (code === 'upload_too_large' || code === 'upload_slot_used') throw new ChatError(code, answer?.error?.message ?? code);
    throw new ChatError('upload_incomplete', `The storage refused the upload's bytes (HTTP ${response.status})`);
  }
  return (await ctx.request('upload:complete', { uploadId: slot.upload.id })).upload;
}

/** `upload:url` with the URLs made absolute (the disk backend answers paths on the API's origin). */
export async function uploadUrls(ctx: ClientContext, uploadId: string): Promise<UploadUrls> {
  const origin = ctx.config.url;
  const urls = await ctx.request('upload:url', { uploadId });
  return { ...urls, url: new URL(urls.url, origin).toString(), thumbnailUrl: urls.thumbnailUrl === null ? null : new URL(urls.thumbnailUrl, origin).toString() };
}
