// PgBouncer 1.18 in pool_mode = transaction with as few server connections as possible: what breaks
// there and must not. (The messaging suite also runs whole through PgBouncer: the `pgbouncer` project
// in vitest.config.ts.)
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { findPgBouncer, startPrivatePgBouncer, type PrivatePgBouncer } from '../../../infra/cluster/services.ts';
import { adminQuery, withDatabase } from '../src/db/admin.ts';
import { migrationStatus } from '../src/db/migrations.ts';
import { startNode, type TestNode } from './helpers/nodes.ts';
import { connectDevice, uniqueUser, type Device } from './helpers/users.ts';

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
    const conversations = await Promise.all(pairs.map(([a, b]) => a.ok('conversation:open-direct', { userId: b.userId })));
    // The message batch and the receipt batch (the other two hot statements), concurrently on both nodes.
    const sends = await Promise.all(
      pairs.flatMap(([a, b], i) =>
        [a, b, a, b, a].map((sender, n) => sender.ok('message:send', { conversationId: conversations[i]!.conversation.id, clientMsgId: `pgb-${i}-${n}-${randomBytes(3).toString('hex')}`, body: `m${n}` })),
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

  it('refuses to migrate through it, migrates through DATABASE_DIRECT_URL, and reports status through it', async () => {
    const name = `pgbtest_${Date.now()}_${randomBytes(3).toString('hex')}`;
    const admin = inject('adminDatabaseUrl');
    await adminQuery(admin, `CREATE DATABASE "${name}"`);
    onTestFinished(() => adminQuery(admin, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
    const direct = withDatabase(admin, name);
    const pooled = withDatabase(bouncer.url, name);
    const migrate = (env: Record<string, string>) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', 'apps/server/src/db/migrate-cli.ts', 'deploy'], { cwd: REPO, env: { PATH: process.env['PATH'], ...env } }).then(
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
