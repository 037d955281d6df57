import type { Attachment, Upload, UploadSlot, UploadUrls } from '@chat/protocol';
import { v7 as uuidv7 } from 'uuid';
import type { Db } from '../db/client.ts';
import { AppError } from '../errors.ts';
import type { UploadConfig } from '../storage/config.ts';
import { objectKeys, type ObjectStorage } from '../storage/storage.ts';
import { requireMember } from './access.ts';
import { baseType, inspect } from './media.ts';
import { iso } from './wire.ts';

/** An attachment as the message writer stores it: a link, or an upload (with an empty url). */
export interface StoredAttachment {
  position: number;
  url: string;
  mime: string;
  size: number;
  name: string;
  uploadId: string | null;
}

interface UploadRow {
  id: string;
  ownerId: string;
  conversationId: string;
  name: string;
  mime: string;
  size: number;
  status: 'pending' | 'ready';
  width: number | null;
  height: number | null;
  durationMs: number | null;
  hasThumbnail: boolean;
  createdAt: Date;
}

/**
 * An upload must be attached this long before the sweep could take it (at most half the TTL), so a
 * message being written never races the sweep for its upload (the foreign key would fail the
 * message's statement).
 */
const ATTACH_MARGIN_MS = 5 * 60_000;

/** Uploads the sweep deletes per statement; it repeats until none are left. */
const SWEEP_BATCH = 200;

/**
 * Files, images and voice notes. A slot belongs to one user and one conversation; its bytes are
 * verified once (`complete`), after which the upload can be attached by its owner in that
 * conversation and downloaded by that conversation's current members, through short-lived signed
 * URLs. A stranger, or anyone asking about someone else's unfinished slot, gets `not_found`, as for
 * an id that does not exist.
 */
export class UploadService {
  readonly #db: Db;
  readonly #storage: ObjectStorage;
  readonly #config: UploadConfig;
  readonly #onOutcome: (outcome: string, count: number) => void;

  /** @param onOutcome told each verified (`ready`) or refused (its code) upload, and how many a sweep deleted (`swept`): a metric. */
  constructor(db: Db, storage: ObjectStorage, config: UploadConfig, onOutcome: (outcome: string, count: number) => void = () => {}) {
    this.#db = db;
    this.#storage = storage;
    this.#config = config;
    this.#onOutcome = onOutcome;
  }

  get storage(): ObjectStorage {
    return this.#storage;
  }

