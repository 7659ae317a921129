import type { BatchResult, BatchWrite, ProductId } from '../domain/index.js';
import { writeCycle, type CycleBatch, type CycleResult, type CycleWriterOptions } from './batch-writer.js';
import type { Pool, PoolConnection } from './mysql.js';
import { InvariantError } from '../errors.js';

/** Bounds of one cycle: a round trip stays a few MB of SQL at most, however much is waiting. */
export const cycleLimits = {
  maxBatches: 2_000,
  maxOrders: 10_000,
  /**
   * Confirmations ride along with any cycle that starts (a product's batch, or other confirmations): those
   * of products whose row a cycle in flight writes until that cycle ends, the others until their linger
   * (`confirmLingerMs`) ends; they start a cycle of their own at once when this many wait. At a moderate
   * rate confirmations then share a product batch's cycle (one transaction, not two); a hot product's
   * hundreds go on a free lane without waiting for its chain.
   */
  confirmationsToStartBeside: 16,
} as const;

export interface CommitPipelineOptions {
  primary: Pool;
  /** How the cycles write (topics, saga deadline); always in a transaction of their own, as `actor`. */
  writer: Omit<CycleWriterOptions, 'begin' | 'strategy' | 'touchProduct'>;
  /** The lease epoch a product's writes are made under (recorded on every row). */
  ownerEpoch: (productId: ProductId) => number;
  /** Cycles in flight at once, each on a connection of its own (config.commitLanes). */
  lanes: number;
  /**
   * How long confirmations wait for a product batch's cycle to ride with before they start one of their
   * own, ms (config.confirmLingerMs; 0: at once). At a low rate most cycles would otherwise be a lone
   * confirmation: each a durable commit the primary, the replica and the node pay ~1 ms of CPU for.
   */
  confirmLingerMs?: number;
  /** After every cycle: its batches, orders, round trips' wall time, and how it ended. */
  onCycle?: (info: CycleInfo) => void;
}

export interface CycleInfo {
  batches: number;
  orders: number;
  seconds: number;
  /** `committed`: every batch in one round trip; `split`: some were taken out and the rest sent again. */
  outcome: 'committed' | 'split' | 'failed';
  /** Round trips sent again after InnoDB refused them a lock (deadlock victim, lock-wait timeout). */
  lockRetries: number;
}

interface Job {
  batch: BatchWrite;
  /** False: confirmations only, outside the product's chain (CycleBatch.touchProduct). */
  touchProduct: boolean;
  /** performance.now() when it was queued (a confirmation's linger counts from here). */
  queuedAt: number;
  resolve: (result: CycleResult) => void;
}

/**
 * The node's commit pipeline: product actors hand it their ready batches (at most one in flight per
 * product) and it writes everything ready in ONE transaction per cycle (`writeCycle`), while the next
 * cycle accumulates. At low load a product batch's cycle starts on the next turn of the event loop (no
 * timer, no linger), so a lone purchase's reservation waits for nothing (only confirmations linger, for a
 * batch to ride with); under load a cycle carries every product that became ready
 * while the one before it committed.
 *
 * Up to `lanes` cycles run at once. A product's row is never written by two cycles in flight (its next
 * batch waits for the cycle holding it; its confirmations, which leave the row alone, ride along with any
 * other cycle, or start one of their own after `confirmLingerMs` or once
 * `cycleLimits.confirmationsToStartBeside` wait),
 * and no two batches in flight share a (user, idempotency key): such a batch waits for a cycle that
 * starts after the one holding the key ended (not one beside it on another lane, where the two would
 * race for the key), so a client reusing a key across products cannot fail the others' round trip.
 */
export class CommitPipeline {
  private queue: Job[] = [];
  private busyLanes = 0;
  private scheduled = false;
  /** A timer that starts the waiting confirmations when the oldest one's linger ends. */
  private lingerTimer: NodeJS.Timeout | undefined;
  private cycles = 0;
  /** The (user, key) pairs of the cycles in flight: a batch reusing one waits until its cycle ended. */
  private readonly keysInFlight = new Set<string>();
  /**
   * The products whose row a cycle in flight writes: their next batch waits for that cycle to end (the
   * actors send one batch per product at a time; this keeps a product's version chain in order whatever
   * they do). Confirmations, which leave the row alone, may go beside it on another lane (riding along, or
   * alone once `confirmationsToStartBeside` wait): cycles run in READ COMMITTED, where a product's new
   * orders and its confirmed ones take no gap locks on each other, and a cycle InnoDB still picks as a
   * deadlock victim is sent again (`writeCycle`).
   */
  private readonly productsInFlight = new Set<ProductId>();

  constructor(private readonly options: CommitPipelineOptions) {
    if (!Number.isInteger(options.lanes) || options.lanes < 1)
      throw new InvariantError(`commit lanes must be a positive integer, got ${options.lanes}`);
  }

  /** Queues one product's batch; resolves when the cycle holding it committed or was refused. */
  submit(batch: BatchWrite, touchProduct = true): Promise<CycleResult> {
    return new Promise((resolve) => {
      this.queue.push({ batch, touchProduct, queuedAt: performance.now(), resolve });
      this.schedule();
    });
  }

  /** The ProductStore form: a refused batch is a result, a failed round trip throws its error. */
  async commit(batch: BatchWrite): Promise<BatchResult> {
    const result = await this.submit(batch);
    if (result.kind === 'failed') throw result.error;
    return result;
  }

