import { z } from 'zod';
import { cleanText, idSchema } from './schemas.ts';

/**
 * Uploads: files, images and voice notes stored by the server. The flow is
 * `upload:create` (a slot with a short-lived PUT URL) → the client PUTs the bytes → `upload:complete`
 * (the server checks size and type from the bytes themselves) → a message names the upload by id
 * (`attachments: [{ uploadId }]`) → members fetch it through `upload:url` (a short-lived signed URL).
 */

/** A MIME type as a client declares it (parameters such as `;codecs=opus` are allowed and ignored). */
export const mimeTypeSchema = z
  .string()
  .max(127)
  .regex(/^[A-Za-z0-9][\w.+-]*\/[\w.+-]+(\s*;\s*[\w.+-]+=[\w.+"-]+)*$/, 'a MIME type such as image/png');

/** The file's name as the client shows it: never used in a storage path (objects are named by upload id). */
export const uploadNameSchema = z.string().max(510).transform(cleanText).pipe(z.string().min(1, 'must not be empty').max(255));

export const createUploadSchema = z
  .object({
    name: uploadNameSchema,
    mimeType: mimeTypeSchema,
    /** Exact size of the file in bytes; the slot takes no more, and completing checks that all arrived. */
    size: z.number().int().min(1).max(2_147_483_647),
    /** The conversation the file is for: only messages there may reference it, and only its members download it. */
    conversationId: idSchema,
  })
  .strict();

export const uploadIdPayloadSchema = z.object({ uploadId: idSchema }).strict();

export const uploadStatusSchema = z.enum(['pending', 'ready']);

/** An upload as the server describes it. Dimensions for images, duration for audio, once ready. */
export const uploadSchema = z.object({
  id: z.string(),
  conversationId: z.string(),
  ownerId: z.string(),
  name: z.string(),
  /** Declared while pending; once ready, the type sniffed from the bytes. */
  mime: z.string(),
  size: z.number().int(),
  status: uploadStatusSchema,
  width: z.number().int().nullable(),
  height: z.number().int().nullable(),
  durationMs: z.number().int().nullable(),
  /** An image with a JPEG thumbnail (its URL comes with `upload:url`). */
  hasThumbnail: z.boolean(),
  createdAt: z.string(),
});

export type Upload = z.infer<typeof uploadSchema>;

/** The answer to `upload:create`: where to PUT the bytes, and until when. */
export interface UploadSlot {
  upload: Upload;
  /**
   * PUT the file's bytes here, with `Content-Type` set to the declared type. Absolute for S3; a path
   * on the API's own origin for the disk backend (resolve it against the URL the API was reached at).
   */
  putUrl: string;
  /** The most bytes the PUT may carry (the declared size). */
  maxBytes: number;
  expiresAt: string;
}

/** The answer to `upload:url`: short-lived signed URLs to fetch the file (and its thumbnail). */
export interface UploadUrls {
  upload: Upload;
  /** Like `putUrl`: absolute for S3, a path on the API's origin for the disk backend. */
  url: string;
  thumbnailUrl: string | null;
  expiresAt: string;
}
