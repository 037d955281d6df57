import { randomBytes } from 'node:crypto';
import { adminQuery, withDatabase } from '@chat/server/db/admin';
import { applyMigrations } from '@chat/server/db/migrations';

export interface ThrowawayDatabase {
  name: string;
  url: string;
  /** Drops it, closing whatever connections are still open. */
  drop(): Promise<void>;
}

/** A new database on the server of `adminUrl`, named `<prefix>_<time>_<random>`, with every migration applied (dropped again if they fail). */
export async function createMigratedDatabase(adminUrl: string, prefix: string): Promise<ThrowawayDatabase> {
  const name = `${prefix}_${Date.now()}_${randomBytes(3).toString('hex')}`;
  await adminQuery(adminUrl, `CREATE DATABASE "${name}"`);
  const url = withDatabase(adminUrl, name);
  const drop = () => adminQuery(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  try {
    await applyMigrations({ kind: 'postgres', connectionString: url });
  } catch (error) {
    await drop();
    throw error;
  }
  return { name, url, drop };
}
