import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { WASM_ENGINE_TIMEOUT_MS } from '@chat/testkit/timeouts';
import { applyMigrations, createMigration, MIGRATION_LOCK_KEY, migrationStatus } from '../src/db/migrations.ts';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const MIGRATIONS_DIR = join(REPO, 'prisma/migrations');
const LOCAL_MIGRATIONS = readdirSync(MIGRATIONS_DIR, { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name)
  .sort();
const ADMIN_URL = inject('adminDatabaseUrl') ?? process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const TABLES = ['users', 'conversations', 'conversation_members', 'messages', 'reactions', 'notifications', 'attachments', 'message_edits'];

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** An empty database of this test's own, dropped when the test finishes however it ends. */
async function freshDatabase(): Promise<string> {
  const name = `migtest_${Date.now()}_${randomBytes(4).toString('hex')}`;
  await withClient(ADMIN_URL, (c) => c.query(`CREATE DATABASE "${name}"`));
  onTestFinished(() => withClient(ADMIN_URL, (c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => {}));
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function tables(url: string): Promise<string[]> {
  const { rows } = await withClient(url, (c) => c.query<{ table_name: string }>(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`));
  return rows.map((r) => r.table_name);
}

async function recorded(url: string): Promise<Array<{ migration_name: string; checksum: string; finished: boolean }>> {
  const { rows } = await withClient(url, (c) => c.query(`SELECT migration_name, checksum, finished_at IS NOT NULL AS finished FROM _prisma_migrations ORDER BY migration_name`));
  return rows;
}

describe('migrations on PostgreSQL', () => {
  it('apply to an empty database, and a second run applies and changes nothing', async () => {
    const url = await freshDatabase();
    const target = { kind: 'postgres', connectionString: url } as const;
    expect(await migrationStatus(target)).toMatchObject({ applied: [], pending: LOCAL_MIGRATIONS });

    expect(await applyMigrations(target)).toEqual(LOCAL_MIGRATIONS);
    const tablesAfter = await tables(url);
    expect(tablesAfter).toEqual(expect.arrayContaining([...TABLES, '_prisma_migrations']));
    const rowsAfter = await recorded(url);
    expect(rowsAfter.map((r) => r.migration_name)).toEqual(LOCAL_MIGRATIONS);
    expect(rowsAfter.every((r) => r.finished)).toBe(true);

    expect(await applyMigrations(target)).toEqual([]);
    expect(await tables(url)).toEqual(tablesAfter);
    expect(await recorded(url)).toEqual(rowsAfter);
    expect(await migrationStatus(target)).toEqual({ applied: LOCAL_MIGRATIONS, pending: [], failed: [], edited: [], unknown: [] });
  });

  it('serializes migrators started together in one process', async () => {
    const url = await freshDatabase();
    const target = { kind: 'postgres', connectionString: url } as const;
    const results = await Promise.all([applyMigrations(target), applyMigrations(target)]);
    expect(results.map((r) => r.length).sort()).toEqual([0, LOCAL_MIGRATIONS.length]);
    expect((await recorded(url)).map((r) => r.migration_name)).toEqual(LOCAL_MIGRATIONS);
    expect(await tables(url)).toEqual(expect.arrayContaining(TABLES));
  });

  it('serializes migrators started together as separate processes (replicas booting at once)', async () => {
    const url = await freshDatabase();
    const run = () =>
      promisify(execFile)(process.execPath, ['--conditions=@chat/source', '--import', 'tsx', 'apps/server/src/db/migrate-cli.ts', 'deploy'], {
        cwd: REPO,
        env: { ...process.env, DATABASE_URL: url },
      });
    const outputs = (await Promise.all([run(), run()])).map((r) => r.stdout).sort();
    expect(outputs[0]).toMatch(/applied .*_init\n.*migration\(s\) applied/s);
    expect(outputs[1]).toBe('no pending migrations to apply\n');
    expect((await recorded(url)).map((r) => r.migration_name)).toEqual(LOCAL_MIGRATIONS);
    expect(await tables(url)).toEqual(expect.arrayContaining(TABLES));
  });

  it('waits for whoever holds the migration lock, and gives up after the lock timeout', async () => {
    const url = await freshDatabase();
    const target = { kind: 'postgres', connectionString: url } as const;
    await withClient(url, async (holder) => {
      await holder.query('SELECT pg_advisory_lock($1::bigint)', [MIGRATION_LOCK_KEY.toString()]);
      await expect(applyMigrations(target, { lockTimeoutMs: 300 })).rejects.toThrow(/timed out .* migration lock/);

      const waiting = applyMigrations(target);
      await new Promise((r) => setTimeout(r, 500));
      expect(await tables(url)).toEqual([]);
      await holder.query('SELECT pg_advisory_unlock($1::bigint)', [MIGRATION_LOCK_KEY.toString()]);
      expect(await waiting).toEqual(LOCAL_MIGRATIONS);
    });
  });

  it('enforce the direct-pair CHECK and the unique pair', async () => {
    const url = await freshDatabase();
    await applyMigrations({ kind: 'postgres', connectionString: url });
    await withClient(url, async (c) => {
      await c.query(`INSERT INTO users (id, display_name) VALUES ('a', 'A'), ('b', 'B'), ('B', 'Upper B')`);
      const insert = (kind: string, low: string | null, high: string | null) =>
        c.query(`INSERT INTO conversations (id, kind, direct_low_id, direct_high_id) VALUES (gen_random_uuid(), $1, $2, $3)`, [kind, low, high]);
      const rejected = async (promise: Promise<unknown>, code: string, constraint: string) => {
        await expect(promise).rejects.toMatchObject({ code, constraint });
      };
      const check = 'conversations_direct_pair_check';

      await rejected(insert('direct', 'b', 'a'), '23514', check);
      await rejected(insert('direct', 'a', 'a'), '23514', check);
      await rejected(insert('direct', null, null), '23514', check);
      await rejected(insert('direct', 'a', null), '23514', check);
      await rejected(insert('group', 'a', 'b'), '23514', check);

      await insert('direct', 'a', 'b');
      await rejected(insert('direct', 'a', 'b'), '23505', 'conversations_direct_low_id_direct_high_id_key');
      // Code-point order ('B' < 'a'), as the application sorts, whatever the database collation says.
      await insert('direct', 'B', 'a');
      await insert('group', null, null);
      await insert('group', null, null);
    });
  });
});

describe('migrations on PGlite', () => {
  it(
    'apply to a fresh in-memory database, once',
    async () => {
      const pglite = new PGlite();
      onTestFinished(() => pglite.close());
      const target = { kind: 'pglite', pglite } as const;
      expect(await applyMigrations(target)).toEqual(LOCAL_MIGRATIONS);
      const { rows } = await pglite.query<{ table_name: string }>(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`);
      expect(rows.map((r) => r.table_name)).toEqual(expect.arrayContaining(TABLES));
      expect(await applyMigrations(target)).toEqual([]);
      expect(await migrationStatus(target)).toMatchObject({ applied: LOCAL_MIGRATIONS, pending: [] });
    },
    WASM_ENGINE_TIMEOUT_MS,
  );
});

describe('createMigration', () => {
  it(
    'finds nothing to write: schema.prisma and the migrations agree, and the hand-written CHECK survives',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'migrations-'));
      onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
      cpSync(MIGRATIONS_DIR, dir, { recursive: true });
      expect(await createMigration('check', { migrationsDir: dir })).toBeNull();
      expect(readdirSync(dir).sort()).toEqual([...LOCAL_MIGRATIONS, 'migration_lock.toml'].sort());
    },
    WASM_ENGINE_TIMEOUT_MS,
  );

  it(
    'writes the whole schema as a first migration into an empty folder, with the lockfile',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'migrations-'));
      onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
      const file = await createMigration('init', { migrationsDir: dir, now: new Date('2030-01-02T03:04:05Z') });
      expect(file).toBe(join(dir, '20300102030405_init', 'migration.sql'));
      const sql = readFileSync(file!, 'utf8');
      expect(sql).toContain('CREATE TABLE "conversations"');
      expect(sql).not.toContain('CHECK');
      expect(existsSync(join(dir, 'migration_lock.toml'))).toBe(true);
      expect(readFileSync(join(dir, 'migration_lock.toml'), 'utf8')).toContain('provider = "postgresql"');
    },
    WASM_ENGINE_TIMEOUT_MS,
  );
});
