import { ERROR_CODES } from '../domain/errors.js';

/** Why a payment call failed: the registry's PAYMENT_* codes (src/domain/errors.ts), each with `retryable`. */
export type PaymentErrorCode = Extract<
  keyof typeof ERROR_CODES,
  'PAYMENT_UNAVAILABLE' | 'PAYMENT_TIMEOUT' | 'PAYMENT_CIRCUIT_OPEN' | 'PAYMENT_REJECTED'
>;

export interface PaymentErrorOptions {
  /** HTTP status the provider answered, when it answered. */
  readonly status?: number;
  /** Attempts made before giving up (1 = no retry). */
  readonly attempts?: number;
  readonly cause?: unknown;
}

/**
 * A payment call that failed. Not an AppError: `status` is the provider's answer, not this service's;
 * the code, and whether the same call (same key) may be tried again later, come from the registry.
 */
export class PaymentError extends Error {
  readonly code: PaymentErrorCode;
  readonly retryable: boolean;
  readonly status: number | undefined;
  attempts: number;

  constructor(code: PaymentErrorCode, message: string, options: PaymentErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PaymentError';
    this.code = code;
    this.retryable = ERROR_CODES[code].retryable;
    this.status = options.status;
    this.attempts = options.attempts ?? 1;
  }
}
