import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The server's layers, read from the imports of every file under apps/server/src (static, type-only,
 * re-exports and dynamic `import()` alike). Each rule names a folder (or file) of src and what it may
 * not import: other folders of src, and packages by name prefix.
 *
 * - domain: the product's rules, callable by tests and both transports; it knows no transport and no
 *   Fastify wiring.
 * - state: shared stores behind contracts (memory and Redis); below the domain.
 * - identity: who is calling (principals, tokens, API keys); imported by plugins, transport and domain.
 * - storage: where uploaded bytes live (disk, S3) behind one interface; below the domain.
 * - transport: Socket.IO handlers and HTTP routes over the domain.
 * - plugins: the Fastify wiring of all of the above; only app.ts, main.ts and other plugins import it.
 */
const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

const FRAMEWORKS = ['fastify', 'fastify-plugin', '@fastify/', 'socket.io', '@socket.io/'];

interface Rule {
  /** A folder of src (`domain/`), a file (`errors.ts`), or '' for all of src. */
  layer: string;
  forbiddenFolders: string[];
  forbiddenPackages: string[];
}

const RULES: Rule[] = [
  { layer: 'domain/', forbiddenFolders: ['transport/', 'plugins/'], forbiddenPackages: FRAMEWORKS },
  { layer: 'state/', forbiddenFolders: ['domain/', 'transport/', 'plugins/', 'identity/'], forbiddenPackages: FRAMEWORKS },
  { layer: 'identity/', forbiddenFolders: ['domain/', 'transport/', 'plugins/', 'state/', 'db/'], forbiddenPackages: FRAMEWORKS },
  { layer: 'storage/', forbiddenFolders: ['domain/', 'transport/', 'plugins/', 'state/', 'identity/', 'db/'], forbiddenPackages: FRAMEWORKS },
  { layer: 'db/', forbiddenFolders: ['domain/', 'transport/', 'plugins/', 'state/', 'identity/'], forbiddenPackages: [] },
  { layer: 'transport/', forbiddenFolders: ['plugins/'], forbiddenPackages: [] },
  ...['config.ts', 'config-errors.ts', 'errors.ts', 'logger.ts'].map((file) => ({
    layer: file,
    forbiddenFolders: ['domain/', 'transport/', 'plugins/', 'state/', 'identity/'],
    forbiddenPackages: [],
  })),
];

/** Every import specifier of a TypeScript source. */
function importsOf(source: string): string[] {
  return ts.preProcessFile(source, true, true).importedFiles.map((file) => file.fileName);
}

/** The rule violations of one file (`path` relative to src, with `/`), as `file → import (why)`. */
function violations(path: string, source: string, rules: readonly Rule[] = RULES): string[] {
  const found: string[] = [];
  for (const rule of rules) {
    if (!(rule.layer === '' || rule.layer.endsWith('/') ? path.startsWith(rule.layer) : path === rule.layer)) continue;
    for (const specifier of importsOf(source)) {
      if (specifier.startsWith('.')) {
        const target = relative(SRC, resolve(SRC, dirname(path), specifier));
        const folder = rule.forbiddenFolders.find((forbidden) => target.startsWith(forbidden));
        if (folder) found.push(`${path} → ${specifier} (${rule.layer || 'src'} may not import ${folder})`);
      } else {
        const name = rule.forbiddenPackages.find((prefix) => (prefix.endsWith('/') ? specifier.startsWith(prefix) : specifier === prefix || specifier.startsWith(`${prefix}/`)));
        if (name) found.push(`${path} → ${specifier} (${rule.layer || 'src'} may not import ${name})`);
      }
    }
  }
  return found;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'generated' ? [] : sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

describe('server layers', () => {
  const files = sources(SRC).map((path) => ({ path: relative(SRC, path), source: readFileSync(path, 'utf8') }));

  it('reads every layer', () => {
    for (const layer of ['domain/', 'state/', 'identity/', 'storage/', 'db/', 'transport/', 'plugins/']) expect(files.some((file) => file.path.startsWith(layer))).toBe(true);
  });

  it('has rules for every folder of src, so a new one cannot slip past them', () => {
    const folders = readdirSync(SRC, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() && entry.name !== 'generated' ? [`${entry.name}/`] : []));
    // plugins/ has a test of its own below.
    const ruled = new Set([...RULES.map((rule) => rule.layer), 'plugins/']);
    expect(folders.filter((folder) => !ruled.has(folder))).toEqual([]);
  });

  it('has no import against the rules', () => {
    expect(files.flatMap((file) => violations(file.path, file.source))).toEqual([]);
  });

  it('only app.ts, main.ts and the plugins themselves import plugins/', () => {
    const outside = files.filter((file) => !file.path.startsWith('plugins/') && file.path !== 'app.ts' && file.path !== 'main.ts');
    const rule = [{ layer: '', forbiddenFolders: ['plugins/'], forbiddenPackages: [] }];
    expect(outside.flatMap((file) => violations(file.path, file.source, rule))).toEqual([]);
  });

  it('catches every kind of import that breaks a rule', () => {
    const bad = [
      "import type { Principal } from '../plugins/auth.ts';",
      "export { operations } from '../transport/operations.ts';",
      "const metrics = await import('../plugins/metrics.ts');",
      "import fp from 'fastify-plugin';",
      "import type { Server } from 'socket.io';",
    ].join('\n');
    expect(violations('domain/example.ts', bad)).toHaveLength(5);
    // Two levels up, written so the workspace-imports scan does not read it as this file's own import.
    const twoUp = '../'.repeat(2);
    expect(violations('transport/socket/example.ts', `import type { Metrics } from '${twoUp}plugins/metrics.ts';`)).toHaveLength(1);
    expect(violations('identity/example.ts', "import type { Fanout } from '../domain/fanout.ts';")).toHaveLength(1);
    expect(violations('domain/example.ts', "import type { Principal } from '../identity/principal.ts';\nimport { z } from 'zod';")).toEqual([]);
  });
});
