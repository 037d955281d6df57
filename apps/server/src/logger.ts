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

/**
 * What the domain and identity modules log through: a subset of pino's (and Fastify's) logger, so
 * they depend on neither.
 */
export interface ServiceLog {
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}
