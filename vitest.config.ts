import { defineConfig } from 'vitest/config';
import { findExecutable } from '@chat/testkit/executables';

/** The messaging suite: what runs a second time with every node behind PgBouncer. */
const MESSAGING_SUITE = ['apps/server/test/messaging.test.ts', 'apps/server/test/message-writer.test.ts', 'apps/server/test/database-outage.test.ts'];
const pgbouncer = findExecutable('pgbouncer');
if (!pgbouncer) console.warn('No pgbouncer binary (apt-get install -y pgbouncer): the messaging suite runs against PostgreSQL directly only.');

/**
 * Workspace packages export their TypeScript sources under this condition (and dist/ otherwise), so
 * tests run against the sources without a build; tsconfig.json's customConditions does the same for
 * tsc, and `--conditions=@chat/source` for processes the tests spawn through tsx.
 */
const SOURCE_CONDITION = '@chat/source';

export default defineConfig({
  resolve: { conditions: [SOURCE_CONDITION, 'module', 'browser', 'development|production'] },
  // No `module` condition on the Node side: Vitest hands these conditions to Node itself, and a
  // bundler-only ESM build behind `module` (the AWS SDK's imports files without extensions) fails there.
  ssr: { resolve: { conditions: [SOURCE_CONDITION, 'node', 'development|production'] } },
  // Where vitest itself loads global set-up files (apps/server/test/global-setup.ts imports @chat/testkit).
  environments: { __vitest__: { resolve: { conditions: [SOURCE_CONDITION, 'module', 'node', 'development|production'] } } },
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Server processes and sockets are real; two workers match the two cores CI has.
    maxWorkers: 2,
    projects: [
      // One database per project and run, created and migrated there and dropped at the end (see the file).
      { extends: true, test: { name: 'default', include: ['apps/*/test/**/*.test.ts', 'packages/*/test/**/*.test.ts'], globalSetup: ['apps/server/test/global-setup.ts'] } },
      // The same files again, every node reaching that database through PgBouncer 1.18 in
      // pool_mode = transaction (pgbouncer-setup.ts), as production does once replicas × pool size
      // nears max_connections.
      ...(pgbouncer ? [{ extends: true, test: { name: 'pgbouncer', include: MESSAGING_SUITE, globalSetup: ['apps/server/test/global-setup.ts', 'apps/server/test/pgbouncer-setup.ts'] } }] : []),
    ],
  },
});
