import { randomBytes } from 'node:crypto';
import { adminQuery, withDatabase } from '../src/db/admin.ts';
import { applyMigrations } from '../src/db/migrations.ts';

/**
 * A migrated database of the benchmark's own on the server DATABASE_URL points at (default: the local
 * one), so a benchmark never touches anybody's data. Drop it in a `finally`.
 */
export async function throwawayDatabase(prefix: string): Promise<{ url: string; drop(): Promise<void> }> {
  const adminUrl = process.env['DATABASE_URL'] ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
  const name = `${prefix}_${Date.now()}_${randomBytes(2).toString('hex')}`;
  const admin = (sql: string) => adminQuery(adminUrl, sql);
  await admin(`CREATE DATABASE "${name}"`);
  const url = withDatabase(adminUrl, name);
  const drop = () => admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  try {
    await applyMigrations({ kind: 'postgres', connectionString: url });
  } catch (error) {
    await drop();
    throw error;
  }
  return { url, drop };
}
