/**
 * `npm run chaos -- [flags]` (see `--help`). Exit codes: 0 every check passed; 1 a check failed (a
 * message lost or duplicated among them); 2 usage error; 3 the run could not be carried out.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { UsageError } from '@chat/loadgen/options';
import { formatSummary } from '@chat/loadgen/summary';
import { helpText, parseChaosArgs } from './options.ts';
import { formatChecks } from './report.ts';
import { runChaos } from './run.ts';

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseChaosArgs>;
  try {
    parsed = parseChaosArgs(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${error.message}\n\nRun with --help for the flags.\n`);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(`${helpText()}\n`);
    return 0;
  }
  const { options } = parsed;
  const tty = process.stdout.isTTY === true;
  let inPlace = false;
  const io = {
    log(line: string) {
      if (inPlace) process.stdout.write('\n');
      inPlace = false;
      process.stdout.write(`${line}\n`);
    },
    progress(line: string) {
      if (tty) {
        process.stdout.write(`\r\x1b[K${line}`);
        inPlace = true;
      } else {
        process.stdout.write(`${line}\n`);
      }
    },
  };
  io.log(
    `chaos: ${options.clients} clients, ${options.rate} msgs/s, phases ${options.phases.join(' → ')}, Redis ${options.redis}, ${options.settleMs / 1000} s settle, ${options.downMs / 1000} s down`,
  );
  // Ctrl-C: the launchers' exit hooks stop nodes, nginx, Redis and PostgreSQL.
  process.once('SIGINT', () => process.exit(130));
  const report = await runChaos(options, io);

  const out = resolve(options.out);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  if (report.load) io.log(formatSummary(report.load, null));
  for (const phase of report.phases) io.log(`  ${phase.label.padEnd(9)} at ${phase.atS} s, ${phase.tookMs} ms: ${phase.detail}`);
  if (report.failure) {
    io.log(`\nRUN FAILED: ${report.failure}`);
    io.log(`report: ${options.out}`);
    return 3;
  }
  io.log(`\n${formatChecks(report.checks)}\n`);
  io.log(`${report.ok ? 'ALL CHECKS PASSED' : `${report.checks.filter((check) => !check.pass).length} CHECK(S) FAILED`} — ${report.machine}, ${report.startedAt}; report: ${options.out}`);
  return report.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(3);
  },
);
