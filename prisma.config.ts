import { fileURLToPath } from 'node:url';
import { defineConfig } from 'prisma/config';

// `prisma generate` never runs the native schema engine, but Prisma 7's CLI insists on a path to one
// and otherwise tries to download it from a CDN (unreachable offline). Any existing file satisfies the
// check; this file is one. Migrations do not use the CLI here: `npm run db:migrate` drives Prisma's
// WebAssembly schema engine (apps/server/src/db/migrations.ts). Where the native engine can be
// downloaded, unset this and `prisma migrate deploy` reads the same prisma/migrations folder.
process.env.PRISMA_SCHEMA_ENGINE_BINARY ??= fileURLToPath(import.meta.url);

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  // What `prisma migrate deploy` would use: PostgreSQL itself, as for npm run db:migrate
  // (migrationDatabaseUrl in apps/server/src/config.ts), never PgBouncer.
  datasource: { url: process.env.DATABASE_DIRECT_URL || process.env.DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/postgres' },
});
