import type { TestProject } from 'vitest/node';
import { startPrivatePgBouncer } from '@chat/testkit/services';

/**
 * Used after global-setup.ts by the `pgbouncer` project (vitest.config.ts): a private PgBouncer 1.18 in
 * `pool_mode = transaction` in front of the project's database, and `databaseUrl` leading through it
 * (with `pgbouncer=true`), so every node the suite starts reaches PostgreSQL only through PgBouncer.
 * Its 4 server connections per database are fewer than one node's pool (DATABASE_POOL_SIZE 10), and
 * the suite runs two or more nodes: consecutive transactions of one client connection land on
 * different server connections, which is what breaks anything kept in a session.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const bouncer = await startPrivatePgBouncer({ target: project.getProvidedContext().databaseUrl, poolSize: 4 });
  project.provide('databaseUrl', bouncer.url);
  return () => bouncer.destroy();
}
