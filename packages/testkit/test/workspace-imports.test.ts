// Workspaces reach each other by package name through `exports` (package.json), never by a relative
// path into another workspace's folder: a relative path hides the dependency from npm, from the
// Docker build's layer list and from whoever moves a file. This test fails on any such import.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** The folders the rule covers, relative to the repository root; `*` is one workspace folder. */
const SCANNED = ['apps/*/src', 'apps/*/test', 'apps/*/bench', 'apps/*/scripts', 'apps/*/page', 'packages/*/src', 'packages/*/test', 'packages/*/bench', 'infra'];
const SOURCE = /\.(?:[cm]?[jt]sx?)$/;
/** Static imports and re-exports, dynamic import(), vi.mock() and import.meta.resolve(). */
const SPECIFIERS = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\bvi\.mock\(\s*|\bimport\.meta\.resolve\(\s*)(['"])(\.{1,2}\/[^'"]*)\1/g;

function expand(pattern: string): string[] {
  const [top, star, ...rest] = pattern.split('/');
  if (star !== '*') return [join(ROOT, pattern)];
  const parent = join(ROOT, top ?? '');
  return readdirSync(parent).map((name) => join(parent, name, ...rest));
}

function walk(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    if (name === 'node_modules' || name === 'generated' || name === 'dist') return [];
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : SOURCE.test(name) ? [path] : [];
  });
}

/** `apps/server`, `packages/client`, or `infra` (which is no workspace: any relative import out of it counts). */
function workspaceOf(file: string): string {
  const [top, name] = relative(ROOT, file).split(sep);
  return top === 'apps' || top === 'packages' ? `${top}/${name}` : (top ?? '');
}

function crossWorkspaceImports(files: string[]): string[] {
  const found: string[] = [];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(SPECIFIERS)) {
      const specifier = match[2] ?? '';
      const target = resolve(dirname(file), specifier);
      if (workspaceOf(target) !== workspaceOf(file) || !relative(ROOT, target) || relative(ROOT, target).startsWith('..')) {
        const line = text.slice(0, match.index).split('\n').length;
        found.push(`${relative(ROOT, file)}:${line} imports '${specifier}'`);
      }
    }
  }
  return found;
}

describe('workspace boundaries', () => {
  it('has no relative import from one workspace into another', () => {
    const files = SCANNED.flatMap(expand).flatMap(walk);
    expect(files.length).toBeGreaterThan(100);
    expect(crossWorkspaceImports(files)).toEqual([]);
  });

  it('catches the patterns it is meant to catch', () => {
    const probe = join(ROOT, 'apps/server/test/probe.ts');
    const check = (text: string) => {
      const found: string[] = [];
      for (const match of text.matchAll(SPECIFIERS)) {
        const target = resolve(dirname(probe), match[2] ?? '');
        if (workspaceOf(target) !== workspaceOf(probe)) found.push(match[2] ?? '');
      }
      return found;
    };
    // The keywords are spliced in so that this file's own examples do not trip the first test.
    const [from, imp] = ['from', 'import'];
    expect(check(`${imp} { x } ${from} '../../../infra/cluster/cluster.ts';`)).toEqual(['../../../infra/cluster/cluster.ts']);
    expect(check(`export * ${from} "../../loadgen/src/summary.ts";`)).toEqual(['../../loadgen/src/summary.ts']);
    expect(check(`const m = await ${imp}('../../../packages/client/src/index.ts');`)).toEqual(['../../../packages/client/src/index.ts']);
    expect(check(`${imp} '../../web/src/index.ts';`)).toEqual(['../../web/src/index.ts']);
    // Inside one workspace, relative imports are how it should be.
    expect(check(`${imp} { buildApp } ${from} '../src/app.ts'; ${imp} { x } ${from} './helpers/hostile.ts';`)).toEqual([]);
  });
});
