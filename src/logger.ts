import { pino, type Logger } from 'pino';
import type { Config } from './config.js';

export type { Logger };

/** JSON logs to stdout; every line carries the node id so logs of several nodes can be merged. */
export function createLogger(config: Pick<Config, 'logLevel' | 'nodeId'>): Logger {
  return pino({ level: config.logLevel, base: { node: config.nodeId } });
}
