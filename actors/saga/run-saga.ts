import type {
  PaymentPort,
  PaymentResult,
  SagaOrder,
  SagaResult,
  SettlePort,
  Settlement,
  StageObserver,
} from '../../src/domain/index.js';

export interface SagaDeps {
  payments: PaymentPort;
  settle: SettlePort;
  now(): number;
  sleep(ms: number): Promise<void>;
  /** True once the node is stopping: the saga leaves off between steps and is resumed by the next owner. */
  stopping(): boolean;
  log(event: string, detail: Record<string, unknown>): void;
  /** Stage latencies (metrics): payment (the payment step) and confirm_commit (a confirm settled). */
  stage?: StageObserver;
}

export class SagaInterrupted extends Error {
  override readonly name = 'SagaInterrupted';
}

const BACKOFF_START_MS = 50;
const BACKOFF_CAP_MS = 2_000;

/**
 * One purchase saga after its first two steps (reserve inventory, create order) committed in the
 * product's batch: process payment, then confirm, or compensate (cancel the order, release the stock).
 * Every step is idempotent: the payment key is the order id, so a retried or resumed charge can never
 * charge twice, and the settlement is version-checked on the saga row.
 *
 * `resumed` sagas (after a crash or a takeover) first ask the provider what happened to their key.
 */
export async function runSaga(order: SagaOrder, resumed: boolean, deps: SagaDeps): Promise<SagaResult> {
  const stage = deps.stage;
  const paying = stage === undefined ? 0 : performance.now();
  const payment = await decidePayment(order, resumed, deps);
  const paid = stage === undefined ? 0 : performance.now();
  stage?.('payment', (paid - paying) / 1000);
  const confirm = payment.status === 'succeeded';
  const settlement: Settlement = {
    orderId: order.orderId,
    productId: order.productId,
    outcome: confirm ? 'confirm' : 'cancel',
    quantity: order.quantity,
    unitPriceCents: order.unitPriceCents,
    sagaVersion: order.version,
    payment: {
      key: payment.key,
      status: payment.status,
      amountCents: payment.amountCents ?? amountOf(order),
      ...(payment.declineReason === undefined ? {} : { reason: payment.declineReason }),
      at: new Date(deps.now()).toISOString(),
    },
    ...(confirm ? {} : { reason: cancelReason(payment) }),
    requestId: order.requestId,
  };
  const result = await settle(settlement, deps);
  if (stage !== undefined && confirm && result.status === 'CONFIRMED')
    stage('confirm_commit', (performance.now() - paid) / 1000);
  return result;
}

const amountOf = (order: SagaOrder): number => order.quantity * order.unitPriceCents;

function cancelReason(payment: PaymentResult): string {
  if (payment.status === 'declined')
    return `payment declined${payment.declineReason ? `: ${payment.declineReason}` : ''}`;
  if (payment.status === 'refunded') return 'payment refunded: the saga passed its deadline';
  return 'payment voided: the saga passed its deadline';
}

/** Charges until the provider answers with a result; past the deadline, voids instead (and that must succeed). */
async function decidePayment(order: SagaOrder, resumed: boolean, deps: SagaDeps): Promise<PaymentResult> {
  let delay = BACKOFF_START_MS;
  let lookedUp = !resumed;
  for (let attempt = 1; ; attempt += 1) {
    if (deps.stopping()) throw new SagaInterrupted(`saga ${order.orderId} left off: node stopping`);
    try {
      if (!lookedUp) {
        const known = await deps.payments.lookup(order.paymentKey);
        lookedUp = true;
        if (known !== undefined) return known;
      }
      if (deps.now() >= order.deadline) return await deps.payments.void(order.paymentKey);
      return await deps.payments.charge({
        key: order.paymentKey,
        amountCents: amountOf(order),
        orderId: order.orderId,
      });
    } catch (err) {
      const retryable = (err as { retryable?: boolean }).retryable !== false;
      deps.log('payment step failed', {
        reqId: order.requestId,
        orderId: order.orderId,
        attempt,
        retryable,
        err: (err as Error).message,
      });
      // A non-retryable refusal (the key reused with another amount) can only be settled by cancelling.
      if (!retryable)
        return { key: order.paymentKey, status: 'declined', declineReason: (err as Error).message };
      await deps.sleep(Math.min(delay, Math.max(0, order.deadline - deps.now()) || delay));
      delay = Math.min(delay * 2, BACKOFF_CAP_MS);
    }
  }
}

/** Persists the decision; retried until the product's writer takes it (it may be moving or restarting). */
async function settle(settlement: Settlement, deps: SagaDeps): Promise<SagaResult> {
  let delay = BACKOFF_START_MS;
  const reason = settlement.reason === undefined ? {} : { reason: settlement.reason };
  for (;;) {
    const outcome = await deps.settle(settlement);
    if (outcome.kind === 'settled') return { status: outcome.status, ...reason };
    if (outcome.kind === 'already') {
      if (outcome.status !== 'PENDING') return { status: outcome.status };
      // The saga row moved on while the order stayed pending: not ours to fix here; recovery will.
      throw new SagaInterrupted(`saga ${settlement.orderId} row changed without settling`);
    }
    if (deps.stopping())
      throw new SagaInterrupted(`saga ${settlement.orderId} left off before settling: node stopping`);
    deps.log('settlement not taken; retrying', {
      reqId: settlement.requestId,
      orderId: settlement.orderId,
      outcome,
    });
    await deps.sleep(delay);
    delay = Math.min(delay * 2, BACKOFF_CAP_MS);
  }
}
