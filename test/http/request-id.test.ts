// Request ids (README "Logs"): which X-Request-Id values are taken as they are, which are replaced, and
// the ids made here. Pure unit test (no servers).
import t from 'tap';
import { MAX_REQUEST_ID_LENGTH, requestIdMaker, saneRequestId } from '../../src/http/request-id.js';

t.test('a sane X-Request-Id is taken as it is', async (t) => {
  for (const id of [
    'abc-123',
    '0190f3c4-7d2a-7b3e-9c1d-2f4a5b6c7d8e', // UUID
    '01J9ZQ3V8K4M2N7P6R5S4T3W2X', // ULID
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // W3C traceparent
    'aGVsbG8=/+_.:@',
    'x'.repeat(MAX_REQUEST_ID_LENGTH),
  ])
    t.equal(saneRequestId(id), id, id);
});

t.test(
  'anything else is refused (the server then makes one): too long, empty, unsafe characters',
  async (t) => {
    for (const id of [
      undefined,
      '',
      'x'.repeat(MAX_REQUEST_ID_LENGTH + 1),
      'bad id',
      'a,b',
      'a"b',
      'a\\b',
      '{"json":1}',
      'line\nbreak',
      'tab\there',
      'émile',
      '<script>',
    ])
      t.equal(saneRequestId(id), undefined, JSON.stringify(id));
  },
);

t.test('made ids: sane, unique, one prefix per maker, distinct between makers', async (t) => {
  const a = requestIdMaker();
  const b = requestIdMaker();
  const made = Array.from({ length: 1_000 }, () => a());
  t.equal(new Set(made).size, made.length, 'unique');
  t.ok(
    made.every((id) => saneRequestId(id) === id),
    'each passes the rules it would be checked by',
  );
  t.match(made[0], /^[0-9a-z]+-1$/);
  t.not(b().split('-')[0], made[0]!.split('-')[0], 'another process start, another prefix');
});
