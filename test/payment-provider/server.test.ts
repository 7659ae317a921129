// The simulated payment provider over real HTTP: idempotency, injected faults, voids, validation, stats.
import t from 'tap';
import { seededRandom } from '../../src/payment-provider/random.js';
import { call, startProvider } from '../helpers/payment-provider.js';

const charge = (key: string, amountCents = 1250, orderId: string | number = 'order-1') => ({
  key,
  amountCents,
  orderId,
});

t.test('one key is charged once, also when two charges race', async (t) => {
  const { base, provider } = await startProvider(t, { latencyMs: 5 });
  const [first, second] = await Promise.all([
    call(base, 'POST', '/payments', charge('k-race')),
    call(base, 'POST', '/payments', charge('k-race')),
  ]);
  t.equal(first.status, 200);
  t.equal(second.status, 200);
  t.match(first.body, { key: 'k-race', status: 'succeeded', amountCents: 1250, chargedAt: String });
  t.same(second.body, first.body, 'the second gets the first recorded result');
  const again = await call(base, 'POST', '/payments', charge('k-race'));
  t.same(again.body, first.body, 'a later retry too');
  t.match(provider.stats(), { charges: 1, totalChargedCents: 1250, chargeAttemptsByKeyMax: 3 });

  const reused = await call(base, 'POST', '/payments', charge('k-race', 999));
  t.equal(reused.status, 409);
  t.equal(reused.body.error.code, 'PAYMENT_KEY_REUSED');
  t.equal(provider.stats().charges, 1, 'a reused key with another amount charges nothing');
});

t.test('decline rate 1: declined is an answer, recorded once', async (t) => {
  const { base, provider } = await startProvider(t, { declineRate: 1 });
  const first = await call(base, 'POST', '/payments', charge('k-decline'));
  t.equal(first.status, 200);
  t.match(first.body, { key: 'k-decline', status: 'declined', declineReason: String });
  provider.configure({ declineRate: 0 });
  const retry = await call(base, 'POST', '/payments', charge('k-decline'));
  t.same(retry.body, first.body, 'a retry does not roll again');
  t.match(provider.stats(), { charges: 0, declined: 1, totalChargedCents: 0 });
});

t.test('error rate 1: 503 and nothing recorded; the retry rolls afresh', async (t) => {
  const { base, provider } = await startProvider(t, { errorRate: 1 });
  const failed = await call(base, 'POST', '/payments', charge('k-error'));
  t.equal(failed.status, 503);
  t.equal(failed.body.error.code, 'PROVIDER_UNAVAILABLE');
  t.match(provider.stats(), { charges: 0, declined: 0, chargeAttemptsByKeyMax: 1 });
  provider.configure({ errorRate: 0 });
  t.equal((await call(base, 'GET', '/payments/k-error')).status, 404, 'nothing was recorded');
  const retried = await call(base, 'POST', '/payments', charge('k-error'));
  t.equal(retried.body.status, 'succeeded');
  t.match(provider.stats(), { charges: 1, chargeAttemptsByKeyMax: 2 });
});

t.test('timeout rate 1: recorded at once, answered after the hold', async (t) => {
  const { base, provider } = await startProvider(t, { timeoutRate: 1, timeoutHoldMs: 300 });
  const started = Date.now();
  const late = call(base, 'POST', '/payments', charge('k-timeout'));
  await new Promise((resolve) => setTimeout(resolve, 50));
  const seen = await call(base, 'GET', '/payments/k-timeout');
  t.equal(seen.status, 200, 'the charge is recorded while its answer is held');
  t.equal(seen.body.status, 'succeeded');
  const retry = await call(base, 'POST', '/payments', charge('k-timeout'));
  t.ok(Date.now() - started < 250, 'a retry with the same key is answered without the hold');
  t.same(retry.body, seen.body);
  const answer = await late;
  t.ok(Date.now() - started >= 290, `the first answer came after the hold (${Date.now() - started} ms)`);
  t.same(answer.body, seen.body);
  t.equal(provider.stats().charges, 1);
});

