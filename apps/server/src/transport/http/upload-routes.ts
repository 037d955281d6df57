import { createUploadSchema, idSchema } from '@chat/protocol';
import { z } from 'zod';
import type { RestRoute } from './rest.ts';

const uploadParams = z.object({ uploadId: idSchema });

/** The REST side of the upload events (rest.ts appends these to its table). */
export const uploadRoutes: readonly RestRoute[] = [
  {
    method: 'POST',
    url: '/v1/uploads',
    event: 'upload:create',
    summary: 'A slot for one file in a conversation of mine: PUT the bytes to putUrl, then complete it',
    body: createUploadSchema,
    status: () => 201,
  },
  {
    method: 'POST',
    url: '/v1/uploads/:uploadId/complete',
    event: 'upload:complete',
    summary: 'Verify the uploaded bytes (size, and type sniffed from the content) and make the upload attachable',
    params: uploadParams,
  },
  {
    method: 'GET',
    url: '/v1/uploads/:uploadId/url',
    event: 'upload:url',
    summary: 'Short-lived signed download URLs (file and thumbnail) of an upload in a conversation of mine',
    params: uploadParams,
  },
];
