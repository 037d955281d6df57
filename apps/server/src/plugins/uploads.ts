import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { UploadService } from '../domain/uploads.ts';
import { DiskStorage } from '../storage/disk.ts';
import { S3Storage } from '../storage/s3.ts';
import { blobRoutes } from '../transport/http/blobs.ts';
import { startPeriodicSweep } from './periodic-sweep.ts';

declare module 'fastify' {
  interface FastifyInstance {
    uploads: UploadService;
  }
}

/** The longest pause between two garbage sweeps; shorter when UPLOAD_GC_TTL_H is short. */
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

    const sweeper = startPeriodicSweep(app.log, {
      ttlMs: settings.gcTtlMs,
      sweep: () => uploads.sweep(),
      swept: 'uploads: swept unreferenced uploads',
      failed: 'uploads: sweep failed; the next one retries',
    });
    app.addHook('preClose', async () => {
      await sweeper.stop();
      if (storage instanceof S3Storage) storage.close();
    });
  },
  { name: 'uploads', dependencies: ['database', 'metrics'] },
);
