import type { ProductId, PurchaseOutcome, PurchaseRequest } from '../../src/domain/index.js';

/** How many answered idempotency keys an actor remembers (the database keeps successes forever). */
export const RECENT_KEYS_LIMIT = 20_000;

export const idempotencyKeyOf = (userId: string, key: string): string => `${userId}\u0000${key}`;

/**
 * The answers a product's actor gave lately, by idempotency key (`idempotencyKeyOf`): a repeated request gets
 * its first answer again without I/O. The oldest are forgotten past RECENT_KEYS_LIMIT; the database still
 * knows every order (a duplicate then comes back from the batch write).
 */
export class RecentAnswers {
  private readonly answers = new Map<
    string,
    { productId: ProductId; quantity: number; outcome: PurchaseOutcome }
  >();

  /**
   * The answer to `request` if its key was answered: the first answer again (a created order as replayed)
   * for the same purchase, IDEMPOTENCY_KEY_REUSED for another one; undefined for a key not seen.
   */
  answerTo(
    key: string,
    request: Pick<PurchaseRequest, 'productId' | 'quantity' | 'idempotencyKey'>,
  ): PurchaseOutcome | undefined {
    const seen = this.answers.get(key);
    if (seen === undefined) return undefined;
    const same = seen.productId === request.productId && seen.quantity === request.quantity;
    return same ? replayOf(seen.outcome) : keyReused(request.idempotencyKey);
  }

  remember(key: string, productId: ProductId, quantity: number, outcome: PurchaseOutcome): void {
    if (this.answers.size >= RECENT_KEYS_LIMIT) {
      const oldest = this.answers.keys().next().value;
      if (oldest !== undefined) this.answers.delete(oldest);
    }
    this.answers.set(key, { productId, quantity, outcome });
  }
}

function replayOf(outcome: PurchaseOutcome): PurchaseOutcome {
  return outcome.kind === 'created' ? { ...outcome, kind: 'replayed' } : outcome;
}

/** The refusal of a key already used for a different purchase. */
export function keyReused(key: string): PurchaseOutcome {
  return {
    kind: 'refused',
    reason: 'IDEMPOTENCY_KEY_REUSED',
    message: `Idempotency-Key ${JSON.stringify(key)} was already used for a different purchase`,
  };
}
