/**
 * Where uploaded bytes live. Objects are named by keys the server makes from upload ids
 * ({@link objectKeys}); nothing a client sends ever becomes part of a key or a path.
 *
 * Clients move the bytes themselves, through short-lived signed URLs: the node never proxies an
 * S3 upload, and the disk backend's URLs are served by the node's own blob routes
 * (transport/http/blobs.ts), which check the signature before touching the disk.
 */
export interface ObjectStorage {
  readonly kind: 'disk' | 's3';
  /**
   * A URL to PUT one object's bytes to until `expiresAt`. It accepts at most `maxBytes`
   * (the disk backend cuts the request off past that; S3 checks the signed Content-Length).
   */
  signPut(key: string, options: { mimeType: string; maxBytes: number; expiresAt: Date }): Promise<string>;
  /** A URL to GET the object until `expiresAt`, answered with this type and download name. */
  signGet(key: string, options: { mimeType: string; fileName: string; expiresAt: Date }): Promise<string>;
  /** The object's size in bytes, or null when there is none. */
  size(key: string): Promise<number | null>;
  /** The whole object (callers bound its size with {@link size} first), or null when there is none. */
  read(key: string): Promise<Buffer | null>;
  /** Stores bytes the server made itself (thumbnails). */
  write(key: string, bytes: Buffer, mimeType: string): Promise<void>;
  /**
   * Makes `from` the object `to` and removes `from`. After this, a late PUT through the slot's URL
   * (which targets `from`) can no longer change what `to` serves.
   */
  promote(from: string, to: string): Promise<void>;
  /** Removes the objects; missing ones are fine (idempotent, so a repeated sweep is harmless). */
  delete(keys: readonly string[]): Promise<void>;
}

/** The keys of one upload: where the slot's PUT lands, the verified object, and its thumbnail. */
export function objectKeys(uploadId: string): { incoming: string; object: string; thumbnail: string } {
  return { incoming: `incoming/${uploadId}`, object: `objects/${uploadId}`, thumbnail: `thumbnails/${uploadId}` };
}

/** What a key may look like: one of {@link objectKeys}' folders and a UUID. Anything else is refused. */
export const OBJECT_KEY = /^(incoming|objects|thumbnails)\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
