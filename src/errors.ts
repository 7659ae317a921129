/**
 * One registry of error codes: each code carries its HTTP status and whether a client may retry.
 * Expected outcomes (out of stock, duplicate request) are reply values; AppError is for bad input,
 * overload and infrastructure faults.
 */
export const ERROR_CODES = {
  VALIDATION_FAILED: { status: 400, retryable: false },
  MALFORMED_JSON: { status: 400, retryable: false },
  /** A WebSocket frame that is not JSON (or msgpack, with that subprotocol). */
  MALFORMED_FRAME: { status: 400, retryable: false },
  /** A WebSocket subscription past the per-connection cap (WS_MAX_SUBSCRIPTIONS). */
  TOO_MANY_SUBSCRIPTIONS: { status: 400, retryable: false },
  IDEMPOTENCY_KEY_REQUIRED: { status: 400, retryable: false },
  IDEMPOTENCY_KEY_REUSED: { status: 422, retryable: false },
  /** No token, or one that does not verify (with `WWW-Authenticate: Bearer`). */
  UNAUTHENTICATED: { status: 401, retryable: false },
  /** A verified caller whose role may not use the route. */
  FORBIDDEN: { status: 403, retryable: false },
  PAYMENT_DECLINED: { status: 402, retryable: false },
  NOT_FOUND: { status: 404, retryable: false },
  PRODUCT_NOT_FOUND: { status: 404, retryable: false },
  ORDER_NOT_FOUND: { status: 404, retryable: false },
  METHOD_NOT_ALLOWED: { status: 405, retryable: false },
  OUT_OF_STOCK: { status: 409, retryable: false },
  PAYLOAD_TOO_LARGE: { status: 413, retryable: false },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, retryable: false },
  RATE_LIMITED: { status: 429, retryable: true },
  /** The request's headers together exceed the node's cap (MAX_HEADER_BYTES). */
  REQUEST_HEADERS_TOO_LARGE: { status: 431, retryable: false },
  INTERNAL: { status: 500, retryable: false },
  OVERLOADED: { status: 503, retryable: true },
  OWNERSHIP_LOST: { status: 503, retryable: true },
  PEER_UNAVAILABLE: { status: 503, retryable: true },
  DEPENDENCY_UNAVAILABLE: { status: 503, retryable: true },
  SHUTTING_DOWN: { status: 503, retryable: true },
  DEADLINE_EXCEEDED: { status: 504, retryable: true },
  /** Answered by the balancer (docker/nginx/nginx.conf): no app node could be reached. */
  NO_NODE_AVAILABLE: { status: 503, retryable: true },
  /** Answered by the balancer: the node did not answer within its read timeout. */
  NODE_TIMEOUT: { status: 504, retryable: true },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface AppErrorOptions {
  /** The request field the error is about, e.g. `quantity` or `body.productId`. */
  field?: string;
  /** Seconds a client should wait before retrying (sent as `Retry-After`). */
  retryAfterSeconds?: number;
  /** Extra response headers the error carries (`WWW-Authenticate`, rate-limit headers). */
  headers?: Readonly<Record<string, string>>;
  cause?: unknown;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  readonly field: string | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.retryable = ERROR_CODES[code].retryable;
    this.field = options.field;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.headers = options.headers;
  }

  /** The JSON body clients receive: `{ error: { code, message, field?, retryable } }`. */
  toBody(): { error: { code: ErrorCode; message: string; field?: string; retryable: boolean } } {
    const error: { code: ErrorCode; message: string; field?: string; retryable: boolean } = {
      code: this.code,
      message: this.message,
      retryable: this.retryable,
    };
    if (this.field !== undefined) error.field = this.field;
    return { error };
  }
}

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
 * DEPENDENCY_UNAVAILABLE (a retry with the same Idempotency-Key is safe); other unknown faults INTERNAL,
 * without leaking their message.
 */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (isConnectionError(err))
    return new AppError('DEPENDENCY_UNAVAILABLE', 'a server connection failed; retry', {
      cause: err,
      retryAfterSeconds: 1,
    });
  return new AppError('INTERNAL', 'internal error', { cause: err });
}
