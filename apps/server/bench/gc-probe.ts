/**
 * Preloaded into the servers the benchmarks measure (see `gcProbeArgs`), never into a deployed node:
 * on SIGUSR2 it runs a full garbage collection and writes `process.memoryUsage()` to
 * `$GC_PROBE_DIR/<pid>.json`, so a benchmark reads what the process retains, not garbage it has yet
 * to collect. Written by hand because Node has no flag that reports memory after a collection on demand.
 * Plain erasable TypeScript: Node 24 loads it before tsx is registered.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const gc = (globalThis as { gc?: () => void }).gc;
const dir = process.env['GC_PROBE_DIR'];
if (!gc || !dir) throw new Error('gc-probe needs node --expose-gc and GC_PROBE_DIR');

process.on('SIGUSR2', () => {
  // Twice: the first collection can leave objects whose finalizers the second one frees.
  gc();
  gc();
  // Written whole, then renamed: the reader never sees half a file.
  const file = join(dir, `${process.pid}.json`);
  writeFileSync(`${file}.tmp`, JSON.stringify(process.memoryUsage()));
  renameSync(`${file}.tmp`, file);
});
