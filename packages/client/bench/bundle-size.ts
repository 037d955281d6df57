/**
 * `npm run bench:bundle` — what @chat/client costs a browser app: esbuild --bundle --minify of a tiny
 * app that connects, sends and listens, reported as minified and gzip bytes, once as the SDK comes
 * (no validation) and once with the zod validator (`@chat/client/validate`) an app can opt into.
 * Resolves the packages as a consumer would (their exports' default condition: dist/), so run
 * `npm run build:packages` first; --source measures the TypeScript sources instead.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const HERE = fileURLToPath(new URL('.', import.meta.url));

const APPS: Record<string, string> = {
  plain: `import { ChatClient } from '@chat/client';
const client = new ChatClient({ url: location.origin, token: () => localStorage.getItem('token') ?? '' });
client.on('message', (m) => console.log(m.body));
client.connect();
client.send({ conversationId: 'c1', body: 'hello' });`,
  validated: `import { ChatClient } from '@chat/client';
import { validateSend } from '@chat/client/validate';
const client = new ChatClient({ url: location.origin, token: () => localStorage.getItem('token') ?? '', validate: validateSend });
client.on('message', (m) => console.log(m.body));
client.connect();
client.send({ conversationId: 'c1', body: 'hello' });`,
};

export async function measure(source: string, conditions: string[] = []): Promise<{ min: number; gzip: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'chat-bundle-'));
  try {
    const entry = join(dir, 'app.js');
    writeFileSync(entry, source);
    const result = await esbuild.build({
      entryPoints: [entry],
      bundle: true,
      minify: true,
      format: 'esm',
      platform: 'browser',
      write: false,
      conditions,
      // The app lives in a temporary folder: resolve packages from this workspace.
      nodePaths: [join(HERE, '../../../node_modules')],
      logLevel: 'error',
    });
    const code = result.outputFiles[0]?.contents ?? new Uint8Array();
    return { min: code.byteLength, gzip: gzipSync(code, { level: 9 }).byteLength };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const conditions = process.argv.includes('--source') ? ['@chat/source'] : [];
  for (const [name, source] of Object.entries(APPS)) {
    const { min, gzip } = await measure(source, conditions).catch((error: Error) => ({ min: NaN, gzip: NaN, error }));
    console.log(`${name.padEnd(10)} ${String(min).padStart(8)} B min  ${String(gzip).padStart(7)} B gzip`);
  }
}
