import pino, { type Logger } from 'pino';
import type { Config } from './config.ts';

/** JSON logs, one object per line, every line tagged with the node id. Tokens never reach the log. */
export function createLogger(config: Pick<Config, 'nodeId' | 'logLevel'>): Logger {
  return pino({
    level: config.logLevel,
    base: { node: config.nodeId },
    redact: ['req.headers.authorization', 'token', '*.token'],
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
