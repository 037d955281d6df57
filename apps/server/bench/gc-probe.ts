/**
 * Preloaded (`--expose-gc --import`) into the servers `npm run bench:memory` measures, never into a
 * deployed node: on SIGUSR2 it runs a full garbage collection and prints `process.memoryUsage()` as
 * one JSON line on stdout, so the bench reads what the process retains, not garbage it has yet to
 * collect. Written by hand because Node has no flag that reports memory after a collection on demand.
 */
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('gc-probe needs node --expose-gc');

process.on('SIGUSR2', () => {
  // Twice: the first collection can leave objects whose finalizers the second one frees.
  gc();
  gc();
  process.stdout.write(`${JSON.stringify({ memoryProbe: process.memoryUsage() })}\n`);
});
