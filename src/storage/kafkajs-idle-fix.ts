import { createRequire } from 'node:module';

interface RequestQueueInternals {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  scheduleCheckPendingRequests: (this: RequestQueueInternals) => void;
}

const patched = Symbol.for('flash-sale.kafkajs-idle-loop-patched');

/** The source text of the buggy method in KafkaJS 2.2.x: patched only while it is still this one. */
const BUGGY =
  /let scheduleAt = this\.throttledUntil - Date\.now\(\)\s+if \(!this\.throttleCheckTimeoutId\) \{/;

/**
 * KafkaJS 2.2.4 (unmaintained) keeps a 1 ms timer loop running on every broker connection forever:
 * `scheduleCheckPendingRequests` schedules `setTimeout(check, throttledUntil - now)` even with nothing
 * pending and no throttle, the delay is negative (1 ms), and the check schedules itself again
 * (tulios/kafkajs#1556, #1604, #1704; fix proposed in #1667 and #1768, never released). An idle node woke
 * ~1,000 times a second per connection for it. This replaces the method with the proposed fix: with
 * nothing pending and no throttle in effect there is nothing to check, so no timer; a request queued
 * later schedules its own check (`push`), and a finished request checks the queue (`fulfillRequest`).
 *
 * Returns true when the patch is in place (also when it was already applied), false when the installed
 * KafkaJS no longer has the buggy method (then nothing is changed).
 */
export function patchKafkaJsIdleLoop(): boolean {
  const require = createRequire(import.meta.url);
  const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as {
    prototype: RequestQueueInternals & { [patched]?: true };
  };
  const proto = RequestQueue.prototype;
  if (proto[patched]) return true;
  const original = proto.scheduleCheckPendingRequests;
  if (typeof original !== 'function' || !BUGGY.test(original.toString())) return false;
  proto.scheduleCheckPendingRequests = function scheduleCheckPendingRequests(this: RequestQueueInternals) {
    if (this.pending.length === 0 && this.throttledUntil <= Date.now()) return;
    original.call(this);
  };
  proto[patched] = true;
  return true;
}
