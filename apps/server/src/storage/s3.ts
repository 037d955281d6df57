import { CopyObjectCommand, DeleteObjectsCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { S3Config } from './config.ts';
import type { ObjectStorage } from './storage.ts';

/**
 * Objects in an S3 bucket (AWS or any S3-compatible service). Clients PUT and GET through presigned
 * URLs; the node reads an object only to verify it, and writes only thumbnails. A PUT URL signs the
 * exact Content-Length and Content-Type the slot declared.
 */
export class S3Storage implements ObjectStorage {
  readonly kind = 's3';
  readonly #client: S3Client;
  readonly #bucket: string;

  constructor(config: S3Config) {
    this.#bucket = config.bucket;
    this.#client = new S3Client({
      region: config.region,
      ...(config.endpoint && { endpoint: config.endpoint }),
      ...(config.credentials && { credentials: config.credentials }),
      forcePathStyle: config.forcePathStyle,
      // Checksums on every PUT would have to be computed by the browser too: only when S3 needs them.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  async signPut(key: string, { mimeType, maxBytes, expiresAt }: { mimeType: string; maxBytes: number; expiresAt: Date }): Promise<string> {
    const command = new PutObjectCommand({ Bucket: this.#bucket, Key: key, ContentType: mimeType, ContentLength: maxBytes });
    return getSignedUrl(this.#client, command, { expiresIn: secondsUntil(expiresAt), signableHeaders: new Set(['content-type', 'content-length']) });
  }

  async signGet(key: string, { mimeType, fileName, expiresAt }: { mimeType: string; fileName: string; expiresAt: Date }): Promise<string> {
    const command = new GetObjectCommand({ Bucket: this.#bucket, Key: key, ResponseContentType: mimeType, ResponseContentDisposition: contentDisposition(mimeType, fileName) });
    return getSignedUrl(this.#client, command, { expiresIn: secondsUntil(expiresAt) });
  }

  async size(key: string): Promise<number | null> {
    try {
      const head = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: key }));
      return head.ContentLength ?? 0;
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async read(key: string): Promise<Buffer | null> {
    try {
      const object = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: key }));
      return object.Body ? Buffer.from(await object.Body.transformToByteArray()) : Buffer.alloc(0);
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async write(key: string, bytes: Buffer, mimeType: string): Promise<void> {
    await this.#client.send(new PutObjectCommand({ Bucket: this.#bucket, Key: key, Body: bytes, ContentType: mimeType }));
  }

  async promote(from: string, to: string): Promise<void> {
    await this.#client.send(new CopyObjectCommand({ Bucket: this.#bucket, Key: to, CopySource: `${this.#bucket}/${from}` }));
    await this.delete([from]);
  }

  async delete(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    // DeleteObjects succeeds for keys that do not exist: a repeated sweep is harmless.
    await this.#client.send(new DeleteObjectsCommand({ Bucket: this.#bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }));
  }

  close(): void {
    this.#client.destroy();
  }
}

/** Inline for what a browser shows safely (images, audio, video), a download for everything else. */
export function contentDisposition(mimeType: string, fileName: string): string {
  const inline = /^(image\/(png|jpeg|gif|webp|avif)|audio\/|video\/)/.test(mimeType);
  const ascii = fileName.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `${inline ? 'inline' : 'attachment'}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(fileName)}`;
}

function secondsUntil(date: Date): number {
  return Math.max(1, Math.ceil((date.getTime() - Date.now()) / 1000));
}

function isMissing(error: unknown): boolean {
  return error instanceof S3ServiceException && (error.name === 'NotFound' || error.name === 'NoSuchKey' || error.$metadata.httpStatusCode === 404);
}
