import nact from 'nact';
import type { ActorSystemRef } from 'nact';
import type { Logger } from '../../src/logger.js';
import { sleep } from '../../src/timeouts.js';
import { runSaga, SagaInterrupted } from './run-saga.js';
import { SagaRuns } from './saga-runs.js';
import type {
  PaymentPort,
  SagaEnd,
  SagaOrder,
  SagaResult,
  SagaWait,
  SettlePort,
  StageObserver,
} from '../../src/domain/index.js';

const { spawn, dispatch, stop } = nact;

export interface SagaCoordinatorsOptions {
  system: ActorSystemRef;
  payments: PaymentPort;
  settle: SettlePort;
  logger: Logger;
  /** The sagas running on this node, shared with those who wait for them (the router). Default: its own. */
  runs?: SagaRuns;
  /** Called when a saga ends (metrics). */
  onEnd?: (status: SagaEnd | 'INTERRUPTED', seconds: number) => void;
  /** Purchase stage latencies (metrics): payment and confirm_commit. */
  onStage?: StageObserver;
  now?: () => number;
}

type SagaMessage = {
  kind: 'run';
  order: SagaOrder;
  resumed: boolean;
  finish: (end: SagaResult | undefined) => void;
};

let spawned = 0;

/**
 * Saga coordinators: one nact actor per order, spawned when the order's reservation commits (or when a
 * node resumes unfinished sagas), stopped when its saga ends. Callers can wait for a saga's end.
 */
export class SagaCoordinators {
  private readonly running: SagaRuns;
  private stopping = false;
  private readonly now: () => number;
  /** Set only at debug level (read once): each saga's start and end are logged with its `reqId`. */
  private readonly trace: Logger | undefined;

  constructor(private readonly options: SagaCoordinatorsOptions) {
    this.now = options.now ?? Date.now;
    this.running = options.runs ?? new SagaRuns();
    this.trace = options.logger.isLevelEnabled('debug') ? options.logger : undefined;
  }

  /** Starts the saga of `order` unless it runs already. */
  start(order: SagaOrder, resumed = false): void {
    if (this.stopping || this.running.has(order.orderId)) return;
    const finish = this.running.begin(order.orderId, this.now());
    const ref = spawn(
      this.options.system,
      async (_state: undefined, msg: SagaMessage, ctx: { self: nact.Ref<SagaMessage> }) => {
        msg.finish(await this.run(msg.order, msg.resumed));
        stop(ctx.self);
        return undefined;
      },
      `saga-${order.orderId}-${(spawned += 1)}`,
      {
        onCrash: (_msg, error, ctx) => {
          this.options.logger.error(
            { reqId: order.requestId, orderId: order.orderId, err: error },
            'saga actor crashed; recovery will resume it',
          );
          finish(undefined);
          return ctx.stop;
        },
      },
    );
    dispatch(ref, { kind: 'run', order, resumed, finish });
  }

  /** Is the saga of this order running on this node? */
  isRunning(orderId: string): boolean {
    return this.running.has(orderId);
  }

  /**
   * The saga's end if it comes within `budgetMs`; `PENDING` if it is still running then; undefined if
   * it does not run here (or left off), and the database has the answer.
   */
  waitFor(orderId: string, budgetMs: number): Promise<SagaWait> {
    return this.running.waitFor(orderId, budgetMs);
  }

  stats(): { running: number } {
    return { running: this.running.size };
  }

  /** Stops starting sagas; waits up to `timeoutMs` for running ones; the rest leave off and are resumed later. */
  async drain(timeoutMs: number): Promise<boolean> {
    this.stopping = true;
    const all = this.running.allEnded();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    return Promise.race([all.then(() => true), timedOut]).finally(() => clearTimeout(timer));
  }

  private async run(order: SagaOrder, resumed: boolean): Promise<SagaResult | undefined> {
    const log = this.options.logger;
    const started = this.running.startedAt(order.orderId) ?? this.now();
    const trace = this.trace;
    const reqId = order.requestId;
    trace?.debug({ reqId, orderId: order.orderId, productId: order.productId, resumed }, 'saga started');
    try {
      const end = await runSaga(order, resumed, {
        payments: this.options.payments,
        settle: this.options.settle,
        now: this.now,
        sleep,
        stopping: () => this.stopping,
        log: (event, detail) => log.warn(detail, event),
        ...(this.options.onStage === undefined ? {} : { stage: this.options.onStage }),
      });
      this.options.onEnd?.(end.status, (this.now() - started) / 1000);
      trace?.debug({ reqId, orderId: order.orderId, status: end.status, reason: end.reason }, 'saga ended');
      return end;
    } catch (err) {
      if (!(err instanceof SagaInterrupted))
        log.error({ reqId, orderId: order.orderId, err }, 'saga failed; recovery will resume it');
      else trace?.debug({ reqId, orderId: order.orderId, why: err.message }, 'saga left off');
      this.options.onEnd?.('INTERRUPTED', (this.now() - started) / 1000);
      return undefined;
    } finally {
      this.running.end(order.orderId);
    }
  }
}
