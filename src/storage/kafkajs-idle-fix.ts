import { createRequire } from 'node:module';

interface RequestQueueInternals {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  scheduleCheckPendingRequests: (this: RequestQueueInternals) => void;
  enforceRequestTimeout: boolean;
  requestTimeout: number;
  requestTimeoutIntervalId: NodeJS.Timeout | undefined;
  inflight: Map<number, { sentAt: number; requestTimeout: number; timeoutRequest(): void }>;
  isConnected: () => boolean;
  destroy: (this: RequestQueueInternals) => void;
  scheduleRequestTimeoutCheck: (this: RequestQueueInternals) => void;
}

/** How often a connection looks for requests past their timeout, ms (KafkaJS: every 100 ms). */
export const REQUEST_TIMEOUT_CHECK_MS = 1_000;

const patched = Symbol.for('flash-sale.kafkajs-idle-loop-patched');

/** The source text of the buggy method in KafkaJS 2.2.x: patched only while it is still this one. */
const BUGGY =
  /let scheduleAt = this\.throttledUntil - Date\.now\(\)\s+if \(!this\.throttleCheckTimeoutId\) \{/;
/** KafkaJS 2.2.x's request-timeout check (every 100 ms), replaced while it is still this one. */
const TIMEOUT_CHECK = /setInterval\([\s\S]*Math\.min\(this\.requestTimeout, 100\)\)/;

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
 * KafkaJS no longer has the buggy method (then nothing is changed). The request-timeout check is made
 * coarser too (below), when it is still KafkaJS 2.2's.
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
  // Every connection of KafkaJS 2.2.4 also looks for timed-out requests every 100 ms, forever (an idle
  // node has 3 connections: 30 wake-ups a second). Once a second is enough for timeouts of seconds
  // (createKafka: requestTimeout 5 s; fetches add their max wait): a timed-out request fails ≤ 1 s later.
  const check = proto.scheduleRequestTimeoutCheck;
  if (typeof check === 'function' && TIMEOUT_CHECK.test(check.toString())) {
    proto.scheduleRequestTimeoutCheck = function scheduleRequestTimeoutCheck(this: RequestQueueInternals) {
      if (!this.enforceRequestTimeout) return;
      this.destroy();
      this.requestTimeoutIntervalId = setInterval(
        () => {
          this.inflight.forEach((request) => {
            if (Date.now() - request.sentAt > request.requestTimeout) request.timeoutRequest();
          });
          if (!this.isConnected()) this.destroy();
        },
        Math.min(this.requestTimeout, REQUEST_TIMEOUT_CHECK_MS),
      );
    };
  }
  proto[patched] = true;
  return true;
}
