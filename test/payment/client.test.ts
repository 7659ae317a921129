// PaymentClient against a provider of the test's own: retries, per-call timeout, declines, circuit breaker.
import t, { type Test } from 'tap';
import {
  PaymentClient,
  PaymentError,
  type BreakerState,
  type PaymentClientOptions,
} from '../../src/payment/index.js';
import { scripted, startProvider } from '../helpers/payment-provider.js';

function client(t: Test, base: string, options: Partial<PaymentClientOptions> = {}): PaymentClient {
  const created = new PaymentClient({ url: base, timeoutMs: 500, retries: 3, ...options });
  t.teardown(() => created.close());
  return created;
}

const charge = (key: string) => ({ key, amountCents: 700, orderId: 42 });

t.test('a 503 is retried with the same key, then the charge succeeds', async (t) => {
  const { base, provider } = await startProvider(t, { errorRate: 0.5, random: scripted([0]) });
  const result = await client(t, base).charge(charge('c-retry'));
  t.same(result, { status: 'succeeded', key: 'c-retry', amountCents: 700 });
  t.match(provider.stats(), { charges: 1, chargeAttemptsByKeyMax: 2 });
});

t.test('a decline is returned, never retried', async (t) => {
  const { base, provider } = await startProvider(t, { declineRate: 1 });
  const result = await client(t, base).charge(charge('c-decline'));
  t.match(result, { status: 'declined', key: 'c-decline', declineReason: String });
  t.match(provider.stats(), { requests: 1, declined: 1, charges: 0 });
});

t.test('a timed-out charge is retried with the same key and returns the recorded result', async (t) => {
  const { base, provider } = await startProvider(t, { timeoutRate: 1, timeoutHoldMs: 5_000 });
  const started = Date.now();
  const result = await client(t, base, { timeoutMs: 100 }).charge(charge('c-timeout'));
  t.equal(result.status, 'succeeded');
  t.ok(Date.now() - started < 1_000, 'answered by the retry, not after the hold');
  t.match(provider.stats(), { charges: 1, chargeAttemptsByKeyMax: 2, totalChargedCents: 700 });
});

t.test('retries stop at the configured number', async (t) => {
  const { base, provider } = await startProvider(t, { errorRate: 1 });
  const payments = client(t, base, { retries: 2, retryBaseDelayMs: 1 });
  await t.rejects(payments.charge(charge('c-exhausted')), {
    name: 'PaymentError',
    code: 'PAYMENT_UNAVAILABLE',
    retryable: true,
    status: 503,
    attempts: 3,
  });
  t.equal(provider.stats().chargeAttemptsByKeyMax, 3, '1 attempt + 2 retries');

  const none = client(t, base, { retries: 0 });
  await t.rejects(none.charge(charge('c-no-retry')), { code: 'PAYMENT_UNAVAILABLE', attempts: 1 });
  t.equal(provider.stats().requests, 4);
});

t.test('no answer within the timeout on every attempt → PAYMENT_TIMEOUT', async (t) => {
  const { base } = await startProvider(t, { latencyMs: 300 });
  const payments = client(t, base, { timeoutMs: 50, retries: 1, retryBaseDelayMs: 1 });
  await t.rejects(payments.lookup('c-slow'), { code: 'PAYMENT_TIMEOUT', retryable: true, attempts: 2 });
});

t.test('calls beyond the connections wait their turn: their timeout starts with their attempt', async (t) => {
  // 20 calls on 4 connections, 300 ms each: the last start after 1.2 s, past the 500 ms timeout, and must
  // not be timed out for waiting (no retries here, so one such timeout would fail its call).
  const { base, provider } = await startProvider(t, { latencyMs: 300 });
  const payments = client(t, base, { retries: 0, connections: 4, breakerVolumeThreshold: 4 });
  const results = await Promise.allSettled(
    Array.from({ length: 20 }, (_, i) => payments.charge(charge(`c-queued-${i}`))),
  );
  const failed = results.filter((r) => r.status === 'rejected');
  t.same(
    failed.map((r) => (r.reason as PaymentError).code),
    [],
    'no call failed (timed from before their turn, 16 of the 20 timed out)',
  );
  t.equal(payments.breakerState(), 'closed');
  t.match(provider.stats(), { requests: 20, charges: 20 });
});

t.test('a refused request is not retried: PAYMENT_REJECTED, not retryable', async (t) => {
  const { base, provider } = await startProvider(t);
  const payments = client(t, base);
  await payments.charge(charge('c-reused'));
  const error = await payments.charge({ ...charge('c-reused'), amountCents: 1 }).catch((e: unknown) => e);
  t.ok(error instanceof PaymentError);
  t.match(error, { code: 'PAYMENT_REJECTED', retryable: false, status: 409, attempts: 1 });
  t.equal(provider.stats().chargeAttemptsByKeyMax, 2);
});