t.test('void before a charge blocks it; void after refunds; a decline stays declined', async (t) => {
  const { base, provider } = await startProvider(t);
  const early = await call(base, 'POST', '/payments/k-void-first/void');
  t.match(early, { status: 200, body: { key: 'k-void-first', status: 'voided' } });
  const blocked = await call(base, 'POST', '/payments', charge('k-void-first'));
  t.match(blocked.body, { status: 'declined', declineReason: 'voided' });
  t.equal((await call(base, 'GET', '/payments/k-void-first')).body.status, 'voided');

  await call(base, 'POST', '/payments', charge('k-refund', 500));
  const refunded = await call(base, 'POST', '/payments/k-refund/void');
  t.match(refunded.body, { status: 'refunded', amountCents: 500 });
  const again = await call(base, 'POST', '/payments/k-refund/void');
  t.same(again.body, refunded.body, 'void is idempotent');

  provider.configure({ declineRate: 1 });
  await call(base, 'POST', '/payments', charge('k-declined'));
  t.equal((await call(base, 'POST', '/payments/k-declined/void')).body.status, 'declined');
  t.match(provider.stats(), { charges: 1, voided: 1, refunded: 1, declined: 1, totalRefundedCents: 500 });
});

t.test('bad requests are 400 with the field named', async (t) => {
  const { base, provider } = await startProvider(t);
  const cases = [
    [{ amountCents: 100, orderId: 'o' }, 'key'],
    [{ key: '', amountCents: 100, orderId: 'o' }, 'key'],
    [{ key: 'k', amountCents: 10.5, orderId: 'o' }, 'amountCents'],
    [{ key: 'k', amountCents: '100', orderId: 'o' }, 'amountCents'],
    [{ key: 'k', amountCents: 0, orderId: 'o' }, 'amountCents'],
    [{ key: 'k', amountCents: 100 }, 'orderId'],
  ] as const;
  for (const [body, field] of cases) {
    const answer = await call(base, 'POST', '/payments', body);
    t.equal(answer.status, 400, JSON.stringify(body));
    t.match(answer.body.error, { code: 'VALIDATION_FAILED', field });
  }
  const malformed = await fetch(`${base}/payments`, { method: 'POST', body: '{"key":' });
  t.equal(malformed.status, 400);
  t.equal(((await malformed.json()) as any).error.code, 'MALFORMED_JSON');
  const tooLarge = await fetch(`${base}/payments`, { method: 'POST', body: 'x'.repeat(64 * 1024) });
  t.equal(tooLarge.status, 413);
  t.equal((await call(base, 'GET', '/payments/unknown')).body.error.code, 'PAYMENT_NOT_FOUND');
  t.equal((await call(base, 'GET', '/elsewhere')).status, 404);
  t.equal((await call(base, 'GET', '/payments')).status, 405);
  t.equal(provider.stats().charges, 0);
});

t.test('stats count requests; admin reset clears everything', async (t) => {
  const { base } = await startProvider(t);
  await call(base, 'POST', '/payments', charge('s-1', 100));
  await call(base, 'POST', '/payments', charge('s-2', 200));
  await call(base, 'POST', '/payments', charge('s-2', 200));
  await call(base, 'GET', '/payments/s-1');
  const stats = await call(base, 'GET', '/stats');
  t.same(stats.body, {
    charges: 2,
    declined: 0,
    voided: 0,
    refunded: 0,
    requests: 4,
    chargeAttemptsByKeyMax: 2,
    totalChargedCents: 300,
    totalRefundedCents: 0,
  });
  t.equal((await call(base, 'POST', '/admin/reset')).status, 200);
  t.match((await call(base, 'GET', '/stats')).body, { charges: 0, requests: 0, chargeAttemptsByKeyMax: 0 });
  t.equal((await call(base, 'GET', '/payments/s-1')).status, 404);
});

t.test('one seed gives one sequence of outcomes', async (t) => {
  const outcomes = async (seed: number): Promise<string[]> => {
    const { base } = await startProvider(t, { declineRate: 0.5, errorRate: 0.3, random: seededRandom(seed) });
    const out: string[] = [];
    for (let i = 0; i < 30; i += 1) {
      const answer = await call(base, 'POST', '/payments', charge(`seed-${i}`));
      out.push(answer.status === 200 ? answer.body.status : String(answer.status));
    }
    return out;
  };
  const first = await outcomes(42);
  t.same(await outcomes(42), first);
  t.ok(first.includes('succeeded') && first.includes('declined') && first.includes('503'), first.join(','));
});
