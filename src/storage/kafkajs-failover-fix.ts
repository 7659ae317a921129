import { createRequire } from 'node:module';

interface ConsumerGroupInternals {
  groupId: string;
  coordinator: unknown;
  offsetManager?: { coordinator: unknown } | null;
  cluster: {
    refreshMetadata(): Promise<void>;
    findGroupCoordinator(options: { groupId: string }): Promise<unknown>;
  };
  recoverFromFetch: (this: ConsumerGroupInternals, error: unknown) => Promise<void>;
  heartbeat: (this: ConsumerGroupInternals, options: { interval: number }) => Promise<void>;
}

const isConnectionError = (error: unknown): boolean =>
  (error as { name?: unknown }).name === 'KafkaJSConnectionError';

const patched = Symbol.for('flash-sale.kafkajs-fetch-failover-patched');

/**
 * KafkaJS 2.2.4's consumer keeps fetching from a dead partition leader: a fetch that cannot connect to it
 * (`KafkaJSConnectionError`, e.g. ECONNREFUSED after kill -9 of the broker) is retried without refreshing
 * the cluster metadata, which still names the dead broker as the leader until it is older than
 * `metadataMaxAge` (5 min). The retries run out in ~3 s, the consumer crashes and restarts as a new group
 * member, and the group then waits for the old member's session to expire (30 s) before it consumes again.
 * The producer refreshes metadata on the same error (sendMessages.js): this makes the consumer do the same
 * (and still throw, so its retry backoff applies), so once the controller has moved the leadership, the
 * next retry fetches from the new leader. Heartbeats to a dead group coordinator make the consumer join
 * again (below). Returns false when KafkaJS no longer has the method (unchanged).
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
    if (isConnectionError(error)) await this.cluster.refreshMetadata().catch(() => undefined);
    return original.call(this, error);
  };
  // The group coordinator is found once per join: when its broker dies, heartbeats and offset commits keep
  // going to it until the retries run out and the consumer crashes (tulios/kafkajs#939, #1513). On a
  // connection error, ask again who coordinates the group (the broker that took over, once the dead one is
  // fenced) for the next heartbeat and commit; the error still goes up, so the retry backoff applies.
  const heartbeat = proto.heartbeat;
  if (typeof heartbeat === 'function') {
    proto.heartbeat = async function heartbeatOrFindCoordinator(this: ConsumerGroupInternals, options) {
      try {
        await heartbeat.call(this, options);
      } catch (error) {
        if (isConnectionError(error)) {
          const found = await this.cluster
            .findGroupCoordinator({ groupId: this.groupId })
            .catch(() => undefined);
          if (found !== undefined) {
            this.coordinator = found;
            if (this.offsetManager) this.offsetManager.coordinator = found;
          }
        }
        throw error;
      }
    };
  }
  proto[patched] = true;
  return true;
}
