// The saga runner with its ports in memory (test/helpers/fake-ports.ts) and a fake clock: each path of the
// payment and settlement steps in milliseconds. test/saga/declines.test.ts and test/faults run it for real.
import t from 'tap';
import { runSaga, SagaInterrupted, type SagaDeps } from '../../actors/saga/run-saga.js';
import type { SagaOrder } from '../../src/domain/index.js';
import { FakePaymentError, FakePayments, recordingSettle } from '../helpers/fake-ports.js';

const NOW = Date.parse('2026-12-05T00:00:00Z');

function order(extra: Partial<SagaOrder> = {}): SagaOrder {
  return {
    orderId: 'o1',
    productId: 7,
    userId: 'u1',
    quantity: 3,
    unitPriceCents: 250,
    version: 0,
    paymentKey: 'o1',
    deadline: NOW + 30_000,
    requestId: 'req-1',
    ...extra,
  };
}

/** Deps over a fake clock: `sleep` advances it and records each pause. */
function deps(payments: FakePayments, settle = recordingSettle(), extra: Partial<SagaDeps> = {}) {
  let now = NOW;
  const sleeps: number[] = [];
  const logged: string[] = [];
  const d: SagaDeps = {
    payments,
    settle: settle.settle,
    now: () => now,
    sleep: async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
    stopping: () => false,
    log: (event) => logged.push(event),
    ...extra,
  };
  return { deps: d, sleeps, logged, settlements: settle.settlements, advance: (ms: number) => (now += ms) };
}

t.test('a successful charge confirms the order with the amount charged, once', async (t) => {
  const payments = new FakePayments();
  const run = deps(payments);
  t.same(await runSaga(order(), false, run.deps), { status: 'CONFIRMED' });
  t.same(payments.calls, [{ op: 'charge', key: 'o1' }], 'one charge under the order id, no lookup');
  t.equal(run.settlements.length, 1);
  t.match(run.settlements[0], {
    orderId: 'o1',
    productId: 7,
    outcome: 'confirm',
    quantity: 3,
    sagaVersion: 0,
    payment: { key: 'o1', status: 'succeeded', amountCents: 750, at: new Date(NOW).toISOString() },
    requestId: 'req-1',
  });
  t.notOk('reason' in run.settlements[0]!, 'a confirmation has no reason');
});

t.test('a declined charge cancels the order, the decline reason in the cancellation', async (t) => {
  const run = deps(new FakePayments(() => 'declined'));
  t.same(await runSaga(order(), false, run.deps), {
    status: 'CANCELLED',
    reason: 'payment declined: insufficient funds',
  });
  t.match(run.settlements[0], {
    outcome: 'cancel',
    payment: { status: 'declined', reason: 'insufficient funds' },
  });
});

t.test('retryable payment failures back off 50, 100, 200 ms... then the charge goes through', async (t) => {
  const payments = new FakePayments();
  payments.failures = [1, 2, 3, 4, 5, 6, 7].map((i) => new FakePaymentError(`timeout ${i}`, true));
  const run = deps(payments);
  t.same(await runSaga(order(), false, run.deps), { status: 'CONFIRMED' });
  t.equal(payments.count('charge'), 8, 'seven failures, then the eighth charge answers');
  t.same(run.sleeps, [50, 100, 200, 400, 800, 1_600, 2_000], 'doubling, capped at 2 s');
  t.equal(run.logged.length, 7, 'each failure logged');
});

t.test('a non-retryable refusal cancels without charging again', async (t) => {
  const payments = new FakePayments();
  payments.failures = [new FakePaymentError('key reused with another amount', false)];
  const run = deps(payments);
  t.same(await runSaga(order(), false, run.deps), {
    status: 'CANCELLED',
    reason: 'payment declined: key reused with another amount',
  });
  t.equal(payments.count('charge'), 1);
});

t.test('past its deadline a saga voids instead of charging, and cancels', async (t) => {
  const payments = new FakePayments();
  const run = deps(payments);
  t.same(await runSaga(order({ deadline: NOW - 1 }), false, run.deps), {
    status: 'CANCELLED',
    reason: 'payment voided: the saga passed its deadline',
  });
  t.same(payments.calls, [{ op: 'void', key: 'o1' }]);
});

t.test('a failing provider keeps being retried until the deadline, then the charge is voided', async (t) => {
  const payments = new FakePayments();
  // Seven failed charges take 50 + 100 + ... + 2,000 = 5,150 ms of backoff: past the 5 s deadline.
  payments.failures = Array.from({ length: 7 }, () => new FakePaymentError('unavailable', true));
  const run = deps(payments);
  t.same(await runSaga(order({ deadline: NOW + 5_000 }), false, run.deps), {
    status: 'CANCELLED',
    reason: 'payment voided: the saga passed its deadline',
  });
  t.equal(payments.count('charge'), 7, 'charged until the deadline');
  t.equal(payments.count('void'), 1, 'then voided once');
  t.ok(run.sleeps.reduce((a, b) => a + b, 0) >= 5_000, 'it waited out the deadline');
});

t.test('a resumed saga asks the provider first and does not charge a key it already knows', async (t) => {
  const payments = new FakePayments();
  payments.results.set('o1', { key: 'o1', status: 'succeeded', amountCents: 750 });
  const run = deps(payments);
  t.same(await runSaga(order(), true, run.deps), { status: 'CONFIRMED' });
  t.same(payments.calls, [{ op: 'lookup', key: 'o1' }], 'looked up, never charged');

  const fresh = new FakePayments();
  t.same(await runSaga(order(), true, deps(fresh).deps), { status: 'CONFIRMED' });
  t.same(
    fresh.calls.map((c) => c.op),
    ['lookup', 'charge'],
    'an unknown key is charged after the lookup',
  );
});

t.test('a settlement not taken is retried; one already made elsewhere is the answer', async (t) => {
  const refusedTwice = recordingSettle((s, attempt) =>
    attempt <= 2
      ? { kind: 'refused', reason: 'OWNERSHIP_LOST', message: 'moving' }
      : { kind: 'settled', status: s.outcome === 'confirm' ? 'CONFIRMED' : 'CANCELLED' },
  );
  const run = deps(new FakePayments(), refusedTwice);
  t.same(await runSaga(order(), false, run.deps), { status: 'CONFIRMED' });
  t.equal(refusedTwice.settlements.length, 3, 'settled on the third attempt');
  t.same(run.sleeps, [50, 100]);

  const already = recordingSettle(() => ({ kind: 'already', status: 'CANCELLED' }));
  t.same(await runSaga(order(), false, deps(new FakePayments(), already).deps), { status: 'CANCELLED' });
});

t.test('a saga leaves off (to be resumed) when its node stops or its row changed unsettled', async (t) => {
  const stopping = deps(new FakePayments(), recordingSettle(), { stopping: () => true });
  await t.rejects(
    runSaga(order(), false, stopping.deps),
    SagaInterrupted,
    'stopping: left off before paying',
  );
  t.equal(stopping.settlements.length, 0, 'nothing settled');

  const pending = recordingSettle(() => ({ kind: 'already', status: 'PENDING' }));
  await t.rejects(runSaga(order(), false, deps(new FakePayments(), pending).deps), SagaInterrupted);
});
