import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const bool = z.stringbool({ truthy: ['true', '1', 'yes'], falsy: ['false', '0', 'no', ''] });

/** The upload and storage variables of the node's environment schema (config.ts spreads them in). */
export const uploadEnvShape = {
  STORAGE: z.enum(['disk', 's3']).default('disk'),
  UPLOAD_DIR: z.string().min(1).optional(),
  UPLOAD_MAX_BYTES: int(1, 512 * 1024 * 1024).default(25 * 1024 * 1024),
  UPLOAD_MAX_IMAGE_PIXELS: int(1, 1_000_000_000).default(40_000_000),
  UPLOAD_URL_TTL_S: int(5, 7 * 24 * 3600).default(300),
  UPLOAD_GC_TTL_H: z.coerce
    .number()
    .min(0.0001)
    .max(24 * 365)
    .default(24),
  UPLOAD_SIGNING_SECRET: z.string().min(32, 'at least 32 characters').optional(),
  S3_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name')
    .optional(),
  S3_REGION: z.string().min(1).default('us-east-1'),
  S3_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  S3_FORCE_PATH_STYLE: bool.default(false),
};

type UploadEnv = z.infer<z.ZodObject<typeof uploadEnvShape>>;

export interface S3Config {
  bucket: string;
  region: string;
  /** An S3-compatible service's URL; unset for AWS itself. */
  endpoint: string | undefined;
  /** Unset: the AWS SDK's default credential chain (environment, profile, instance role). */
  credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
  forcePathStyle: boolean;
}

export interface UploadConfig {
  storage: { kind: 'disk'; dir: string } | ({ kind: 's3' } & S3Config);
  /** Largest file a slot takes. */
  maxBytes: number;
  /** Images with more pixels are refused before they are decoded (decompression bombs). */
  maxImagePixels: number;
  /** How long upload and download URLs stay valid. */
  urlTtlMs: number;
  /** Uploads no message references are deleted this long after they were created. */
  gcTtlMs: number;
  /** Signs the disk backend's URLs; every node serving the same UPLOAD_DIR needs the same one. */
  signingSecret: Buffer;
}

/** Checks that need several variables at once (config.ts's superRefine calls this). */
export function checkUploadEnv(env: UploadEnv, addIssue: (path: string, message: string) => void): void {
  if (env.STORAGE === 's3' && !env.S3_BUCKET) addIssue('S3_BUCKET', 'an S3 bucket name (required when STORAGE=s3)');
  if (Boolean(env.S3_ACCESS_KEY_ID) !== Boolean(env.S3_SECRET_ACCESS_KEY)) addIssue('S3_SECRET_ACCESS_KEY', 'set together with S3_ACCESS_KEY_ID, or neither');
}

/** @param jwtSecret the fallback key material for signing when UPLOAD_SIGNING_SECRET is unset. */
export function uploadConfig(env: UploadEnv, dataDir: string, jwtSecret: string): UploadConfig {
  return {
    storage:
      env.STORAGE === 's3'
        ? {
            kind: 's3',
            bucket: env.S3_BUCKET!,
            region: env.S3_REGION,
            endpoint: env.S3_ENDPOINT,
            credentials: env.S3_ACCESS_KEY_ID ? { accessKeyId: env.S3_ACCESS_KEY_ID, secretAccessKey: env.S3_SECRET_ACCESS_KEY! } : undefined,
            forcePathStyle: env.S3_FORCE_PATH_STYLE,
          }
        : { kind: 'disk', dir: env.UPLOAD_DIR ?? join(dataDir, 'uploads') },
    maxBytes: env.UPLOAD_MAX_BYTES,
    maxImagePixels: env.UPLOAD_MAX_IMAGE_PIXELS,
    urlTtlMs: env.UPLOAD_URL_TTL_S * 1000,
    gcTtlMs: Math.round(env.UPLOAD_GC_TTL_H * 3600 * 1000),
    // Derived, not the JWT secret itself: a leaked upload URL key must not mint tokens.
    signingSecret: createHmac('sha256', env.UPLOAD_SIGNING_SECRET ?? jwtSecret)
      .update('chat-uploads-v1')
      .digest(),
  };
}
