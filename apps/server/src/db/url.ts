/**
 * A PostgreSQL connection string as this project reads it. `?pgbouncer=true` (Prisma's convention)
 * says the URL leads to PgBouncer in `pool_mode = transaction`, where consecutive statements of one
 * client connection may run on different server connections: nothing may outlive a transaction on
 * the server (named prepared statements, session settings, session advisory locks).
 */
export interface DatabaseUrl {
  /** The connection string without the `pgbouncer` parameter, as `pg` receives it. */
  url: string;
  /** True when the URL carries `pgbouncer=true`. */
  pgbouncer: boolean;
}

/** Thrown for a `pgbouncer` parameter other than `true` or `false`. */
export class DatabaseUrlError extends Error {
  override name = 'DatabaseUrlError';
}

/**
 * Splits off the `pgbouncer` parameter. `pg` would ignore it (it reads only the parameters it knows),
 * but a URL is also logged and compared, so what reaches `pg` is exactly what PostgreSQL or PgBouncer
 * understands. Every other parameter is kept as written.
 */
export function parseDatabaseUrl(connectionString: string): DatabaseUrl {
  let parsed: URL;
  try {
    parsed = new URL(connectionString);
  } catch {
    throw new DatabaseUrlError('a postgresql:// connection string');
  }
  const values = parsed.searchParams.getAll('pgbouncer');
  if (values.length === 0) return { url: connectionString, pgbouncer: false };
  if (values.length > 1 || (values[0] !== 'true' && values[0] !== 'false')) {
    throw new DatabaseUrlError('pgbouncer=true or pgbouncer=false in the query string');
  }
  parsed.searchParams.delete('pgbouncer');
  return { url: parsed.toString(), pgbouncer: values[0] === 'true' };
}
