/** What a payment key's record says; `voided` is a key voided before any charge arrived. */
export type PaymentStatus = 'succeeded' | 'declined' | 'voided' | 'refunded';

export interface ChargeRequest {
  /** Idempotency key: one key is charged at most once, whatever the number of attempts. */
  readonly key: string;
  readonly amountCents: number;
  readonly orderId: string | number;
}

/** One key's record, as answered by every route. */
export interface PaymentRecord {
  readonly key: string;
  status: PaymentStatus;
  readonly amountCents?: number;
  readonly orderId?: string | number;
  /** When the charge was decided (succeeded or declined), ISO 8601. */
  readonly chargedAt?: string;
  declineReason?: string;
  /** When the key was voided (a void before the charge) or refunded, ISO 8601. */
  voidedAt?: string;
}

/** Probabilities from 0 to 1, each rolled independently per request. */
export interface FaultRates {
  /** A new charge is declined (recorded, answered 200 `declined`). Default 0. */
  readonly declineRate: number;
  /** A request is answered 503 PROVIDER_UNAVAILABLE and nothing is recorded. Default 0. */
  readonly errorRate: number;
  /** A new charge is recorded but answered only after `timeoutHoldMs`. Default 0. */
  readonly timeoutRate: number;
}

export interface PaymentProviderOptions extends FaultRates {
  /** Delay before every /payments answer, ms. Default 5. */
  readonly latencyMs: number;
  /** How long a "timed out" charge holds its answer, ms. Default 30000 (30 s). */
  readonly timeoutHoldMs: number;
  /** Largest request body, bytes. Default 16384 (16 KiB). */
  readonly maxBodyBytes: number;
  /** Source of the rolls, uniform in [0, 1). Default Math.random; `seededRandom(seed)` for a repeatable run. */
  readonly random: () => number;
}

export interface ProviderStats {
  /** Distinct keys charged successfully (refunded ones included). */
  charges: number;
  /** Keys whose record is `declined`. */
  declined: number;
  /** Keys voided before any charge. */
  voided: number;
  /** Keys charged, then voided. */
  refunded: number;
  /** Requests to the /payments routes, whatever their answer. */
  requests: number;
  /** The most POST /payments any one key received (503-answered ones included). */
  chargeAttemptsByKeyMax: number;
  /** Sum of every successful charge, refunded ones included. */
  totalChargedCents: number;
  /** Sum of the refunded charges. */
  totalRefundedCents: number;
}

export interface PaymentProvider {
  /** Starts listening (port 0 picks a free one) and resolves with the bound port. */
  listen(port: number, host?: string): Promise<number>;
  /** Stops listening, drops held answers and open connections. */
  close(): Promise<void>;
  /** Changes latency or fault rates of the running provider (tests). */
  configure(changes: Partial<Omit<PaymentProviderOptions, 'maxBodyBytes' | 'random'>>): void;
  /** The counters of GET /stats. */
  stats(): ProviderStats;
}
