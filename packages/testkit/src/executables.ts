/**
 * Where a service binary is: PATH first, then where Debian puts daemons (/usr/sbin and /usr/local/sbin
 * are not on a non-root user's PATH). No other imports, so vitest.config.ts can ask too.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** The first executable `name` on PATH, /usr/sbin or /usr/local/sbin; undefined when there is none. */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'];
  for (const dir of dirs.filter(Boolean)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // next
    }
  }
  return undefined;
}

/** Debian's Chromium (`apt-get install -y chromium`), or CHROMIUM_PATH; undefined when there is none. */
export function findChromium(): string | undefined {
  for (const candidate of [process.env['CHROMIUM_PATH'], '/usr/bin/chromium', '/usr/bin/chromium-browser']) {
    if (!candidate) continue;
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}
