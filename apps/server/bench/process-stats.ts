import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/**
 * Voluntary context switches of every thread of a process so far: how often one of its threads went
 * to sleep waiting for work, so how often it had to be woken. On this VM each wake-up has a cost of
 * its own (scheduling, the hypervisor's interrupt handling), paid per wake-up, not per message.
 */
export function wakeups(pid: number): number {
  let total = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // the thread exited
    }
  }
  return total;
}

/** Busy and total CPU time of the whole machine (all cores) so far, in clock ticks, from /proc/stat. */
export function machineTicks(): { busy: number; total: number } {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const ticks = fields.map(Number);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0); // idle + iowait
  const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0); // user … steal; guest time is already in user
  return { busy: total - idle, total };
}

let probeDir: string | undefined;

/** Where the measured servers' gc-probe.ts writes (GC_PROBE_DIR), the node flags that load it, and the reading. */
export const gcProbe = {
  /** Made on first use and removed when this process exits. */
  get dir(): string {
    if (!probeDir) {
      const dir = mkdtempSync(join(tmpdir(), 'chat-gc-probe-'));
      process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
      probeDir = dir;
    }
    return probeDir;
  },
  args: ['--expose-gc', '--import', fileURLToPath(new URL('./gc-probe.ts', import.meta.url))],
  /** Each process's memory right after a full GC; the processes must have been started with `args` and `dir`. */
  async measure(pids: number[], timeoutMs = 30_000): Promise<NodeJS.MemoryUsage[]> {
    return Promise.all(
      pids.map(async (pid) => {
        const file = join(gcProbe.dir, `${pid}.json`);
        rmSync(file, { force: true });
        process.kill(pid, 'SIGUSR2');
        for (const started = Date.now(); !existsSync(file); await sleep(20)) {
          if (Date.now() - started > timeoutMs) throw new Error(`process ${pid} wrote no memory probe within ${timeoutMs} ms (started without gcProbe.args?)`);
        }
        return JSON.parse(readFileSync(file, 'utf8')) as NodeJS.MemoryUsage;
      }),
    );
  },
};