  /** A slot for one file of `size` bytes: members of the conversation only; at most UPLOAD_MAX_BYTES. */
  async create(actorId: string, input: { name: string; mimeType: string; size: number; conversationId: string }): Promise<UploadSlot> {
    await requireMember(this.#db, input.conversationId, actorId);
    if (input.size > this.#config.maxBytes) throw new AppError('upload_too_large', `Uploads are at most ${this.#config.maxBytes} bytes`);
    const row = await this.#db.upload.create({
      data: { id: uuidv7(), ownerId: actorId, conversationId: input.conversationId, name: input.name, mime: baseType(input.mimeType), size: input.size },
    });
    const expiresAt = new Date(Date.now() + this.#config.urlTtlMs);
    const putUrl = await this.#storage.signPut(objectKeys(row.id).incoming, { mimeType: input.mimeType, maxBytes: input.size, expiresAt });
    return { upload: toWireUpload(row), putUrl, maxBytes: input.size, expiresAt: iso(expiresAt) };
  }

  /**
   * Verifies the bytes the owner PUT: all of them (`upload_incomplete` for fewer, which may be PUT
   * again), no more (`upload_too_large`), and of the declared type by their content
   * (`upload_type_mismatch`). Refused bytes are deleted. Once verified, the bytes move where the
   * slot's URL cannot reach, and the upload is ready; completing it again is `upload_slot_used`.
   */
  async complete(actorId: string, uploadId: string): Promise<{ upload: Upload }> {
    const row = await this.#db.upload.findFirst({ where: { id: uploadId, ownerId: actorId } });
    if (!row) throw new AppError('not_found', 'Upload not found');
    if (row.status === 'ready') throw new AppError('upload_slot_used', 'This upload has been completed already');
    const keys = objectKeys(row.id);
    const size = await this.#storage.size(keys.incoming);
    if (size === null && (await this.#storage.size(keys.object)) !== null) throw new AppError('upload_slot_used', 'This upload has been completed already');
    if (size === null) throw new AppError('upload_incomplete', 'No bytes have arrived for this upload; PUT the file to the slot URL first');
    const refuse = async (error: AppError): Promise<never> => {
      this.#onOutcome(error.code, 1);
      await this.#storage.delete([keys.incoming]);
      throw error;
    };
    if (size < row.size) return refuse(new AppError('upload_incomplete', `Only ${size} of ${row.size} bytes arrived; PUT the whole file again`));
    if (size > row.size) return refuse(new AppError('upload_too_large', `${size} bytes arrived; the slot was for ${row.size}`));
    const bytes = await this.#storage.read(keys.incoming);
    if (bytes === null) throw new AppError('upload_slot_used', 'This upload has been completed already');
    if (bytes.length !== row.size) return refuse(new AppError('upload_incomplete', 'The bytes changed while being checked; PUT the file again'));
    const media = await inspect(bytes, row.mime, { maxImagePixels: this.#config.maxImagePixels }).catch((error: unknown) => (error instanceof AppError ? refuse(error) : Promise.reject(error)));
    if (media.thumbnail) await this.#storage.write(keys.thumbnail, media.thumbnail, 'image/jpeg');
    try {
      await this.#storage.promote(keys.incoming, keys.object);
    } catch (error) {
      // A concurrent complete of the same slot (on any node) moved the bytes first.
      if ((await this.#storage.size(keys.object)) !== null) throw new AppError('upload_slot_used', 'This upload has been completed already', { cause: error });
      throw error;
    }
    const { count } = await this.#db.upload.updateMany({
      where: { id: row.id, status: 'pending' },
      data: { status: 'ready', mime: media.mime, width: media.width, height: media.height, durationMs: media.durationMs, hasThumbnail: media.thumbnail !== null, completedAt: new Date() },
    });
    if (count === 0) throw new AppError('upload_slot_used', 'This upload has been completed already');
    this.#onOutcome('ready', 1);
    return { upload: toWireUpload((await this.#db.upload.findUniqueOrThrow({ where: { id: row.id } })) as UploadRow) };
  }

  /**
   * Download URLs valid for UPLOAD_URL_TTL_S: for current members of the upload's conversation once
   * a message there attaches it, and for its owner from completion on.
   */
  async urls(actorId: string, uploadId: string): Promise<UploadUrls> {
    const row = await this.#db.upload.findFirst({ where: { id: uploadId, status: 'ready' } });
    const visible =
      row !== null &&
      (await this.#db.conversationMember.count({ where: { conversationId: row.conversationId, userId: actorId, leftAt: null } })) > 0 &&
      (row.ownerId === actorId || (await this.#db.attachment.count({ where: { uploadId, message: { conversationId: row.conversationId, deletedAt: null } } })) > 0);
    if (!row || !visible) throw new AppError('not_found', 'Upload not found');
    const keys = objectKeys(row.id);
    const expiresAt = new Date(Date.now() + this.#config.urlTtlMs);
    const url = await this.#storage.signGet(keys.object, { mimeType: row.mime, fileName: row.name, expiresAt });
    const thumbnailUrl = row.hasThumbnail ? await this.#storage.signGet(keys.thumbnail, { mimeType: 'image/jpeg', fileName: `${row.name}.jpg`, expiresAt }) : null;
    return { upload: toWireUpload(row as UploadRow), url, thumbnailUrl, expiresAt: iso(expiresAt) };
  }

  /**
   * Turns a message's attachments into what is stored: links as they are, upload ids into the
   * verified upload's name, type and size. Only the sender's own completed uploads of the same
   * conversation qualify; anything else is `not_found` (`upload_incomplete` for the sender's own
   * unfinished one). An upload older than UPLOAD_GC_TTL_H (less a margin) cannot be attached any more.
   */
  async resolveAttachments(senderId: string, conversationId: string, attachments: readonly Attachment[]): Promise<StoredAttachment[]> {
    const ids = attachments.flatMap((attachment) => ('uploadId' in attachment ? [attachment.uploadId] : []));
    if (new Set(ids).size !== ids.length) throw new AppError('validation', 'attachments: an upload is attached once per message');
    const rows =
      ids.length === 0
        ? []
        : await this.#db.upload.findMany({
            where: { id: { in: ids }, ownerId: senderId, conversationId, createdAt: { gt: new Date(Date.now() - this.#config.gcTtlMs + Math.min(ATTACH_MARGIN_MS, this.#config.gcTtlMs / 2)) } },
          });
    const byId = new Map(rows.map((row) => [row.id, row]));
    return attachments.map((attachment, position) => {
      if (!('uploadId' in attachment)) return { position, ...attachment, uploadId: null };
      const row = byId.get(attachment.uploadId);
      if (!row) throw new AppError('not_found', `Upload ${attachment.uploadId} not found`);
      if (row.status !== 'ready') throw new AppError('upload_incomplete', `Upload ${row.id} has not been completed`);
      return { position, url: '', mime: row.mime, size: row.size, name: row.name, uploadId: row.id };
    });
  }

  /**
   * Deletes uploads created more than UPLOAD_GC_TTL_H ago that no message attaches (never
   * completed, never sent, or their messages deleted), with their bytes. Safe on every node at once:
   * each batch locks its rows with SKIP LOCKED, so nodes take different rows, and deleting objects
   * is idempotent. The rows go only after their objects, so a crash leaves rows for the next sweep,
   * never orphaned bytes. Returns how many were deleted.
   */
  async sweep(now = new Date()): Promise<number> {
    const cutoff = new Date(now.getTime() - this.#config.gcTtlMs);
    let total = 0;
    for (;;) {
      const deleted = await this.#db.$transaction(async (tx) => {
        const rows = await tx.$queryRaw<Array<{ id: string }>>`
          SELECT u.id FROM uploads u
           WHERE u.created_at < ${cutoff} AND NOT EXISTS (SELECT 1 FROM attachments a WHERE a.upload_id = u.id)
           ORDER BY u.created_at LIMIT ${SWEEP_BATCH}
           FOR UPDATE OF u SKIP LOCKED`;
        if (rows.length === 0) return 0;
        const ids = rows.map((row) => row.id);
        await this.#storage.delete(ids.flatMap((id) => Object.values(objectKeys(id))));
        await tx.upload.deleteMany({ where: { id: { in: ids } } });
        return ids.length;
      });
      total += deleted;
      if (deleted > 0) this.#onOutcome('swept', deleted);
      if (deleted < SWEEP_BATCH) return total;
    }
  }
}

export function toWireUpload(row: UploadRow): Upload {
  return {
    id: row.id,
    conversationId: row.conversationId,
    ownerId: row.ownerId,
    name: row.name,
    mime: row.mime,
    size: row.size,
    status: row.status,
    width: row.width,
    height: row.height,
    durationMs: row.durationMs,
    hasThumbnail: row.hasThumbnail,
    createdAt: iso(row.createdAt),
  };
}
