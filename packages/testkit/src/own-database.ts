import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { adminQuery, withDatabase } from '@chat/server/db/admin';
import { applyMigrations } from '@chat/server/db/migrations';

export interface OwnDatabase {
  url: string;
  /** One query on a short-lived connection. */
  query<T extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<T[]>;
  drop(): Promise<void>;
}

/**
 * A migrated database of the calling file's own, on this run's server. For tests whose nodes must
 * be the only ones working on the data: every node polls for due scheduled messages, so the nodes
 * of other files sharing the run's database would send some of them, and fan them out in their own
 * file's Redis scope, where this file's devices never hear them.
 */
export async function ownDatabase(label: string): Promise<OwnDatabase> {
  const admin = inject('adminDatabaseUrl');
  const name = `chat_${label}_${Date.now()}_${randomBytes(3).toString('hex')}`;
  await adminQuery(admin, `CREATE DATABASE "${name}"`);
  const url = withDatabase(admin, name);
  await applyMigrations({ kind: 'postgres', connectionString: url });
  return {
    url,
    query: async <T extends pg.QueryResultRow>(text: string, values: unknown[] = []) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        return (await client.query<T>(text, values)).rows;
      } finally {
        await client.end();
      }
    },
    drop: () => adminQuery(admin, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
  };
}
