// What npm would publish, installed where the workspace cannot help: `npm pack` of @chat/protocol and
// @chat/client (their prepack builds dist/), the tarballs installed into a fresh project in the system
// temp folder (socket.io-client, uuid and zod come from the registry, through the npm cache), then an
// ESM consumer and a TypeScript `moduleResolution: nodenext` consumer (type-checked with tsc, then run)
// connect, send and receive against a real node using only the published files.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode, type TestNode } from '@chat/testkit/nodes';
import { signToken } from '@chat/testkit/tokens';
import { uniqueUser } from '@chat/testkit/users';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const NODE = process.execPath;
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const NPM_ENV = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };

/** Connects two users, opens a direct conversation, sends one message and reports what arrived. */
const CONSUMER = `import { ChatClient, ChatError } from '@chat/client';
import { validateSend } from '@chat/client/validate';
import { errorCatalog } from '@chat/protocol';

const url = process.env['CHAT_URL'] ?? '';
const alice = new ChatClient({ url, token: process.env['ALICE_TOKEN'] ?? '' });
const bob = new ChatClient({ url, token: () => process.env['BOB_TOKEN'] ?? '', validate: validateSend });
await Promise.all([alice.connect(), bob.connect()]);
const { conversation } = await alice.request('conversation:open-direct', { userId: process.env['BOB_ID'] ?? '' });
const received = new Promise((resolve) => bob.on('message', (message) => resolve(message.body)));
const outgoing = alice.send({ conversationId: conversation.id, body: 'hello from a tarball' });
await outgoing.acked;
const body = await received;
const invalid = bob.send({ conversationId: conversation.id, body: ' ' });
invalid.acked.catch(() => {});
console.log(JSON.stringify({ body, state: outgoing.state, invalid: invalid.error?.code, attempts: invalid.attempts, isChatError: invalid.error instanceof ChatError, catalog: errorCatalog.rate_limited.retryable }));
alice.close();
bob.close();
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'nodenext',
    moduleResolution: 'nodenext',
    strict: true,
    // The published declarations are checked too, not only the consumer.
    skipLibCheck: false,
    outDir: 'out',
    types: ['node'],
  },
  files: ['consumer.ts'],
};

describe('the published packages', () => {
  let dir: string;
  let node: TestNode;
  let env: NodeJS.ProcessEnv;
  const tarballs: Record<string, string> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'chat-sdk-consumer-'));
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir, '-w', '@chat/protocol', '-w', '@chat/client'], { cwd: ROOT, env: NPM_ENV, maxBuffer: 16 * 1024 * 1024 });
    for (const entry of JSON.parse(stdout) as Array<{ name: string; filename: string; files: Array<{ path: string }> }>) {
      tarballs[entry.name] = entry.filename;
      tarballs[`${entry.name} files`] = entry.files.map((file) => file.path).join('\n');
    }
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    // The npm cache already holds every dependency (the workspace installed them): no re-download.
    await run('npm', ['install', '--prefer-offline', '--no-package-lock', ...['@chat/protocol', '@chat/client'].map((name) => `./${tarballs[name]}`), '@types/node@24.19.2'], {
      cwd: dir,
      env: NPM_ENV,
    });
    node = await startNode();
    const [aliceId, bobId] = [uniqueUser('alice'), uniqueUser('bob')];
    env = {
      PATH: process.env['PATH'],
      CHAT_URL: node.url,
      ALICE_TOKEN: signToken({ sub: aliceId, name: aliceId }),
      BOB_TOKEN: signToken({ sub: bobId, name: bobId }),
      BOB_ID: bobId,
    };
  }, 240_000);

  afterAll(async () => {
    await node?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ship dist with declarations and source maps, README and LICENSE, and no tests', () => {
    for (const name of ['@chat/protocol', '@chat/client']) {
      const files = (tarballs[`${name} files`] ?? '').split('\n');
      expect(files, name).toEqual(expect.arrayContaining(['dist/index.js', 'dist/index.d.ts', 'dist/index.js.map', 'dist/index.d.ts.map', 'README.md', 'LICENSE', 'package.json']));
      expect(
        files.filter((file) => /(^|\/)test\//.test(file)),
        name,
      ).toEqual([]);
      const manifest = JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8'));
      expect(manifest).toMatchObject({ license: 'MIT', sideEffects: false, type: 'module' });
      expect(manifest.private).toBeUndefined();
      expect(manifest.exports['.']).toMatchObject({ types: './dist/index.d.ts', default: './dist/index.js' });
    }
    expect(readFileSync(join(dir, 'node_modules/@chat/client/LICENSE'), 'utf8')).toBe(readFileSync(join(ROOT, 'LICENSE'), 'utf8'));
  });

  it('connect, send and receive from an ESM (.mjs) consumer', async () => {
    writeFileSync(join(dir, 'consumer.mjs'), CONSUMER.replace(/process\.env\['(\w+)'\]/g, 'process.env.$1'));
    const { stdout } = await run(NODE, ['consumer.mjs'], { cwd: dir, env, timeout: 30_000 });
    expect(JSON.parse(stdout)).toEqual({ body: 'hello from a tarball', state: expect.stringMatching(/^(sent|delivered|read)$/), invalid: 'validation', attempts: 0, isChatError: true, catalog: true });
  }, 60_000);

  it('type-check with tsc (nodenext) and run from a TypeScript consumer', async () => {
    writeFileSync(join(dir, 'consumer.ts'), `${CONSUMER}\nconst typed: string = body as string;\nvoid typed;\nexport {};\n`);
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(TSCONFIG));
    await run(NODE, [TSC, '-p', 'tsconfig.json'], { cwd: dir }).catch((error: { stdout?: string }) => {
      throw new Error(`tsc failed:\n${error.stdout}`);
    });
    const { stdout } = await run(NODE, ['out/consumer.js'], { cwd: dir, env, timeout: 30_000 });
    expect(JSON.parse(stdout)).toMatchObject({ body: 'hello from a tarball', invalid: 'validation', isChatError: true });
    // Checking zod's and socket.io-client's declarations takes tsc 10-30 s on two busy cores.
  }, 180_000);
});
