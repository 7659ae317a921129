import t from 'tap';
import { ProviderSettingsError, readProviderSettings } from '../../src/payment-provider/settings.js';

t.test('defaults: the local stack port, 5 ms latency, no faults', async (t) => {
  t.same(readProviderSettings({}), {
    host: '127.0.0.1',
    port: 18090,
    latencyMs: 5,
    declineRate: 0,
    errorRate: 0,
    timeoutRate: 0,
    timeoutHoldMs: 30_000,
    seed: undefined,
  });
});

t.test('values are parsed', async (t) => {
  const settings = readProviderSettings({
    PAYMENT_PORT: '0',
    PAYMENT_LATENCY_MS: '20',
    PAYMENT_DECLINE_RATE: '0.1',
    PAYMENT_ERROR_RATE: '.05',
    PAYMENT_TIMEOUT_RATE: '1',
    PAYMENT_TIMEOUT_HOLD_MS: '2000',
    PAYMENT_SEED: '7',
    PAYMENT_HOST: '0.0.0.0',
  });
  t.match(settings, { host: '0.0.0.0', port: 0, latencyMs: 20, declineRate: 0.1, errorRate: 0.05 });
  t.match(settings, { timeoutRate: 1, timeoutHoldMs: 2000, seed: 7 });
});

t.test('every bad value is named in one error', async (t) => {
  const error = (() => {
    try {
      readProviderSettings({
        PAYMENT_PORT: '70000',
        PAYMENT_LATENCY_MS: '-1',
        PAYMENT_DECLINE_RATE: '1.5',
        PAYMENT_ERROR_RATE: 'often',
        PAYMENT_TIMEOUT_RATE: '-0.1',
        PAYMENT_TIMEOUT_HOLD_MS: '1e3',
        PAYMENT_SEED: 'abc',
      });
    } catch (caught) {
      return caught;
    }
  })();
  t.ok(error instanceof ProviderSettingsError);
  const problems = (error as ProviderSettingsError).problems.join('\n');
  for (const name of [
    'PAYMENT_PORT',
    'PAYMENT_LATENCY_MS',
    'PAYMENT_DECLINE_RATE',
    'PAYMENT_ERROR_RATE',
    'PAYMENT_TIMEOUT_RATE',
    'PAYMENT_TIMEOUT_HOLD_MS',
    'PAYMENT_SEED',
  ]) {
    t.match(problems, name);
  }
});
