/**
 * Builds the browser client into apps/web/dist: the page's TypeScript plus the SDK, protocol and
 * socket.io-client bundled and minified by esbuild, the stylesheet, and index.html pointing at them.
 * Asset names carry a content hash, so the node serves them as immutable and only index.html is
 * revalidated. Each file also gets .br and .gz twins, which the node sends to browsers that accept them.
 *
 * Run by `npm run web:build`, by the root postinstall (so `npm ci && npm start` serves a working page)
 * and by infra/Dockerfile's build stage. `--watch` rebuilds on every change while developing.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';
import { webDistDir } from './index.ts';

const WEB_ROOT = fileURLToPath(new URL('../', import.meta.url));
const ASSETS = join(webDistDir, 'assets');

export interface WebBuild {
  /** Files written, relative to the dist folder. */
  files: string[];
  /** Bytes of the JavaScript bundle, before compression. */
  scriptBytes: number;
}

/**
 * zod's `z` namespace re-exports every translation of its error messages (`z.locales`, also through `zod/v4/core`; ~260 KB
 * minified, half the bundle), which tree-shaking cannot drop through the namespace object. The page
 * never reads `z.locales` (English messages come from zod's own `en` import), so that one re-export
 * resolves to an empty module.
 */
const dropZodLocales: esbuild.Plugin = {
  name: 'drop-zod-locales',
  setup(build) {
    build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]v4[\\/](classic|core|mini)[\\/]/.test(args.importer) ? { path: 'zod-locales', namespace: 'empty' } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'empty' }, () => ({ contents: 'export {};', loader: 'js' }));
  },
};

function options(): esbuild.BuildOptions {
  return {
    entryPoints: { app: join(WEB_ROOT, 'page/main.ts'), style: join(WEB_ROOT, 'page/style.css') },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    // Evergreen browsers of the last few years: native classes with private fields, top-level await.
    target: ['chrome111', 'firefox114', 'safari16.4'],
    minify: true,
    sourcemap: 'linked',
    entryNames: '[name]-[hash]',
    outdir: ASSETS,
    // Written by finish(), atomically, instead.
    write: false,
    legalComments: 'linked',
    logLevel: 'warning',
    // The workspace packages' TypeScript sources (their exports' `@chat/source` condition), so the page
    // builds without the packages' dist/ and always from the current sources.
    conditions: ['@chat/source'],
    plugins: [dropZodLocales],
  };
}

/**
 * Every file is written to a temporary name and renamed into place, so a node serving the folder (or a
 * build running at the same time, as two test workers may) never sends a half-written file. Order:
 * the new assets, then index.html pointing at them, then the old assets go.
 */
function place(path: string, content: Uint8Array): void {
  const temporary = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  writeFileSync(temporary, content);
  renameSync(temporary, path);
}

function placeWithTwins(path: string, content: Uint8Array): void {
  if (!path.endsWith('.map')) {
    place(`${path}.br`, brotliCompressSync(content, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }));
    place(`${path}.gz`, gzipSync(content, { level: 9 }));
  }
  place(path, content);
}

/** Writes this build's assets and the index.html pointing at them, then removes assets of older builds. */
function finish(result: esbuild.BuildResult): WebBuild {
  const outputs = result.outputFiles!;
  for (const file of outputs) placeWithTwins(file.path, file.contents);
  const named = (ext: string) => basename(outputs.find((file) => file.path.endsWith(ext))!.path);
  const template = readFileSync(join(WEB_ROOT, 'page/index.html'), 'utf8');
  const html = template.replaceAll('%APP_JS%', `/assets/${named('.js')}`).replaceAll('%APP_CSS%', `/assets/${named('.css')}`);
  placeWithTwins(join(webDistDir, 'index.html'), Buffer.from(html));

  const keep = new Set(outputs.map((file) => basename(file.path)));
  for (const name of readdirSync(ASSETS)) {
    if (!keep.has(name.replace(/\.(br|gz)$/, '')) && !name.endsWith('.tmp')) rmSync(join(ASSETS, name), { force: true });
  }
  const script = outputs.find((file) => file.path.endsWith('.js'))!;
  return { files: ['index.html', ...outputs.map((file) => relative(webDistDir, file.path))], scriptBytes: script.contents.length };
}

/** One build into apps/web/dist; safe while nodes serve the folder and while another build runs. */
export async function buildWeb(): Promise<WebBuild> {
  mkdirSync(ASSETS, { recursive: true });
  return finish(await esbuild.build(options()));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--watch')) {
    mkdirSync(ASSETS, { recursive: true });
    const context = await esbuild.context({
      ...options(),
      plugins: [dropZodLocales, { name: 'finish', setup: (build) => build.onEnd((result) => void (result.errors.length === 0 && console.log(`web: rebuilt (${finish(result).scriptBytes} bytes of script)`))) }],
    });
    await context.watch();
    console.log('web: watching apps/web/page and the SDK; Ctrl-C stops');
  } else {
    const build = await buildWeb();
    console.log(`web: built ${build.files.length} files into ${relative(process.cwd(), webDistDir) || '.'} (${(build.scriptBytes / 1024).toFixed(1)} KiB of script before compression)`);
  }
}
