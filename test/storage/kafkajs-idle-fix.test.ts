// KafkaJS 2.2.4's request queue kept a 1 ms timer loop running on every idle broker connection; the
// patch applied by src/storage/kafka.ts schedules a check only when something is pending or throttled, and
// times each request in flight with a timer of its own instead of a 100 ms interval per connection.
import { createRequire } from 'node:module';
import t from 'tap';
import { kafkaJsIdleLoopPatched } from '../../src/storage/kafka.js';
import { patchKafkaJsIdleLoop } from '../../src/storage/kafkajs-idle-fix.js';

interface Queue {
  enforceRequestTimeout: boolean;
  requestTimeout: number;
  inflight: Map<number, { sentAt: number; requestTimeout: number; timeoutRequest(): void }>;
  destroy(): void;
  scheduleRequestTimeoutCheck(): void;
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  checkPendingRequests(): void;
  scheduleCheckPendingRequests(): void;
}

const RequestQueue = createRequire(import.meta.url)('kafkajs/src/network/requestQueue/index.js') as {
  prototype: Queue;
};

/** A bare queue object using the (patched) prototype's methods. */
const queue = (fields: Partial<Queue>): Queue =>
  Object.assign(Object.create(RequestQueue.prototype) as Queue, {
    pending: [],
    throttledUntil: -1,
    throttleCheckTimeoutId: null,
    checkPendingRequests() {},
    ...fields,
  });

t.test('the installed KafkaJS is patched (idempotently)', async (t) => {
  t.equal(kafkaJsIdleLoopPatched, true);
  t.equal(patchKafkaJsIdleLoop(), true);
});

t.test('an idle queue schedules no timer', async (t) => {
  const q = queue({});
  q.scheduleCheckPendingRequests();
  t.equal(q.throttleCheckTimeoutId, null);
});

t.test('a pending request or a throttle still schedules its check', async (t) => {
  const pending = queue({ pending: [{}] });
  pending.scheduleCheckPendingRequests();
  t.not(pending.throttleCheckTimeoutId, null, 'pending: checked later');
  clearTimeout(pending.throttleCheckTimeoutId!);
  const throttled = queue({ throttledUntil: Date.now() + 60_000 });
  throttled.scheduleCheckPendingRequests();
  t.not(throttled.throttleCheckTimeoutId, null, 'throttled: checked when the throttle ends');
  clearTimeout(throttled.throttleCheckTimeoutId!);
});

t.test('a request in flight past its timeout is timed out by a timer of its own', async (t) => {
  let timedOut = 0;
  const q = queue({ enforceRequestTimeout: true, requestTimeout: 30, inflight: new Map() });
  t.teardown(() => q.destroy());
  q.scheduleRequestTimeoutCheck();
  q.inflight.set(1, { sentAt: Date.now(), requestTimeout: 30, timeoutRequest: () => (timedOut += 1) });
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.equal(timedOut, 1, 'the request timed out, once');
});

t.test('an answered request, an idle queue and a destroyed one leave no timer', async (t) => {
  let timedOut = 0;
  const request = { sentAt: Date.now(), requestTimeout: 30, timeoutRequest: () => (timedOut += 1) };
  const q = queue({ enforceRequestTimeout: true, requestTimeout: 30, inflight: new Map() });
  q.scheduleRequestTimeoutCheck();
  const handles = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const idle = handles();
  q.inflight.set(1, request);
  t.equal(handles(), idle + 1, 'a timer while the request is in flight');
  q.inflight.delete(1); // answered
  t.equal(handles(), idle, 'none once it is answered');
  q.inflight.set(2, request);
  q.destroy(); // the connection closed
  t.equal(handles(), idle, 'none after destroy');
  q.inflight.set(3, request); // destroyed: no longer timed (KafkaJS rejects what is left)
  t.equal(handles(), idle, 'none for a request of a destroyed queue');
  q.inflight.delete(3);
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.equal(timedOut, 0, 'nothing timed out');
});

t.test('a request already in flight when the check starts keeps what is left of its timeout', async (t) => {
  let timedOut = 0;
  const q = queue({
    enforceRequestTimeout: true,
    requestTimeout: 30,
    inflight: new Map([
      [1, { sentAt: Date.now() - 25, requestTimeout: 30, timeoutRequest: () => (timedOut += 1) }],
    ]),
  });
  t.teardown(() => q.destroy());
  q.scheduleRequestTimeoutCheck();
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(timedOut, 1, 'timed out ~5 ms after the start, not 30');
});