  /**
   * Commits sagas' confirmations without their product's row (no stock change, fenced by each saga's
   * version check): they join the next cycle whatever the product's own batch is doing.
   */
  async confirm(settlements: BatchWrite['settlements'], productId: ProductId): Promise<BatchResult> {
    if (settlements.some((s) => s.outcome !== 'confirm'))
      throw new InvariantError('only confirmations are written outside the product chain');
    const batch: BatchWrite = {
      productId,
      expectedVersion: 0,
      previousStock: 0,
      newStock: 0,
      orders: [],
      settlements,
    };
    const result = await this.submit(batch, false);
    if (result.kind === 'failed') throw result.error;
    return result;
  }

  stats(): { queued: number; busyLanes: number; cycles: number } {
    return { queued: this.queue.length, busyLanes: this.busyLanes, cycles: this.cycles };
  }

  private schedule(): void {
    if (this.scheduled || this.busyLanes >= this.options.lanes) return;
    this.scheduled = true;
    // Batches made ready in this turn of the event loop go in the same cycle.
    setImmediate(() => {
      this.scheduled = false;
      this.startCycles();
    });
  }

  private startCycles(): void {
    while (this.busyLanes < this.options.lanes && this.queue.length > 0) {
      const { jobs, keys, products } = this.take();
      if (jobs.length === 0) return; // every waiting job's product or key is in a cycle in flight
      this.busyLanes += 1;
      for (const k of keys) this.keysInFlight.add(k);
      for (const p of products) this.productsInFlight.add(p);
      void this.run(jobs).finally(() => {
        this.busyLanes -= 1;
        for (const k of keys) this.keysInFlight.delete(k);
        for (const p of products) this.productsInFlight.delete(p);
        this.startCycles();
      });
    }
  }

  /** The next cycle's jobs, in arrival order, within the cycle's bounds; those left out stay first in line. */
  private take(): { jobs: Job[]; keys: Set<string>; products: Set<ProductId> } {
    const taken: Job[] = [];
    const left: Job[] = [];
    const touched = new Set<ProductId>();
    const keys = new Set<string>();
    let orders = 0;
    /** Taken confirmations whose product's row is in a cycle in flight: they ride, they start nothing. */
    let riders = 0;
    let oldestConfirmation = Infinity;
    for (const job of this.queue) {
      const { batch } = job;
      const full =
        taken.length >= cycleLimits.maxBatches ||
        (taken.length > 0 && orders + batch.orders.length > cycleLimits.maxOrders);
      const jobKeys = batch.orders.map((o) => `${o.userId}\u0000${o.idempotencyKey}`);
      if (
        full ||
        (job.touchProduct && (touched.has(batch.productId) || this.productsInFlight.has(batch.productId))) ||
        jobKeys.some((k) => keys.has(k) || this.keysInFlight.has(k))
      ) {
        left.push(job);
        continue;
      }
      taken.push(job);
      if (job.touchProduct) touched.add(batch.productId);
      else {
        if (this.productsInFlight.has(batch.productId)) riders += 1;
        oldestConfirmation = Math.min(oldestConfirmation, job.queuedAt);
      }
      for (const k of jobKeys) keys.add(k);
      orders += batch.orders.length;
    }
    if (touched.size === 0 && taken.length < cycleLimits.confirmationsToStartBeside) {
      // Only confirmations: they wait for their products' cycles to end (riders), and for a product batch
      // to ride with until the oldest one's linger ends.
      const lingerLeft = oldestConfirmation + (this.options.confirmLingerMs ?? 0) - performance.now();
      if (taken.length === riders || lingerLeft > 0) {
        if (taken.length > riders) this.startAfter(lingerLeft);
        return { jobs: [], keys: new Set(), products: new Set() };
      }
    }
    this.queue = left;
    // Product-id order: rows are locked in one order by every lane and node.
    return { jobs: taken.sort((a, b) => a.batch.productId - b.batch.productId), keys, products: touched };
  }

  /** Starts cycles `ms` from now, unless a timer set earlier fires by then. */
  private startAfter(ms: number): void {
    if (this.lingerTimer !== undefined) return;
    this.lingerTimer = setTimeout(
      () => {
        this.lingerTimer = undefined;
        this.startCycles();
      },
      Math.max(1, Math.ceil(ms)),
    );
  }

  private async run(jobs: readonly Job[]): Promise<void> {
    const started = performance.now();
    const items: CycleBatch[] = jobs.map((j) => ({
      batch: j.batch,
      ownerEpoch: this.options.ownerEpoch(j.batch.productId),
      touchProduct: j.touchProduct,
    }));
    let results: CycleResult[];
    let conn: PoolConnection | undefined;
    let lockRetries = 0;
    try {
      conn = await this.options.primary.getConnection();
      results = await writeCycle(conn, items, {
        ...this.options.writer,
        strategy: 'actor',
        begin: true,
        onLockRetry: () => (lockRetries += 1),
      });
    } catch (err) {
      results = jobs.map(() => ({ kind: 'failed', error: err }));
    }
    const failed = results.some((r) => r.kind === 'failed');
    if (conn !== undefined) {
      // A round trip that failed part-way may leave its transaction open: never hand that back to the pool.
      if (failed)
        await conn.query('ROLLBACK').then(
          () => conn.release(),
          () => conn.destroy(),
        );
      else conn.release();
    }
    this.cycles += 1;
    const split = results.some((r) => r.kind !== 'committed');
    this.options.onCycle?.({
      batches: jobs.length,
      orders: items.reduce((n, i) => n + i.batch.orders.length, 0),
      seconds: (performance.now() - started) / 1000,
      outcome: failed ? 'failed' : split ? 'split' : 'committed',
      lockRetries,
    });
    jobs.forEach((job, i) => job.resolve(results[i]!));
  }
}
