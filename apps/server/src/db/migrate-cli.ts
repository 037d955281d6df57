// Offline replacement for `prisma migrate deploy | dev --create-only | status`, which need Prisma's
// native schema engine (downloaded at start-up, impossible here). Same folder, same _prisma_migrations.
//
//   deploy          apply pending migrations to DATABASE_DIRECT_URL, else DATABASE_URL (safe to run from
//                   several replicas at once; refused through PgBouncer, see migrations.ts)
//   create <name>   write prisma/migrations/<ts>_<name>/migration.sql from schema.prisma, if it changed
//                   (needs no database: the existing migrations are replayed on an in-memory PGlite)
//   status          list applied and pending migrations of the same database; exits 1 unless up to date,
//                   like Prisma
import { relative } from 'node:path';
import { migrationDatabaseUrl } from '../config.ts';
import { applyMigrations, createMigration, migrationStatus } from './migrations.ts';

const USAGE = 'usage: migrate-cli.ts deploy | create <name> | status';

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  switch (command) {
    case 'deploy': {
      const connectionString = migrationDatabaseUrl();
      const applied = await applyMigrations({ kind: 'postgres', connectionString });
      for (const name of applied) console.log(`applied ${name}`);
      console.log(applied.length === 0 ? 'no pending migrations to apply' : `${applied.length} migration(s) applied`);
      return 0;
    }
    case 'create': {
      const name = args[0];
      if (!name || args.length > 1) throw new Error(`create takes exactly one migration name; ${USAGE}`);
      const file = await createMigration(name);
      console.log(file ? `created ${relative(process.cwd(), file)}` : 'schema unchanged since the last migration; nothing created');
      return 0;
    }
    case 'status': {
      const status = await migrationStatus({ kind: 'postgres', connectionString: migrationDatabaseUrl() });
      for (const name of status.applied) console.log(`applied  ${name}`);
      for (const name of status.pending) console.log(`pending  ${name}`);
      for (const name of status.failed) console.log(`FAILED   ${name}`);
      for (const name of status.edited) console.log(`EDITED   ${name} (changed after it was applied)`);
      for (const name of status.unknown) console.log(`UNKNOWN  ${name} (in the database, not in the folder)`);
      const problems = status.pending.length + status.failed.length + status.edited.length + status.unknown.length;
      console.log(
        problems === 0
          ? `database is up to date (${status.applied.length} applied)`
          : `${status.applied.length} applied, ${status.pending.length} pending, ${status.failed.length} failed, ${status.edited.length} edited, ${status.unknown.length} unknown`,
      );
      return problems === 0 ? 0 : 1;
    }
    default:
      throw new Error(command ? `unknown command ${JSON.stringify(command)}; ${USAGE}` : USAGE);
  }
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (error: unknown) => {
    // One line: the reason, never a stack; the engine's message may span lines (e.g. a SQL error).
    const reason = error instanceof Error ? error.message : String(error);
    console.error(`migrate ${process.argv[2] ?? ''} failed: ${reason.replace(/\s*\n\s*/g, ' ')}`);
    process.exitCode = 1;
  },
);
