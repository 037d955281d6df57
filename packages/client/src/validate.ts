/**
 * Opt-in local validation, the protocol's own zod schema for `message:send`:
 *
 *   import { validateSend } from '@chat/client/validate';
 *   const client = new ChatClient({ url, token, validate: validateSend });
 *
 * An entry point of its own because it is the SDK's only use of zod: an app that does not import it
 * does not bundle zod (the server checks every message anyway).
 */
import { sendMessageSchema, type ClientPayload } from '@chat/protocol';
import type { SendValidator } from './options.ts';

/** Null when the message matches the schema, else every issue as `path: message`, joined by `; `. */
export const validateSend: SendValidator = (payload: ClientPayload<'message:send'>) => {
  const parsed = sendMessageSchema.safeParse(payload);
  if (parsed.success) return null;
  return parsed.error.issues.map((issue) => `${issue.path.join('.') || 'payload'}: ${issue.message}`).join('; ');
};
