/** Why a payment call failed; `retryable` says whether the same call (same key) may be tried again later. */
export const PAYMENT_ERROR_CODES = {
  /** 5xx, connection refused or reset, or an unreadable answer: nothing is known to be recorded. */
  PAYMENT_UNAVAILABLE: { retryable: true },
  /** No answer within the per-call timeout: the charge may have been recorded; retry with the same key. */
  PAYMENT_TIMEOUT: { retryable: true },
  /** The circuit is open after repeated failures: no request was sent. */
  PAYMENT_CIRCUIT_OPEN: { retryable: true },
  /** The provider refused the request (4xx, e.g. a key reused with another amount): retrying cannot help. */
  PAYMENT_REJECTED: { retryable: false },
} as const;

export type PaymentErrorCode = keyof typeof PAYMENT_ERROR_CODES;

export interface PaymentErrorOptions {
  /** HTTP status the provider answered, when it answered. */
  readonly status?: number;
  /** Attempts made before giving up (1 = no retry). */
  readonly attempts?: number;
  readonly cause?: unknown;
}

export class PaymentError extends Error {
  readonly code: PaymentErrorCode;
  readonly retryable: boolean;
  readonly status: number | undefined;
  attempts: number;

  constructor(code: PaymentErrorCode, message: string, options: PaymentErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PaymentError';
    this.code = code;
    this.retryable = PAYMENT_ERROR_CODES[code].retryable;
    this.status = options.status;
    this.attempts = options.attempts ?? 1;
  }
}
