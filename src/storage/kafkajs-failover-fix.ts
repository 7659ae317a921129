import { createRequire } from 'node:module';

interface ConsumerGroupInternals {
  cluster: { refreshMetadata(): Promise<void> };
  recoverFromFetch: (this: ConsumerGroupInternals, error: unknown) => Promise<void>;
}

const patched = Symbol.for('flash-sale.kafkajs-fetch-failover-patched');

/**
 * KafkaJS 2.2.4's consumer keeps fetching from a dead partition leader: a fetch that cannot connect to it
 * (`KafkaJSConnectionError`, e.g. ECONNREFUSED after kill -9 of the broker) is retried without refreshing
 * the cluster metadata, which still names the dead broker as the leader until it is older than
 * `metadataMaxAge` (5 min). The retries run out in ~3 s, the consumer crashes and restarts as a new group
 * member, and the group then waits for the old member's session to expire (30 s) before it consumes again.
 * The producer refreshes metadata on the same error (sendMessages.js): this makes the consumer do the same
 * (and still throw, so its retry backoff applies), so once the controller has moved the leadership, the
 * next retry fetches from the new leader. Returns false when KafkaJS no longer has the method (unchanged).
 */
export function patchKafkaJsFetchFailover(): boolean {
  const require = createRequire(import.meta.url);
  const ConsumerGroup = require('kafkajs/src/consumer/consumerGroup.js') as {
    prototype: ConsumerGroupInternals & { [patched]?: true };
  };
  const proto = ConsumerGroup.prototype;
  if (proto[patched]) return true;
  const original = proto.recoverFromFetch;
  if (typeof original !== 'function') return false;
  proto.recoverFromFetch = async function recoverFromFetch(this: ConsumerGroupInternals, error: unknown) {
    if ((error as { name?: unknown }).name === 'KafkaJSConnectionError')
      await this.cluster.refreshMetadata().catch(() => undefined);
    return original.call(this, error);
  };
  proto[patched] = true;
  return true;
}
