import type { ChargeRequest, PaymentRecord, ProviderStats } from './types.js';

export type ChargeOutcome =
  /** First charge of this key: `record` was just created. */
  | { readonly kind: 'recorded'; readonly answer: PaymentRecord }
  /** The key was seen before: the first result again (or `declined: voided` for a key voided first). */
  | { readonly kind: 'replayed'; readonly answer: PaymentRecord }
  /** The key was charged before with another amount. */
  | { readonly kind: 'conflict'; readonly answer: PaymentRecord };

const DECLINE_REASON = 'card_declined';

/**
 * The provider's records by idempotency key, with the counters of GET /stats. Kept in memory only: a real
 * provider persists them, which is what lets a client's retry after a crash still find its charge.
 */
export class PaymentLedger {
  private readonly records = new Map<string, PaymentRecord>();
  private readonly chargeAttempts = new Map<string, number>();
  private counters = emptyStats();

  get(key: string): PaymentRecord | undefined {
    return this.records.get(key);
  }

  countRequest(): void {
    this.counters.requests += 1;
  }

  /** Counted before the error roll: a 503-answered attempt is an attempt too, though nothing is recorded. */
  countChargeAttempt(key: string): void {
    const attempts = (this.chargeAttempts.get(key) ?? 0) + 1;
    this.chargeAttempts.set(key, attempts);
    if (attempts > this.counters.chargeAttemptsByKeyMax) this.counters.chargeAttemptsByKeyMax = attempts;
  }

  /** Charges `request` once per key; `rollDecline` is asked only for a key never seen. */
  charge(request: ChargeRequest, rollDecline: () => boolean, now: Date): ChargeOutcome {
    const existing = this.records.get(request.key);
    if (existing === undefined) {
      const declined = rollDecline();
      const record: PaymentRecord = {
        key: request.key,
        status: declined ? 'declined' : 'succeeded',
        amountCents: request.amountCents,
        orderId: request.orderId,
        chargedAt: now.toISOString(),
        ...(declined ? { declineReason: DECLINE_REASON } : {}),
      };
      this.records.set(request.key, record);
      if (declined) this.counters.declined += 1;
      else {
        this.counters.charges += 1;
        this.counters.totalChargedCents += request.amountCents;
      }
      return { kind: 'recorded', answer: record };
    }
    if (existing.status === 'voided') {
      // Voided before the charge arrived: the charge must never happen, whatever amount it carries.
      const answer: PaymentRecord = {
        key: request.key,
        status: 'declined',
        amountCents: request.amountCents,
        orderId: request.orderId,
        chargedAt: now.toISOString(),
        declineReason: 'voided',
      };
      return { kind: 'replayed', answer };
    }
    if (existing.amountCents !== request.amountCents) return { kind: 'conflict', answer: existing };
    return { kind: 'replayed', answer: existing };
  }

  /** Voids a key: unknown → `voided` (blocks a later charge), succeeded → `refunded`, otherwise unchanged. */
  void(key: string, now: Date): PaymentRecord {
    const existing = this.records.get(key);
    if (existing === undefined) {
      const record: PaymentRecord = { key, status: 'voided', voidedAt: now.toISOString() };
      this.records.set(key, record);
      this.counters.voided += 1;
      return record;
    }
    if (existing.status === 'succeeded') {
      existing.status = 'refunded';
      existing.voidedAt = now.toISOString();
      this.counters.refunded += 1;
      this.counters.totalRefundedCents += existing.amountCents ?? 0;
    }
    return existing;
  }

  stats(): ProviderStats {
    return { ...this.counters };
  }

  reset(): void {
    this.records.clear();
    this.chargeAttempts.clear();
    this.counters = emptyStats();
  }
}

function emptyStats(): ProviderStats {
  return {
    charges: 0,
    declined: 0,
    voided: 0,
    refunded: 0,
    requests: 0,
    chargeAttemptsByKeyMax: 0,
    totalChargedCents: 0,
    totalRefundedCents: 0,
  };
}
