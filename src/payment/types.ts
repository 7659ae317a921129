/** A payment's state at the provider. `declined` is an answer, not an error: it is never retried. */
export type PaymentStatus = 'succeeded' | 'declined' | 'voided' | 'refunded';

export interface PaymentResult {
  readonly status: PaymentStatus;
  readonly key: string;
  readonly amountCents?: number;
  readonly declineReason?: string;
}

export interface ChargeRequest {
  /** Idempotency key: every attempt of one payment uses the same key, so it is charged at most once. */
  readonly key: string;
  readonly amountCents: number;
  readonly orderId: string | number;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface PaymentClientOptions {
  /** Base URL of the provider, e.g. http://127.0.0.1:18090 (config `payment.url`). */
  readonly url: string;
  /**
   * Limit of connecting, and of one HTTP attempt from when its request is written; a call waiting for a free
   * connection is not timed. Ms (config `payment.timeoutMs`). Default 1000.
   */
  readonly timeoutMs?: number;
  /** Retries after a retryable failure (config `payment.retries`). Default 3. */
  readonly retries?: number;
  /** First backoff ceiling, doubled per retry, ms; each wait is uniform in [0, ceiling). Default 20. */
  readonly retryBaseDelayMs?: number;
  /** Largest backoff ceiling, ms. Default 500. */
  readonly retryMaxDelayMs?: number;
  /** Keep-alive connections to the provider; more calls at once wait their turn. Default 64. */
  readonly connections?: number;
  /** Failure share (percent) of recent attempts that opens the circuit. Default 50. */
  readonly breakerErrorThresholdPercentage?: number;
  /** Attempts within the window before the circuit may open at all. Default 20. */
  readonly breakerVolumeThreshold?: number;
  /** Window of recent attempts the failure share is measured over, ms. Default 10000 (10 s). */
  readonly breakerWindowMs?: number;
  /** Time the circuit stays open before one trial attempt (half-open), ms. Default 5000 (5 s). */
  readonly breakerResetTimeoutMs?: number;
  /** Told of each circuit state change (for logs and metrics). */
  readonly onBreakerStateChange?: (state: BreakerState) => void;
}
