// PgBouncer 1.18 in pool_mode = transaction with as few server connections as possible: what breaks
// there and must not. (The messaging suite also runs whole through PgBouncer: the `pgbouncer` project
// in vitest.config.ts.)
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { ClientEventResults } from '@chat/protocol';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { findPgBouncer, startPrivatePgBouncer, type PrivatePgBouncer } from '@chat/testkit/services';
import { adminQuery, withDatabase } from '../src/db/admin.ts';
import { migrationStatus } from '../src/db/migrations.ts';
import { parseDatabaseUrl } from '../src/db/url.ts';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { connectDevice, uniqueUser, type Device } from '@chat/testkit/users';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const PGBOUNCER = findPgBouncer();
const NO_PGBOUNCER = ' (skipped: no pgbouncer binary on PATH or in /usr/sbin; `apt-get install -y pgbouncer`)';

describe.skipIf(!PGBOUNCER)(`behind PgBouncer with one server connection${PGBOUNCER ? '' : NO_PGBOUNCER}`, () => {
  let bouncer: PrivatePgBouncer;
  let nodes: TestNode[] = [];
  const devices: Device[] = [];

  beforeAll(async () => {
    // One server connection for the two nodes' 20 pooled ones: every statement of a node's connection
    // may run on a server connection another of its connections used before, and never stays on one.
    bouncer = await startPrivatePgBouncer({ target: inject('databaseUrl'), poolSize: 1 });
    nodes = await Promise.all(['pgb-1', 'pgb-2'].map((id) => startNode({ NODE_ID: id, DATABASE_URL: bouncer.url, DATABASE_POOL_SIZE: '10' })));
  });
  afterAll(async () => {
    for (const device of devices) device.close();
    await Promise.all(nodes.map((node) => node.close()));
    await bouncer?.destroy();
  });

  it('runs the hot statements unnamed: 40 users connecting at once on two nodes, then sending and reading, all succeed', async () => {
    // Each connect upserts its user with a hot statement, 40 at once over up to 20 pooled connections.
    // Named, the second pooled connection to prepare it would find the name already on the one server
    // connection ("prepared statement … already exists"), and a connection that prepared it earlier
    // would execute it where it was never prepared ("… does not exist").
    const users = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const device = await connectDevice(nodes[i % 2]!.url, uniqueUser(`pgb${i}`));
        devices.push(device);
        return device;
      }),
    );
    const pairs = Array.from({ length: 20 }, (_, i) => [users[2 * i]!, users[2 * i + 1]!] as const);
    // One after another: twenty transactions at once would queue for the one server connection, and
    // on a loaded machine some would wait past Prisma's 2 s to begin (the next test's subject).
    const conversations: Array<ClientEventResults['conversation:open-direct']> = [];
    for (const [a, b] of pairs) conversations.push(await a.ok('conversation:open-direct', { userId: b.userId }));
    // The message batch and the receipt batch (the other two hot statements), concurrently on both nodes.
    const sends = await Promise.all(
      pairs.flatMap(([a, b], i) =>
        [a, b, a, b, a].map((sender, n) =>
          sender.ok('message:send', { conversationId: conversations[i]!.conversation.id, clientMsgId: `pgb-${i}-${n}-${randomBytes(3).toString('hex')}`, body: `m${n}` }),
        ),
      ),
    );
    expect(sends).toHaveLength(100);
    await Promise.all(pairs.map(([, b], i) => b.ok('receipt:mark', { conversationId: conversations[i]!.conversation.id, delivered: 5, read: 5 })));
    for (const [i, { conversation }] of conversations.entries()) {
      const history = await pairs[i]![0].ok('history:fetch', { conversationId: conversation.id });
      expect(history.messages.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
      const seen = await pairs[i]![0].ok('conversation:get', { conversationId: conversation.id });
      expect(seen.conversation.members.find((m) => m.userId === pairs[i]![1].userId)).toMatchObject({ lastDeliveredSeq: 5, lastReadSeq: 5 });
    }
  });

  it('answers unavailable, not internal, while its one server connection is taken, and serves again once it is free', async () => {
    const alice = await connectDevice(nodes[0]!.url, uniqueUser('busy-a'));
    const bob = await connectDevice(nodes[1]!.url, uniqueUser('busy-b'));
    devices.push(alice, bob);
    const { conversation } = await alice.ok('conversation:open-direct', { userId: bob.userId });
    // An open transaction pins the only server connection to its client: everybody else queues.
    const holder = new pg.Client({ connectionString: parseDatabaseUrl(bouncer.url).url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1');
      // A group with no other member begins with its transaction, which Prisma gives up starting after
      // 2 s; a send's batch statement waits for PgBouncer's query_wait_timeout (3 s).
      const attempts = [
        () => alice.call('conversation:create-group', { title: 'busy', memberIds: [] }),
        () => alice.call('message:send', { conversationId: conversation.id, clientMsgId: `busy-${randomBytes(3).toString('hex')}`, body: 'queued' }),
      ];
      for (const attempt of attempts) {
        const started = Date.now();
        expect(await attempt()).toMatchObject({ ok: false, error: { code: 'unavailable', retryable: true } });
        expect(Date.now() - started).toBeLessThan(6000);
      }
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    expect(await alice.ok('conversation:create-group', { title: 'free', memberIds: [] })).toMatchObject({ conversation: { title: 'free' } });
  });

  it('refuses to migrate through it, migrates through DATABASE_DIRECT_URL, and reports status through it', async () => {
    const name = `pgbtest_${Date.now()}_${randomBytes(3).toString('hex')}`;
    const admin = inject('adminDatabaseUrl');
    await adminQuery(admin, `CREATE DATABASE "${name}"`);
    onTestFinished(() => adminQuery(admin, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
    const direct = withDatabase(admin, name);
    const pooled = withDatabase(bouncer.url, name);
    const migrate = (env: Record<string, string>) =>
      promisify(execFile)(process.execPath, ['--conditions=@chat/source', '--import', 'tsx', 'apps/server/src/db/migrate-cli.ts', 'deploy'], {
        cwd: REPO,
        env: { PATH: process.env['PATH'], ...env },
      }).then(
        ({ stdout }) => ({ code: 0, stdout, stderr: '' }),
        (error: { code: number; stdout: string; stderr: string }) => error,
      );

    const refused = await migrate({ DATABASE_URL: pooled });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^migrate deploy failed: the database URL carries pgbouncer=true: .*session advisory lock.*DATABASE_DIRECT_URL/);
    expect((await migrationStatus({ kind: 'postgres', connectionString: pooled })).applied).toEqual([]);

    const applied = await migrate({ DATABASE_URL: pooled, DATABASE_DIRECT_URL: direct });
    expect(applied.stdout).toMatch(/migration\(s\) applied\n$/);
    expect(await migrationStatus({ kind: 'postgres', connectionString: pooled })).toMatchObject({ pending: [], failed: [] });
    // Two migrator processes, each loading the wasm engine.
  }, 60_000);
});
