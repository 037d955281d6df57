import type { Operations } from './operations.ts';

/** The upload events' entries of the operations table (spread into it), each a thin call into UploadService. */
export const uploadOperations: Pick<Operations, 'upload:create' | 'upload:complete' | 'upload:url'> = {
  'upload:create': ({ app, principal }, input) => app.uploads.create(principal.userId, input),
  'upload:complete': ({ app, principal }, { uploadId }) => app.uploads.complete(principal.userId, uploadId),
  'upload:url': ({ app, principal }, { uploadId }) => app.uploads.urls(principal.userId, uploadId),
};
