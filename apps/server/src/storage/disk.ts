import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { createReadStream, createWriteStream, type ReadStream } from 'node:fs';
import { link, mkdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors.ts';
import { OBJECT_KEY, type ObjectStorage } from './storage.ts';

/** The query of a signed blob URL, as the node's blob routes receive it. */
export interface SignedQuery {
  exp?: string | undefined;
  max?: string | undefined;
  type?: string | undefined;
  name?: string | undefined;
  sig?: string | undefined;
}

/**
 * Objects as files under one directory (the embedded default, `.data/uploads`). The node serves
 * the signed URLs itself (`/v1/blobs/...`, HMAC-SHA256 over method, key, expiry and the answer's
 * headers), so a URL works until it expires and for nothing but its one object and method. Paths
 * come only from keys matching {@link OBJECT_KEY}, resolved and checked to stay under the
 * directory. Several nodes may share the directory (a network volume) if they share the secret.
 */
export class DiskStorage implements ObjectStorage {
  readonly kind = 'disk';
  readonly #root: string;
  readonly #secret: Buffer;

  constructor(dir: string, secret: Buffer) {
    this.#root = resolve(dir);
    this.#secret = secret;
  }

  async signPut(key: string, { mimeType, maxBytes, expiresAt }: { mimeType: string; maxBytes: number; expiresAt: Date }): Promise<string> {
    return this.#url('PUT', key, { exp: String(expiresAt.getTime()), max: String(maxBytes), type: mimeType });
  }

  async signGet(key: string, { mimeType, fileName, expiresAt }: { mimeType: string; fileName: string; expiresAt: Date }): Promise<string> {
    return this.#url('GET', key, { exp: String(expiresAt.getTime()), type: mimeType, name: fileName });
  }

  /**
   * Checks a blob URL's signature and expiry for this method and key; answers `not_found` for any
   * bad, expired or foreign signature, as for a missing object, so a URL reveals nothing once stale.
   */
  verify(method: 'PUT' | 'GET', key: string, query: SignedQuery): { type: string; max: number; name: string } {
    const exp = Number(query.exp);
    const expected = this.#sign(method, key, query);
    const given = Buffer.from(typeof query.sig === 'string' ? query.sig : '', 'hex');
    if (!OBJECT_KEY.test(key) || given.length !== expected.length || !timingSafeEqual(given, expected) || !(exp > Date.now())) {
      throw new AppError('not_found', 'No such blob, or the link has expired');
    }
    return { type: query.type ?? 'application/octet-stream', max: Number(query.max ?? 0), name: query.name ?? '' };
  }

  /**
   * Stores a PUT's body as `key`, at most `maxBytes`, exactly once: a body over the limit is cut off
   * with `upload_too_large`, and a key that holds bytes already (or whose upload was verified)
   * answers `upload_slot_used`. The bytes go to a private temporary file first and appear under the
   * key only whole (hard link, which fails if the key exists), so no reader sees half a file.
   */
  async receive(key: string, body: Readable, maxBytes: number): Promise<number> {
    const target = this.#path(key);
    const verified = key.startsWith('incoming/') ? this.#path(key.replace(/^incoming\//, 'objects/')) : null;
    if ((await exists(target)) || (verified && (await exists(verified)))) throw new AppError('upload_slot_used', 'This upload slot has been filled already; ask for a new slot');
    await mkdir(dirname(target), { recursive: true });
    const part = `${target}.${randomUUID()}.part`;
    let received = 0;
    try {
      await pipeline(
        body,
        async function* limit(chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) {
            received += chunk.length;
            if (received > maxBytes) throw new AppError('upload_too_large', `The slot takes at most ${maxBytes} bytes`);
            yield chunk;
          }
        },
        createWriteStream(part, { flags: 'wx' }),
      );
      await link(part, target).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'EEXIST') throw new AppError('upload_slot_used', 'This upload slot has been filled already; ask for a new slot');
        throw error;
      });
      return received;
    } catch (error) {
      // The client stopped sending (closed the connection mid-body): nothing is stored.
      const aborted = !(error instanceof AppError) && (body.errored !== null || body.readableAborted);
      throw aborted ? new AppError('upload_incomplete', 'The upload was cut off; PUT the whole file again', { cause: error }) : error;
    } finally {
      await rm(part, { force: true });
    }
  }

  /** The object as a stream with its size, or null when there is none. */
  async open(key: string): Promise<{ stream: ReadStream; size: number } | null> {
    const path = this.#path(key);
    const size = await this.size(key);
    return size === null ? null : { stream: createReadStream(path), size };
  }

  async size(key: string): Promise<number | null> {
    return stat(this.#path(key)).then(
      (info) => info.size,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return null;
        throw error;
      },
    );
  }

  async read(key: string): Promise<Buffer | null> {
    return readFile(this.#path(key)).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return null;
      throw error;
    });
  }

  async write(key: string, bytes: Buffer): Promise<void> {
    const path = this.#path(key);
    await mkdir(dirname(path), { recursive: true });
    const part = `${path}.${randomUUID()}.part`;
    await writeFile(part, bytes);
    await rename(part, path);
  }

  async promote(from: string, to: string): Promise<void> {
    const target = this.#path(to);
    await mkdir(dirname(target), { recursive: true });
    await rename(this.#path(from), target);
  }

  async delete(keys: readonly string[]): Promise<void> {
    await Promise.all(keys.map((key) => unlink(this.#path(key)).catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? undefined : Promise.reject(error)))));
  }

  /** The file of a key; only keys of the fixed shape, and never outside the root. */
  #path(key: string): string {
    if (!OBJECT_KEY.test(key)) throw new AppError('not_found', 'No such blob');
    const path = join(this.#root, key);
    if (!path.startsWith(this.#root + sep)) throw new AppError('not_found', 'No such blob');
    return path;
  }

  #sign(method: string, key: string, query: SignedQuery): Buffer {
    return createHmac('sha256', this.#secret)
      .update(JSON.stringify([method, key, query.exp ?? '', query.max ?? '', query.type ?? '', query.name ?? '']))
      .digest();
  }

  #url(method: 'PUT' | 'GET', key: string, query: SignedQuery): string {
    const params = new URLSearchParams(Object.entries(query).filter((entry): entry is [string, string] => entry[1] !== undefined));
    params.set('sig', this.#sign(method, key, query).toString('hex'));
    return `/v1/blobs/${key}?${params}`;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? false : Promise.reject(error)),
  );
}
