import { createMigratedDatabase, type ThrowawayDatabase } from '@chat/testkit/throwaway-database';

/**
 * A migrated database of the benchmark's own on the server DATABASE_URL points at (default: the local
 * one), so a benchmark never touches anybody's data. Drop it in a `finally`.
 */
export function throwawayDatabase(prefix: string): Promise<ThrowawayDatabase> {
  return createMigratedDatabase(process.env['DATABASE_URL'] ?? 'postgresql://postgres@127.0.0.1:5432/postgres', prefix);
}
