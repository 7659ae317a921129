// The error registry lives in the domain (src/domain/errors.ts), where the outcome types derive from it;
// this module adds how faults of the servers and drivers map onto it.
import { AppError, InvariantError } from './domain/errors.js';

export {
  API_ERROR_CODES,
  AppError,
  ERROR_CODES,
  InvariantError,
  WriteRolledBack,
  type AppErrorOptions,
  type ErrorCode,
  type ErrorSpec,
} from './domain/errors.js';

/**
 * Error codes (Node's and mysql2's) of a connection to a server that failed or was cut off, or of a server
 * that refuses writes for now (read-only during a failover): the request may succeed when retried.
 */
export const CONNECTION_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'PROTOCOL_CONNECTION_LOST',
  'ER_OPTION_PREVENTS_STATEMENT', // 1290: read-only (a fenced or not yet promoted server)
  'ER_CONNECTION_KILLED', // killed by the failover manager's fence
  'ER_SERVER_SHUTDOWN',
]);

/**
 * A lost, refused or read-only server connection: one of CONNECTION_ERROR_CODES, or an error mysql2 marks
 * `fatal` (the connection is unusable), some of which carry no code, e.g. "Can't add new command when
 * connection is in closed state" from a pooled connection whose server just died.
 */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; fatal?: unknown } | null;
  return CONNECTION_ERROR_CODES.has(e?.code as string) || e?.fatal === true;
}

/**
 * Any thrown value as an AppError: a lost or refused server connection becomes a retryable 503
 * DEPENDENCY_UNAVAILABLE (a retry with the same Idempotency-Key is safe); a broken invariant and other
 * unknown faults INTERNAL, without leaking their message.
 */
export function toAppError(err: unknown): AppError {
  if (err instanceof InvariantError) return new AppError('INTERNAL', 'internal error', { cause: err });
  if (err instanceof AppError) return err;
  if (isConnectionError(err))
    return new AppError('DEPENDENCY_UNAVAILABLE', 'a server connection failed; retry', {
      cause: err,
      retryAfterSeconds: 1,
    });
  return new AppError('INTERNAL', 'internal error', { cause: err });
}
