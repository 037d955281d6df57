import type { z } from 'zod';
import { AppError, describeZodError } from '../../errors.ts';

/** Validates a request part with its zod schema; a mismatch is a `validation` error naming the fields. */
export function parseBody<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new AppError('validation', describeZodError(parsed.error));
  return parsed.data;
}
