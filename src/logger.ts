import { pino, type DestinationStream, type Logger } from 'pino';
import type { Config } from './config.js';

export type { DestinationStream, Logger };

/**
 * JSON logs to stdout (or `destination`: tests keep the lines); every line carries the node id so logs
 * of several nodes can be merged, and a request's lines its `reqId` (README "Logs").
 */
export function createLogger(
  config: Pick<Config, 'logLevel' | 'nodeId'>,
  destination?: DestinationStream,
): Logger {
  const options = { level: config.logLevel, base: { node: config.nodeId } };
  return destination === undefined ? pino(options) : pino(options, destination);
}
