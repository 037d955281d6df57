/**
 * `npm run loadtest -- --url http://127.0.0.1:8080 --clients 5000 …` (see `--help`).
 *
 * Exit codes: 0 clean; 1 messages lost or duplicated; 2 usage error; 3 the run could not be carried
 * out. A pipeline can gate on it.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { runLoadtest, type Io } from './coordinator.ts';
import { renderHtml } from './html.ts';
import { helpText, parseCommandLine, UsageError } from './options.ts';
import { formatSummary } from './summary.ts';

function terminal(): Io {
  const tty = process.stdout.isTTY === true;
  let inPlace = false;
  return {
    log(line) {
      if (inPlace) process.stdout.write('\n');
      inPlace = false;
      process.stdout.write(`${line}\n`);
    },
    progress(line) {
      // On a terminal the progress line is rewritten in place; in a log file every second is a line.
      if (tty) {
        process.stdout.write(`\r\x1b[K${line}`);
        inPlace = true;
      } else {
        process.stdout.write(`${line}\n`);
      }
    },
  };
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(process.argv.slice(2), (path) => readFileSync(path, 'utf8'));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${error.message}\n\nRun with --help for the flags.\n`);
    return 2;
  }
  if (parsed.help || parsed.options === null) {
    process.stdout.write(`${helpText()}\n`);
    return 0;
  }
  const options = parsed.options;
  const io = terminal();
  io.log(
    `loadgen ${options.runId}: ${options.clients} devices, ${options.conversations} conversations, ${options.rate} msgs/s for ${options.durationMs / 1000} s against ${options.url} (${options.workers} workers, seed ${options.seed})`,
  );
  const { summary, exitCode } = await runLoadtest(options, io);

  const json = resolve(options.out);
  const html = resolve(options.html);
  mkdirSync(dirname(json), { recursive: true });
  mkdirSync(dirname(html), { recursive: true });
  writeFileSync(json, `${JSON.stringify(summary, null, 2)}\n`);
  writeFileSync(html, renderHtml(summary));
  io.log(formatSummary(summary, { json: options.out, html: options.html }));
  return exitCode;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 3;
  },
);
