import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../src/config.ts';
import { ENV_EXAMPLE, renderEnvExample } from '../scripts/env-example.ts';

describe('.env.example', () => {
  it('is what `npm run env:example` generates from the configuration schema (run it after changing a variable)', () => {
    expect(readFileSync(ENV_EXAMPLE, 'utf8')).toBe(renderEnvExample());
  });

  it('lists every variable the node reads, once, with its default or as unset', () => {
    const text = readFileSync(ENV_EXAMPLE, 'utf8');
    const listed = [...text.matchAll(/^# ([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1]);
    expect(listed).toEqual([...CONFIG_VARIABLES]);
    expect(text).toMatch(/^# PORT=3000$/m);
    expect(text).toMatch(/^# RATE_LIMIT_MESSAGE=20\/10s$/m);
    expect(text).toMatch(/^# DATABASE_URL= {2}\(unset by default\)$/m);
    // Nothing machine-specific, and never the public development secret itself.
    expect(text).toMatch(/^# NODE_ID=<hostname>-<pid>$/m);
    expect(text).not.toContain('dev-only-insecure-secret');
  });
});
