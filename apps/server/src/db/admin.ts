import pg from 'pg';

/**
 * Administrative SQL on a PostgreSQL server (CREATE/DROP DATABASE cannot run inside Prisma's
 * transactions): one short-lived connection per statement. Used by the test set-up, the benchmarks,
 * the chaos harness and the local cluster to make throwaway databases.
 */
export async function adminQuery(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** The same server URL with another database name. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}
