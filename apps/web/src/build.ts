/**
 * Builds the browser pages into apps/web/dist: the chat page (apps/web/page: its TypeScript plus the
 * SDK, protocol and socket.io-client) at the root, and the admin page (apps/web/admin: plain fetch, no
 * SDK) under admin/. Each page's script and stylesheet are bundled and minified by esbuild into its
 * own assets folder, and its index.html points at them. Asset names carry a content hash, so the node
 * serves them as immutable and only index.html is revalidated. Each file also gets .br and .gz twins,
 * which the node sends to browsers that accept them.
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

/** One page: its sources, where it is written, and the placeholders its index.html names its assets by. */
interface Target {
  name: 'chat' | 'admin';
  script: { entry: string; source: string };
  style: { entry: string; source: string };
  template: string;
  /** Relative to the dist folder; index.html goes here, the assets into its assets/ folder. */
  dir: string;
  /** The URL path the node serves `dir` at. */
  urlPath: string;
  placeholders: { script: string; style: string };
}

const TARGETS: readonly Target[] = [
  {
    name: 'chat',
    script: { entry: 'app', source: 'page/main.ts' },
    style: { entry: 'style', source: 'page/style.css' },
    template: 'page/index.html',
    dir: '',
    urlPath: '/',
    placeholders: { script: '%APP_JS%', style: '%APP_CSS%' },
  },
  {
    name: 'admin',
    script: { entry: 'admin', source: 'admin/main.ts' },
    style: { entry: 'admin-style', source: 'admin/style.css' },
    template: 'admin/index.html',
    dir: 'admin',
    urlPath: '/admin/',
    placeholders: { script: '%ADMIN_JS%', style: '%ADMIN_CSS%' },
  },
];

export interface WebBuild {
  /** Files written, relative to the dist folder. */
  files: string[];
  /** Bytes of the chat page's JavaScript bundle, before compression. */
  scriptBytes: number;
  /** Bytes of the admin page's JavaScript bundle, before compression. */
  adminScriptBytes: number;
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
    build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) => (/[\\/]zod[\\/]v4[\\/](classic|core|mini)[\\/]/.test(args.importer) ? { path: 'zod-locales', namespace: 'empty' } : undefined));
    build.onLoad({ filter: /.*/, namespace: 'empty' }, () => ({ contents: 'export {};', loader: 'js' }));
  },
};

const assetsDir = (target: Target) => join(webDistDir, target.dir, 'assets');

function options(target: Target): esbuild.BuildOptions {
  return {
    entryPoints: { [target.script.entry]: join(WEB_ROOT, target.script.source), [target.style.entry]: join(WEB_ROOT, target.style.source) },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    // Evergreen browsers of the last few years: native classes with private fields, top-level await.
    target: ['chrome111', 'firefox114', 'safari16.4'],
    minify: true,
    sourcemap: 'linked',
    entryNames: '[name]-[hash]',
    outdir: assetsDir(target),
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

interface PageBuild {
  files: string[];
  scriptBytes: number;
}

/** Writes one page's assets and the index.html pointing at them, then removes its assets of older builds. */
function finish(target: Target, result: esbuild.BuildResult): PageBuild {
  const outputs = result.outputFiles!;
  for (const file of outputs) placeWithTwins(file.path, file.contents);
  const named = (ext: string) => `${target.urlPath}assets/${basename(outputs.find((file) => file.path.endsWith(ext))!.path)}`;
  const template = readFileSync(join(WEB_ROOT, target.template), 'utf8');
  const html = template.replaceAll(target.placeholders.script, named('.js')).replaceAll(target.placeholders.style, named('.css'));
  const index = join(webDistDir, target.dir, 'index.html');
  placeWithTwins(index, Buffer.from(html));

  const assets = assetsDir(target);
  const keep = new Set(outputs.map((file) => basename(file.path)));
  for (const name of readdirSync(assets)) {
    if (!keep.has(name.replace(/\.(br|gz)$/, '')) && !name.endsWith('.tmp')) rmSync(join(assets, name), { force: true });
  }
  const script = outputs.find((file) => file.path.endsWith('.js'))!;
  return { files: [relative(webDistDir, index), ...outputs.map((file) => relative(webDistDir, file.path))], scriptBytes: script.contents.length };
}

/** One build of both pages into apps/web/dist; safe while nodes serve the folder and while another build runs. */
export async function buildWeb(): Promise<WebBuild> {
  const [chat, admin] = await Promise.all(
    TARGETS.map(async (target) => {
      mkdirSync(assetsDir(target), { recursive: true });
      return finish(target, await esbuild.build(options(target)));
    }),
  );
  return { files: [...chat!.files, ...admin!.files], scriptBytes: chat!.scriptBytes, adminScriptBytes: admin!.scriptBytes };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--watch')) {
    for (const target of TARGETS) {
      mkdirSync(assetsDir(target), { recursive: true });
      const context = await esbuild.context({
        ...options(target),
        plugins: [
          dropZodLocales,
          {
            name: 'finish',
            setup: (build) => build.onEnd((result) => void (result.errors.length === 0 && console.log(`web: rebuilt the ${target.name} page (${finish(target, result).scriptBytes} bytes of script)`))),
          },
        ],
      });
      await context.watch();
    }
    console.log('web: watching apps/web/page, apps/web/admin and the SDK; Ctrl-C stops');
  } else {
    const build = await buildWeb();
    const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
    console.log(
      `web: built ${build.files.length} files into ${relative(process.cwd(), webDistDir) || '.'} (script before compression: chat page ${kib(build.scriptBytes)}, admin page ${kib(build.adminScriptBytes)})`,
    );
  }
}
