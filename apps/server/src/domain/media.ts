import { fileTypeFromBuffer } from 'file-type';
import { parseBuffer } from 'music-metadata';
import sharp from 'sharp';
import { AppError } from '../errors.ts';

/** What the bytes of an upload turned out to be. */
export interface Inspected {
  /** The type to store and serve: sniffed from the bytes (the declared one only where they agree). */
  mime: string;
  width: number | null;
  height: number | null;
  durationMs: number | null;
  /** A JPEG of at most {@link THUMBNAIL_SIZE} px a side, for images. */
  thumbnail: Buffer | null;
}

export const THUMBNAIL_SIZE = 320;

/** Types without a signature: taken as declared when the bytes match no known format. */
const UNSNIFFABLE = new Set(['text/plain', 'text/csv', 'text/markdown', 'application/json', 'application/octet-stream']);

/** Images sharp decodes for a thumbnail; other image types are stored as plain files. */
const THUMBNAILED = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/tiff']);

/** Names of one type that sniffing and browsers spell differently (MediaRecorder's audio/webm sniffs as video/webm). */
const SAME_TYPE: Record<string, string> = {
  'image/jpg': 'image/jpeg',
  'audio/webm': 'video/webm',
  'audio/opus': 'audio/ogg',
  'application/ogg': 'audio/ogg',
  'audio/mp3': 'audio/mpeg',
  'audio/x-wav': 'audio/wav',
  'audio/wave': 'audio/wav',
  'audio/x-m4a': 'audio/mp4',
};

/** The type without parameters, lower case. */
export function baseType(mime: string): string {
  return mime.split(';')[0]!.trim().toLowerCase();
}

const canonical = (mime: string) => SAME_TYPE[mime] ?? mime;

/**
 * Sniffs the bytes and checks them against the declared type: a file that is another format than
 * it says (`upload_type_mismatch`), an image with more than `maxImagePixels` pixels
 * (`upload_too_large`, read from the header before anything is decoded, so a decompression bomb
 * costs nothing), or an image or audio file that does not parse (`upload_type_mismatch`) is refused.
 * Images get their dimensions and a thumbnail; audio its duration where the container states it.
 */
export async function inspect(bytes: Buffer, declared: string, { maxImagePixels }: { maxImagePixels: number }): Promise<Inspected> {
  const claimed = baseType(declared);
  const sniffed = (await fileTypeFromBuffer(bytes))?.mime;
  const found = sniffed === undefined ? undefined : baseType(sniffed);
  let mime: string;
  if (found === undefined) {
    if (!UNSNIFFABLE.has(claimed)) throw new AppError('upload_type_mismatch', `The bytes are not ${claimed}`);
    mime = claimed;
  } else if (claimed === 'application/octet-stream') {
    mime = found;
  } else if (canonical(claimed) === canonical(found)) {
    // The declared spelling when it is the more precise one (a voice note's audio/webm).
    mime = claimed.startsWith('audio/') ? claimed : found;
  } else {
    throw new AppError('upload_type_mismatch', `The bytes are ${found}, not ${claimed}`);
  }
  if (THUMBNAILED.has(mime)) return { mime, ...(await inspectImage(bytes, maxImagePixels)), durationMs: null };
  if (mime.startsWith('audio/') || mime === 'video/webm') return { mime, width: null, height: null, durationMs: await audioDuration(bytes, mime), thumbnail: null };
  return { mime, width: null, height: null, durationMs: null, thumbnail: null };
}

async function inspectImage(bytes: Buffer, maxImagePixels: number): Promise<{ width: number; height: number; thumbnail: Buffer }> {
  // Only the header is read here; nothing is decoded yet.
  const meta = await sharp(bytes, { limitInputPixels: false })
    .metadata()
    .catch((error: unknown) => {
      throw new AppError('upload_type_mismatch', 'The image cannot be read', { cause: error });
    });
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  if (!width || !height) throw new AppError('upload_type_mismatch', 'The image has no dimensions');
  if (width * height > maxImagePixels) throw new AppError('upload_too_large', `The image has ${width}×${height} pixels; at most ${maxImagePixels} are allowed`);
  const thumbnail = await sharp(bytes, { limitInputPixels: maxImagePixels, failOn: 'error' })
    .rotate()
    .resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: 'inside', withoutEnlargement: true })
    .flatten({ background: '#ffffff' })
    .jpeg({ quality: 70 })
    .toBuffer()
    .catch((error: unknown) => {
      throw new AppError('upload_type_mismatch', 'The image data is damaged or incomplete', { cause: error });
    });
  return { width, height, thumbnail };
}

/** Duration in ms where the container gives it (a streamed WebM from MediaRecorder may not: then null). */
async function audioDuration(bytes: Buffer, mime: string): Promise<number | null> {
  try {
    const { format } = await parseBuffer(bytes, { mimeType: mime, size: bytes.length }, { duration: true, skipCovers: true });
    return format.duration !== undefined && Number.isFinite(format.duration) ? Math.round(format.duration * 1000) : null;
  } catch (error) {
    throw new AppError('upload_type_mismatch', 'The audio cannot be read', { cause: error });
  }
}
