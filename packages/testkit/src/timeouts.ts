/**
 * The test timeout of tests that boot PGlite or run Prisma's WebAssembly schema engine: CPU-bound
 * work of seconds on an idle 2-core machine and many times that on a busy one. The bound is there to
 * catch a hang, not to measure speed.
 */
export const WASM_ENGINE_TIMEOUT_MS = 180_000;
