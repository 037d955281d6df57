import pg from 'pg';
import { inject } from 'vitest';
import { createMigratedDatabase } from './throwaway-database.ts';

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
  const { url, drop } = await createMigratedDatabase(inject('adminDatabaseUrl'), `chat_${label}`);
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
    drop,
  };
}
