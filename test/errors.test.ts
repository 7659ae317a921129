import t from 'tap';
import { AppError, ERROR_CODES, toAppError } from '../src/errors.js';

t.test('an AppError takes status and retryability from the registry', async (t) => {
  const err = new AppError('OVERLOADED', 'mailbox full', { retryAfterSeconds: 1 });
  t.equal(err.status, 503);
  t.equal(err.retryable, true);
  t.same(err.toBody(), { error: { code: 'OVERLOADED', message: 'mailbox full', retryable: true } });
  const bad = new AppError('VALIDATION_FAILED', 'quantity must be an integer', { field: 'quantity' });
  t.same(bad.toBody(), {
    error: {
      code: 'VALIDATION_FAILED',
      message: 'quantity must be an integer',
      field: 'quantity',
      retryable: false,
    },
  });
});

t.test('unknown faults become INTERNAL without leaking their message', async (t) => {
  const err = toAppError(new Error('ER_ACCESS_DENIED for user root'));
  t.equal(err.code, 'INTERNAL');
  t.equal(err.status, 500);
  t.notMatch(err.message, 'root');
});

t.test('every status in the registry is an HTTP error status', async (t) => {
  for (const [code, { status }] of Object.entries(ERROR_CODES)) t.ok(status >= 400 && status < 600, code);
});

t.test('a lost or refused server connection becomes a retryable 503, not a 500', async (t) => {
  for (const code of [
    'ECONNRESET',
    'ECONNREFUSED',
    'PROTOCOL_CONNECTION_LOST',
    'ER_OPTION_PREVENTS_STATEMENT',
  ]) {
    const err = toAppError(Object.assign(new Error(`read ${code}`), { code }));
    t.equal(err.code, 'DEPENDENCY_UNAVAILABLE', `${code}: DEPENDENCY_UNAVAILABLE`);
    t.equal(err.status, 503);
    t.equal(err.retryAfterSeconds, 1, 'with Retry-After');
    t.notMatch(err.message, code, 'without the driver message');
  }
  t.equal(toAppError(Object.assign(new Error('dup'), { code: 'ER_DUP_ENTRY' })).code, 'INTERNAL');
  // mysql2's error for a query on a pooled connection whose server died: no code, only `fatal`.
  const closed = Object.assign(new Error("Can't add new command when connection is in closed state"), {
    fatal: true,
  });
  t.equal(toAppError(closed).code, 'DEPENDENCY_UNAVAILABLE', 'a fatal mysql2 error without a code: 503');
  t.equal(toAppError(new Error('no code, not fatal')).code, 'INTERNAL');
});
