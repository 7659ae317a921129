// KafkaJS 2.2.4's request queue kept a 1 ms timer loop running on every idle broker connection; the
// patch applied by src/storage/kafka.ts schedules a check only when something is pending or throttled.
import { createRequire } from 'node:module';
import t from 'tap';
import { kafkaJsIdleLoopPatched } from '../../src/storage/kafka.js';
import { patchKafkaJsIdleLoop } from '../../src/storage/kafkajs-idle-fix.js';

interface Queue {
  enforceRequestTimeout: boolean;
  requestTimeout: number;
  requestTimeoutIntervalId: NodeJS.Timeout | undefined;
  inflight: Map<number, { sentAt: number; requestTimeout: number; timeoutRequest(): void }>;
  isConnected(): boolean;
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

t.test('requests past their timeout are still timed out by the (coarser) check', async (t) => {
  let timedOut = 0;
  const q = queue({
    enforceRequestTimeout: true,
    requestTimeout: 30,
    isConnected: () => true,
    inflight: new Map([
      [1, { sentAt: Date.now(), requestTimeout: 30, timeoutRequest: () => (timedOut += 1) }],
    ]),
  });
  t.teardown(() => q.destroy());
  q.scheduleRequestTimeoutCheck();
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.ok(timedOut > 0, 'the request timed out');
});