t.test('an unreachable provider → PAYMENT_UNAVAILABLE naming PAYMENT_URL', async (t) => {
  const { base, provider } = await startProvider(t);
  await provider.close();
  const payments = client(t, base, { retries: 1, retryBaseDelayMs: 1 });
  await t.rejects(payments.charge(charge('c-down')), {
    code: 'PAYMENT_UNAVAILABLE',
    retryable: true,
    attempts: 2,
    message: /PAYMENT_URL/,
  });
});

t.test('lookup and void', async (t) => {
  const { base } = await startProvider(t);
  const payments = client(t, base);
  t.equal(await payments.lookup('c-unknown key/é'), undefined, 'an unknown key is undefined');
  t.same(await payments.void('c-unknown key/é'), { status: 'voided', key: 'c-unknown key/é' });
  t.match(await payments.charge(charge('c-unknown key/é')), { status: 'declined', declineReason: 'voided' });
  await payments.charge(charge('c-refund'));
  t.match(await payments.lookup('c-refund'), { status: 'succeeded', amountCents: 700 });
  t.match(await payments.void('c-refund'), { status: 'refunded', amountCents: 700 });
});

t.test(
  'the breaker opens after repeated failures, fails fast, and closes after the reset timeout',
  async (t) => {
    const { base, provider } = await startProvider(t, { errorRate: 1 });
    const states: BreakerState[] = [];
    const payments = client(t, base, {
      retries: 0,
      breakerVolumeThreshold: 4,
      breakerErrorThresholdPercentage: 50,
      breakerResetTimeoutMs: 300,
      onBreakerStateChange: (state) => states.push(state),
    });
    for (let i = 0; i < 4; i += 1) {
      await t.rejects(payments.charge(charge(`c-breaker-${i}`)), { code: 'PAYMENT_UNAVAILABLE' });
    }
    t.equal(payments.breakerState(), 'open');
    const requestsWhenOpened = provider.stats().requests;

    const started = performance.now();
    await t.rejects(payments.charge(charge('c-breaker-open')), {
      code: 'PAYMENT_CIRCUIT_OPEN',
      retryable: true,
      attempts: 1,
    });
    const elapsed = performance.now() - started;
    t.ok(elapsed < 50, `failed fast (${elapsed.toFixed(1)} ms)`);
    t.equal(provider.stats().requests, requestsWhenOpened, 'no request reached the provider');

    // A failing trial while half-open opens the circuit again.
    await new Promise((resolve) => setTimeout(resolve, 350));
    t.equal(payments.breakerState(), 'half-open');
    await t.rejects(payments.charge(charge('c-breaker-trial')), { code: 'PAYMENT_UNAVAILABLE' });
    t.equal(payments.breakerState(), 'open');

    provider.configure({ errorRate: 0 });
    await new Promise((resolve) => setTimeout(resolve, 350));
    t.equal(payments.breakerState(), 'half-open');
    t.match(await payments.charge(charge('c-breaker-trial')), { status: 'succeeded' });
    t.equal(payments.breakerState(), 'closed');
    t.same(states, ['open', 'half-open', 'open', 'half-open', 'closed']);
  },
);

t.test(
  'failures older than the breaker window no longer count (the window turns without a timer)',
  async (t) => {
    const { base } = await startProvider(t, { errorRate: 1 });
    const payments = client(t, base, { retries: 0, breakerVolumeThreshold: 4, breakerWindowMs: 200 });
    for (let i = 0; i < 3; i += 1)
      await t.rejects(payments.charge(charge(`c-old-${i}`)), { code: 'PAYMENT_UNAVAILABLE' });
    t.equal(payments.breakerState(), 'closed', 'under the volume threshold');
    await new Promise((resolve) => setTimeout(resolve, 300)); // the window (200 ms) passes
    for (let i = 0; i < 3; i += 1)
      await t.rejects(payments.charge(charge(`c-new-${i}`)), { code: 'PAYMENT_UNAVAILABLE' });
    t.equal(payments.breakerState(), 'closed', 'the first three left the window: 3 of 4 needed');
    await t.rejects(payments.charge(charge('c-new-3')), { code: 'PAYMENT_UNAVAILABLE' });
    t.equal(payments.breakerState(), 'open', 'four failures within the window open it');
  },
);

t.test('a 4xx answer does not count against the breaker', async (t) => {
  const { base } = await startProvider(t);
  const payments = client(t, base, { retries: 0, breakerVolumeThreshold: 2 });
  for (let i = 0; i < 5; i += 1) {
    t.equal(await payments.lookup(`c-missing-${i}`), undefined);
  }
  await payments.charge(charge('c-409'));
  for (let i = 0; i < 3; i += 1) {
    await t.rejects(payments.charge({ ...charge('c-409'), amountCents: 1 }), { code: 'PAYMENT_REJECTED' });
  }
  t.equal(payments.breakerState(), 'closed');
});

t.test('bad options are refused at construction', async (t) => {
  t.throws(() => new PaymentClient({ url: 'http://127.0.0.1:1', timeoutMs: 0 }), RangeError);
  t.throws(() => new PaymentClient({ url: 'http://127.0.0.1:1', retries: -1 }), RangeError);
  t.throws(() => new PaymentClient({ url: 'not a url' }), TypeError);
});
