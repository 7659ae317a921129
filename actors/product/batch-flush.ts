import nact from 'nact';
import type { BatchWrite, ProductId, ProductStore, StageObserver } from '../../src/domain/index.js';
import { WriteRolledBack } from '../../src/domain/index.js';
import type { Logger } from '../../src/logger.js';
import type { ProductActorHandle } from './product-actor.js';
import type { FlushResult } from './product-core.js';
import { errorText, type StockWriteThrough } from './write-through.js';

const { dispatch } = nact;

export interface BatchFlushOptions {
  store: ProductStore;
  logger: Logger;
  /** False when this node must not write for the product (its shard's lease is not held). Default: always true. */
  mayWrite?: (productId: ProductId) => boolean;
  /** A batch lost to the row version: another node wrote the product since this one loaded it. */
  onWrittenElsewhere?: (productId: ProductId) => void;
  /** Called after every batch write with its size and duration. */
  onBatch?: (info: {
    productId: ProductId;
    size: number;
    seconds: number;
    outcome: FlushResult['kind'];
  }) => void;
  /** Purchase stage latencies (metrics): queue (in the actor) and reserve_commit (per committed order). */
  onStage?: StageObserver;
}

/** A product's entry as its batch writes see it: its actor, and the chain of its stock write-throughs. */
export interface FlushTarget {
  readonly handle: ProductActorHandle;
  /**
   * The stock write-throughs of this product's committed batches, one after another (commit order, so the
   * feed and the other nodes see its versions in order); settled: nothing pending. Every reply the actor
   * sends waits for it, so none goes out before the cache holds its batch's stock, while the product's next
   * batch commits beside it instead of after it.
   */
  visible: Promise<void> | undefined;
}

/**
 * The product actors' batch writes, outside the actors: each batch goes to the store, its stock to the cache
 * (before any reply of its product), and its result back to its actor as a `flushed` message.
 */
export class BatchFlusher {
  constructor(
    private readonly options: BatchFlushOptions,
    private readonly writeThrough: StockWriteThrough,
  ) {}

  /** Writes a batch outside the actor and reports back with a `flushed` message. */
  flush(target: FlushTarget, batch: BatchWrite): void {
    const started = performance.now();
    const { store, logger, onBatch } = this.options;
    void (async () => {
      let result: FlushResult;
      try {
        // A node whose lease ran out does not even try (the version check would refuse it anyway).
        const mayWrite = this.options.mayWrite?.(batch.productId) ?? true;
        result = mayWrite ? await store.commitBatch(batch) : { kind: 'version_conflict' };
        if (mayWrite && result.kind === 'version_conflict')
          this.options.onWrittenElsewhere?.(batch.productId);
        if (result.kind === 'committed') {
          if (batch.orders.length > 0)
            this.options.onStage?.(
              'reserve_commit',
              (performance.now() - started) / 1000,
              batch.orders.length,
            );
          // Write-through before any reply (`visible`): a client never reads a stock older than its own
          // purchase. A batch that changes no stock (confirmations: the version moves, the stock does
          // not) writes nothing: the cache holds this stock at an older version (or nothing), which is
          // still the committed stock, and a purchase's stock stamp is its reservation's version, never
          // a confirmation's.
          if (batch.newStock !== batch.previousStock)
            this.writeThroughBeforeReplies(target, batch, result.version);
        }
      } catch (err) {
        // A batch holds many requests: their ids, so each request's log trail shows its batch failing.
        const reqIds = [...batch.orders, ...batch.settlements].flatMap((o) => o.requestId ?? []);
        logger.error({ productId: batch.productId, reqIds, err: errorText(err) }, 'batch write failed');
        result = { kind: 'failed', error: errorText(err), rolledBack: err instanceof WriteRolledBack };
      }
      onBatch?.({
        productId: batch.productId,
        size: batch.orders.length,
        seconds: (performance.now() - started) / 1000,
        outcome: result.kind,
      });
      dispatch(target.handle.ref, { kind: 'flushed', result });
    })();
  }

  /**
   * Queues the batch's write-through behind the product's earlier ones and holds the actor's replies until
   * it is done (`FlushTarget.visible`). The actor is told of the commit at once, so the product's next batch
   * is written while this one's stock reaches the cache.
   */
  private writeThroughBeforeReplies(target: FlushTarget, batch: BatchWrite, version: number): void {
    const visible = (target.visible ?? Promise.resolve())
      .then(() => this.writeThrough.write(batch, version))
      .catch((err: unknown) =>
        this.options.logger.error(
          { productId: batch.productId, err: errorText(err) },
          'stock write-through threw',
        ),
      )
      .then(() => {
        if (target.visible === visible) target.visible = undefined;
      });
    target.visible = visible;
  }
}
