import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { UploadService } from '../domain/uploads.ts';
import { DiskStorage } from '../storage/disk.ts';
import { S3Storage } from '../storage/s3.ts';
import { blobRoutes } from '../transport/http/blobs.ts';

declare module 'fastify' {
  interface FastifyInstance {
    uploads: UploadService;
  }
}

/** The longest pause between two garbage sweeps; shorter when UPLOAD_GC_TTL_H is short. */
const MAX_SWEEP_INTERVAL_MS = 10 * 60_000;

/**
 * Uploads: the configured storage backend (STORAGE=disk, the default, or s3), the upload service,
 * the disk backend's blob routes, and the periodic sweep of unreferenced uploads. Every node sweeps;
 * the sweep itself is safe to run concurrently (see UploadService.sweep).
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const settings = config.uploads;
    const storage = settings.storage.kind === 's3' ? new S3Storage(settings.storage) : new DiskStorage(settings.storage.dir, settings.signingSecret);
    const uploads = new UploadService(app.db, storage, settings, (outcome, count) => app.metrics.uploads.inc({ outcome }, count));
    app.decorate('uploads', uploads);
    if (storage instanceof DiskStorage) await app.register(blobRoutes, { storage });

    const every = Math.max(1000, Math.min(MAX_SWEEP_INTERVAL_MS, settings.gcTtlMs / 4));
    let sweeping: Promise<void> | null = null;
    const sweep = () => {
      sweeping ??= uploads
        .sweep()
        .then(
          (deleted) => {
            if (deleted > 0) app.log.info({ deleted }, 'uploads: swept unreferenced uploads');
          },
          (error: unknown) => app.log.warn({ err: error }, 'uploads: sweep failed; the next one retries'),
        )
        .finally(() => {
          sweeping = null;
        });
    };
    // Jittered, so nodes started together do not sweep in step.
    const timer = setInterval(sweep, every * (0.75 + Math.random() / 2));
    timer.unref();
    app.addHook('preClose', async () => {
      clearInterval(timer);
      await sweeping;
      if (storage instanceof S3Storage) storage.close();
    });
  },
  { name: 'uploads', dependencies: ['database', 'metrics'] },
);
