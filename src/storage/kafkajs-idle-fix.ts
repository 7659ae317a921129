import { createRequire } from 'node:module';

interface InflightRequest {
  sentAt: number;
  requestTimeout: number;
  timeoutRequest(): void;
}

interface RequestQueueInternals {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  scheduleCheckPendingRequests: (this: RequestQueueInternals) => void;
  enforceRequestTimeout: boolean;
  requestTimeout: number;
  inflight: Map<number, InflightRequest>;
  destroy: (this: RequestQueueInternals) => void;
  scheduleRequestTimeoutCheck: (this: RequestQueueInternals) => void;
}

interface RequestTiming {
  /** Between a connection's connect (scheduleRequestTimeoutCheck) and its destroy. */
  enabled: boolean;
  readonly timers: Map<number, NodeJS.Timeout>;
  /** Times `request` out in `ms` unless it leaves the inflight map before. */
  arm(id: number, request: InflightRequest, ms: number): void;
}

/** Per queue (keyed by its inflight map): the timers of the requests in flight. */
const timings = new WeakMap<RequestQueueInternals['inflight'], RequestTiming>();

/**
 * Gives every request that enters `queue.inflight` a timer of its own `requestTimeout`, which times it out
 * unless it left the map before (answered, failed, or every request rejected on a disconnect).
 */
function timeEachRequest(queue: RequestQueueInternals): RequestTiming {
  const inflight = queue.inflight;
  const known = timings.get(inflight);
  if (known !== undefined) return known;
  const timing: RequestTiming = {
    enabled: false,
    timers: new Map(),
    arm(id, request, ms) {
      clearTimeout(timing.timers.get(id));
      const timer = setTimeout(() => {
        timing.timers.delete(id);
        if (inflight.get(id) === request) request.timeoutRequest();
      }, ms);
      timing.timers.set(id, timer);
    },
  };
  timings.set(inflight, timing);
  const set = inflight.set.bind(inflight);
  const remove = inflight.delete.bind(inflight);
  inflight.set = (id, request) => {
    if (timing.enabled) timing.arm(id, request, request.requestTimeout);
    return set(id, request);
  };
  inflight.delete = (id) => {
    clearTimeout(timing.timers.get(id));
    timing.timers.delete(id);
    return remove(id);
  };
  return timing;
}

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
 * KafkaJS no longer has the buggy method (then nothing is changed). The request-timeout check becomes a
 * timer per request in flight (below), when it is still KafkaJS 2.2's.
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
  // node has 6 connections: 60 wake-ups a second). Instead each request in flight gets a timer of its own
  // timeout, cleared when it is answered: a request that is answered in time (nearly all; a consumer's
  // fetch within its max wait) never wakes the process, and an idle connection has no timer at all.
  const check = proto.scheduleRequestTimeoutCheck;
  const destroy = proto.destroy;
  if (typeof check === 'function' && TIMEOUT_CHECK.test(check.toString())) {
    proto.scheduleRequestTimeoutCheck = function scheduleRequestTimeoutCheck(this: RequestQueueInternals) {
      if (!this.enforceRequestTimeout) return;
      this.destroy();
      const timing = timeEachRequest(this);
      timing.enabled = true;
      // Requests already in flight (none on a fresh connection) keep what is left of their timeout.
      const now = Date.now();
      for (const [id, request] of this.inflight)
        timing.arm(
          id,
          request,
          Number.isFinite(request.sentAt)
            ? Math.max(0, request.sentAt + request.requestTimeout - now)
            : request.requestTimeout,
        );
    };
    proto.destroy = function (this: RequestQueueInternals) {
      destroy.call(this);
      const timing = timings.get(this.inflight);
      if (timing === undefined) return;
      timing.enabled = false;
      for (const timer of timing.timers.values()) clearTimeout(timer);
      timing.timers.clear();
    };
  }
  proto[patched] = true;
  return true;
}
