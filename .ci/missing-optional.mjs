// Prints, one per line as name@version, the platform packages (optional, with an os or cpu field)
// package-lock.json selects for this machine (os, cpu and libc match) that node_modules lacks. npm treats a failure to fetch an optional
// dependency as a skip, not an error, so a registry hiccup during `npm ci` can leave out a platform
// binary (Biome's, sharp's) and only a later step fails, far from the cause. Exit code 0 either way;
// the caller decides what to do with the list.
import { existsSync, readFileSync } from 'node:fs';

const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
// As npm decides it: glibc when Node reports a glibc runtime, else musl.
const libc = process.report.getReport().header.glibcVersionRuntime ? 'glibc' : 'musl';
const matches = (list, value) => {
  if (!list) return true;
  const denied = list.filter((entry) => entry.startsWith('!')).map((entry) => entry.slice(1));
  const allowed = list.filter((entry) => !entry.startsWith('!'));
  return !denied.includes(value) && (allowed.length === 0 || allowed.includes(value));
};

for (const [path, entry] of Object.entries(lock.packages)) {
  if (!path.startsWith('node_modules/') || !entry.optional || entry.link || !(entry.os || entry.cpu)) continue;
  if (!matches(entry.os, process.platform) || !matches(entry.cpu, process.arch)) continue;
  if (entry.libc && !matches(entry.libc, libc)) continue;
  if (existsSync(`${path}/package.json`)) continue;
  const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
  console.log(`${name}@${entry.version}`);
}
