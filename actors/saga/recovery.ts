import type { Logger } from '../../src/logger.js';
import type { SagaCoordinators } from './saga-coordinators.js';
import type { SagaOrder } from '../../src/domain/index.js';
import { every, type Periodic } from '../../src/timeouts.js';

/** Pause between two sweeps for sagas left idle, ms. */
const SWEEP_INTERVAL_MS = 5_000;

/**
 * Sagas touched within this are left to their live coordinator, at least (the wiring passes the longest a
 * payment call with its retries may take, when longer), ms.
 */
export const MIN_SAGA_IDLE_MS = 10_000;

export interface SagaRecoveryOptions {
  sagas: SagaCoordinators;
  /** Unfinished sagas this node should run (its products), oldest first. */
  pending: (options: { limit: number; idleForMs?: number }) => Promise<SagaOrder[]>;
  logger: Logger;
  /** Pause between sweeps, ms. Default 5000. */
  intervalMs?: number;
  /** Sagas touched more recently than this are left to their live coordinator, ms. */
  idleForMs: number;
  /** Whether this node runs the sagas of a product (it owns the product's shard). Default: all. */
  owns?: (productId: number) => boolean;
}

/**
 * Resumes unfinished sagas: all of them once at start (after a crash, nothing runs them), then every
 * interval those left idle (a coordinator that failed or was interrupted). A resumed saga first asks the
 * payment provider what happened to its key, then confirms or compensates; no order stays pending.
 */
export class SagaRecovery {
  private timer: Periodic | undefined;
  private sweeping: Promise<number> | undefined;

  constructor(private readonly options: SagaRecoveryOptions) {}

  /** Resumes every unfinished saga of this node's products now; resolves with how many were started. */
  async resumeAll(): Promise<number> {
    return this.sweep();
  }

  /** Resumes the unfinished sagas of the products matching `which` (shards just taken over). */
  async resumeWhere(which: (productId: number) => boolean): Promise<number> {
    return this.resume(undefined, which);
  }

  start(): void {
    const intervalMs = this.options.intervalMs ?? SWEEP_INTERVAL_MS;
    this.timer = every(intervalMs, () => void this.sweep(this.options.idleForMs), { unref: true });
  }

  stop(): void {
    this.timer?.stop();
  }

  private sweep(idleForMs?: number): Promise<number> {
    this.sweeping ??= this.resume(idleForMs).finally(() => {
      this.sweeping = undefined;
    });
    return this.sweeping;
  }

  private async resume(
    idleForMs: number | undefined,
    which?: (productId: number) => boolean,
  ): Promise<number> {
    let started = 0;
    const owns = this.options.owns ?? (() => true);
    try {
      const pending = await this.options.pending({
        limit: 10_000,
        ...(idleForMs === undefined ? {} : { idleForMs }),
      });
      for (const order of pending) {
        if (this.options.sagas.isRunning(order.orderId) || !owns(order.productId)) continue;
        if (which !== undefined && !which(order.productId)) continue;
        this.options.sagas.start(order, true);
        started += 1;
      }
      if (started > 0) this.options.logger.info({ resumed: started }, 'resumed unfinished sagas');
    } catch (err) {
      this.options.logger.warn(
        { err: (err as Error).message },
        'saga recovery sweep failed; next sweep retries',
      );
    }
    return started;
  }
}
