/**
 * The one registry of the errors that cross a boundary (an HTTP answer, a WebSocket frame, the peer channel,
 * the payment client and the payment provider): each code's HTTP status, whether the same request may be
 * retried, the `Retry-After` it carries by default, and the request field it is about by default.
 * Expected outcomes (out of stock, duplicate request) are reply values whose refusal reasons are codes of
 * this registry (`PurchaseRefusal`); AppError is for bad input, overload and infrastructure faults, and
 * InvariantError for a broken internal invariant (a bug).
 */
export interface ErrorSpec {
  readonly status: number;
  readonly retryable: boolean;
  /** `Retry-After` (seconds) an error of this code carries unless it says otherwise. */
  readonly retryAfterSeconds?: number;
  /** The request field an error of this code is about unless it says otherwise. */
  readonly field?: string;
  /** False: never in an answer of this service's API (a payment call's failure, the provider's own answers). */
  readonly api?: false;
}

export const ERROR_CODES = {
  VALIDATION_FAILED: { status: 400, retryable: false },
  MALFORMED_JSON: { status: 400, retryable: false },
  /** A WebSocket frame that is not JSON (or msgpack, with that subprotocol), or a peer channel frame that is not a msgpack frame. */
  MALFORMED_FRAME: { status: 400, retryable: false },
  /** A WebSocket subscription past the per-connection cap (WS_MAX_SUBSCRIPTIONS). */
  TOO_MANY_SUBSCRIPTIONS: { status: 400, retryable: false },
  IDEMPOTENCY_KEY_REQUIRED: { status: 400, retryable: false },
  IDEMPOTENCY_KEY_REUSED: { status: 422, retryable: false, field: 'Idempotency-Key' },
  /** No token, or one that does not verify (with `WWW-Authenticate: Bearer`). */
  UNAUTHENTICATED: { status: 401, retryable: false },
  /** A verified caller whose role may not use the route. */
  FORBIDDEN: { status: 403, retryable: false },
  PAYMENT_DECLINED: { status: 402, retryable: false },
  NOT_FOUND: { status: 404, retryable: false },
  PRODUCT_NOT_FOUND: { status: 404, retryable: false, field: 'productId' },
  ORDER_NOT_FOUND: { status: 404, retryable: false },
  METHOD_NOT_ALLOWED: { status: 405, retryable: false },
  OUT_OF_STOCK: { status: 409, retryable: false },
  PAYLOAD_TOO_LARGE: { status: 413, retryable: false },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, retryable: false },
  RATE_LIMITED: { status: 429, retryable: true },
  /** The request's headers together exceed the node's cap (MAX_HEADER_BYTES). */
  REQUEST_HEADERS_TOO_LARGE: { status: 431, retryable: false },
  /** Anything unforeseen, and a broken internal invariant (InvariantError): the message is not shown. */
  INTERNAL: { status: 500, retryable: false },
  /** An event (a Kafka message, an outbox row) that cannot be decoded as one of the service's events. */
  MALFORMED_EVENT: { status: 500, retryable: false, api: false },
  /** A program cannot start: a port in use, a misnamed migration, missing TLS files, bad settings. */
  STARTUP_FAILED: { status: 500, retryable: false, api: false },
  OVERLOADED: { status: 503, retryable: true, retryAfterSeconds: 1 },
  OWNERSHIP_LOST: { status: 503, retryable: true, retryAfterSeconds: 1 },
  PEER_UNAVAILABLE: { status: 503, retryable: true },
  DEPENDENCY_UNAVAILABLE: { status: 503, retryable: true, retryAfterSeconds: 1 },
  SHUTTING_DOWN: { status: 503, retryable: true, retryAfterSeconds: 1 },
  DEADLINE_EXCEEDED: { status: 504, retryable: true },
  /** Answered by the balancer (docker/nginx/nginx.conf): no app node could be reached. */
  NO_NODE_AVAILABLE: { status: 503, retryable: true },
  /** Answered by the balancer: the node did not answer within its read timeout. */
  NODE_TIMEOUT: { status: 504, retryable: true },
  // The payment client's failures (src/payment): a saga's payment step sees them and retries the
  // retryable ones with the same key; a client never does.
  /** 5xx, connection refused or reset, or an unreadable answer: nothing is known to be recorded. */
  PAYMENT_UNAVAILABLE: { status: 502, retryable: true, api: false },
  /** No answer within the per-call timeout: the charge may have been recorded; retry with the same key. */
  PAYMENT_TIMEOUT: { status: 504, retryable: true, api: false },
  /** The circuit is open after repeated failures: no request was sent. */
  PAYMENT_CIRCUIT_OPEN: { status: 503, retryable: true, api: false },
  /** The provider refused the request (4xx, e.g. a key reused with another amount): retrying cannot help. */
  PAYMENT_REJECTED: { status: 502, retryable: false, api: false },
  // The payment provider's own answers (src/payment-provider; the client maps them onto the codes above).
  /** A lookup of a key the provider has no payment for. */
  PAYMENT_NOT_FOUND: { status: 404, retryable: false, api: false },
  /** A charge of a known key with another amount. */
  PAYMENT_KEY_REUSED: { status: 409, retryable: false, field: 'key', api: false },
  /** The provider is down (simulated outage): nothing was recorded. */
  PROVIDER_UNAVAILABLE: { status: 503, retryable: true, api: false },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The codes an answer of this service's API (HTTP, WebSocket) may carry: the OpenAPI document lists these. */
export const API_ERROR_CODES: readonly ErrorCode[] = (Object.keys(ERROR_CODES) as ErrorCode[]).filter(
  (code) => (ERROR_CODES[code] as ErrorSpec).api !== false,
);

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
    const spec: ErrorSpec = ERROR_CODES[code];
    this.status = spec.status;
    this.retryable = spec.retryable;
    this.field = options.field ?? spec.field;
    this.retryAfterSeconds = options.retryAfterSeconds ?? spec.retryAfterSeconds;
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
 * A broken internal invariant: a bug, not a fault of a caller or a dependency. Answered as INTERNAL (the
 * message is logged, not shown).
 */
export class InvariantError extends AppError {
  constructor(message: string, options: Pick<AppErrorOptions, 'cause'> = {}) {
    super('INTERNAL', message, options);
    this.name = 'InvariantError';
  }
}

/**
 * A write the database refused and that was rolled back, for a reason no check traced to a batch (a unique
 * key no idempotency lookup explains): certain that nothing of it was applied, unlike a lost round trip.
 */
export class WriteRolledBack extends AppError {
  constructor(cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super('DEPENDENCY_UNAVAILABLE', `the database refused the write and rolled it back (${reason})`, {
      cause,
    });
    this.name = 'WriteRolledBack';
  }
}
