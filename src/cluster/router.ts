import { refused } from '../domain/index.js';
import type {
  PurchaseOutcome,
  PurchaseRequest,
  PurchaseRouter,
  Refusal,
  RestockOutcome,
  SagaWait,
  SettleOutcome,
  Settlement,
  StageObserver,
} from '../domain/index.js';
import type { Logger } from '../logger.js';
import { sleep } from '../timeouts.js';
import type { Ownership } from './ownership.js';
import { shardOf } from './shards.js';
import { InvariantError } from '../errors.js';

/** Calls an operation on another node (the multiplexed peer channel). Throws with `retryable` on failure. */
export interface PeerCaller {
  call(address: string, op: string, body: unknown, deadline: number): Promise<unknown>;
}

export type PeerOp = 'purchase' | 'restock' | 'settle' | 'saga-wait';

export interface ClusterRouterOptions {
  ownership: Ownership;
  shardCount: number;
  /** This node's product actors. */
  local: PurchaseRouter;
  peers: PeerCaller;
  /** Waits for a saga running on this node (the owner of its product runs it). */
  localSagaWait: (orderId: string, budgetMs: number) => Promise<SagaWait>;
  /** Deadline of restocks and settlements, which carry none of their own, ms. */
  timeoutMs: number;
  /** Called once per attempt: served by this node's actors, or forwarded to the owner (metrics). */
  onAttempt?: (op: PeerOp, where: 'local' | 'forwarded') => void;
  /** The reply stage of purchases (metrics): routed here → their saga's wait over, the answer goes out. */
  onStage?: StageObserver;
  /** At debug level, each forwarding and each request served for a peer is logged with its `reqId`. */
  logger?: Logger;
  /**
   * A forwarded purchase asks its owner to wait up to this long for the new order's saga before answering,
   * so that its outcome comes back in the same round trip instead of a `saga-wait` call after it, ms (the
   * call's own deadline bounds it too). 0: the answer comes at once. Default 0.
   */
  forwardSagaWaitMs?: number;
}

/** A forwarded purchase's answer: with its saga's outcome when the owner waited for it. */
type ForwardedPurchase = PurchaseOutcome & { saga?: SagaWait | null };

type Outcome = PurchaseOutcome | RestockOutcome | SettleOutcome;

/** Most purchases remembered between their routing and their saga wait (a wait that never comes is dropped). */
const ROUTED_LIMIT = 100_000;

/** Longest one forwarding attempt waits for the owner's answer before looking again, ms. */
const FORWARD_ATTEMPT_MS = 1_000;

/** An owner waiting for a forwarded purchase's saga answers this long before the call's deadline, ms. */
const SAGA_WAIT_MARGIN_MS = 100;

/** The request id a purchase or settlement carries (README "Logs"). */
const requestIdOf = (body: unknown): unknown => (body as { requestId?: unknown } | null)?.requestId;

/** A refusal of a request that may have been applied all the same (its write was under way). */
const uncertain = (outcome: Outcome | undefined): boolean =>
  outcome?.kind === 'refused' && outcome.uncertain === true;

const movedAway = (outcome: Outcome | undefined): boolean =>
  outcome === undefined || (outcome.kind === 'refused' && outcome.reason === 'OWNERSHIP_LOST');

/**
 * A purchase found already made after an earlier attempt of this same request may have been applied (an
 * owner silent past FORWARD_ATTEMPT_MS, a connection lost, a write under way when refused): the order is
 * most likely that attempt's, so it is answered as made now, not as the client's replay (no
 * `Idempotent-Replayed`: the client sent the request once).
 */
const ownAttempt = <T extends Outcome>(outcome: T | undefined, earlierMayApply: boolean): T | undefined =>
  earlierMayApply && outcome?.kind === 'replayed' ? { ...outcome, kind: 'created' } : outcome;

/**
 * Sends each product's work to its shard's owner: this node's actors when it holds the lease, else the
 * owner over the peer channel. When ownership moves during a request (a refusal, a dead peer, no owner
 * yet), it retries against whoever owns the shard next, until the request's deadline. Retrying never
 * applies a purchase twice: the idempotency key holds on every node (memory, then the orders table).
 */
export class ClusterRouter implements PurchaseRouter {
  /** performance.now() when each new order's purchase was routed, until its saga wait (reply stage). */
  private readonly routedAt = new Map<string, number>();
  /** Sagas' outcomes that came back with their forwarded purchase, until their saga wait asks. */
  private readonly sagaAnswers = new Map<string, SagaWait>();
  /** Set only at debug level (read once at start): no log call, and no object for one, otherwise. */
  private readonly trace: Logger | undefined;

  constructor(private readonly options: ClusterRouterOptions) {
    this.trace = options.logger?.isLevelEnabled('debug') ? options.logger : undefined;
  }

  purchase(request: PurchaseRequest): Promise<PurchaseOutcome> {
    if (this.options.onStage !== undefined) return this.timedPurchase(request);
    return this.routePurchase(request);
  }

  private async routePurchase(request: PurchaseRequest): Promise<PurchaseOutcome> {
    const waitMs = this.options.forwardSagaWaitMs ?? 0;
    const body = waitMs > 0 ? { ...request, sagaWaitMs: waitMs } : request;
    const outcome: ForwardedPurchase = await this.route(
      request.productId,
      'purchase',
      body,
      request.deadline,
      () => this.options.local.purchase(request),
    );
    if (outcome.saga === undefined) return outcome;
    const { saga, ...purchase } = outcome;
    if (purchase.kind === 'created' && saga !== null)
      this.remember(this.sagaAnswers, purchase.order.orderId, saga);
    return purchase;
  }

  /** A purchase whose routing time is kept until its saga wait ends (the reply stage is the whole of it). */
  private async timedPurchase(request: PurchaseRequest): Promise<PurchaseOutcome> {
    const started = performance.now();
    const outcome = await this.routePurchase(request);
    if (outcome.kind === 'created') this.remember(this.routedAt, outcome.order.orderId, started);
    return outcome;
  }

  /** Keeps `value` for the order until its saga wait; a wait that never comes is dropped, oldest first. */
  private remember<V>(map: Map<string, V>, orderId: string, value: V): void {
    if (map.size >= ROUTED_LIMIT) {
      const oldest = map.keys().next().value;
      if (oldest !== undefined) map.delete(oldest);
    }
    map.set(orderId, value);
  }

  restock(productId: number, quantity: number): Promise<RestockOutcome> {
    const deadline = Date.now() + this.options.timeoutMs;
    return this.route(productId, 'restock', { productId, quantity }, deadline, () =>
      this.options.local.restock(productId, quantity),
    );
  }

  settle(settlement: Settlement): Promise<SettleOutcome> {
    const deadline = Date.now() + this.options.timeoutMs;
    return this.route(settlement.productId, 'settle', settlement, deadline, () =>
      this.options.local.settle(settlement),
    );
  }

  /**
   * Waits up to `budgetMs` for the saga of an order, on the node that runs it (its product's owner);
   * undefined when no node runs it (the database then has the answer).
   */
  async sagaWait(productId: number, orderId: string, budgetMs: number): Promise<SagaWait> {
    const answered = this.sagaAnswers.get(orderId);
    if (answered !== undefined) this.sagaAnswers.delete(orderId);
    const wait =
      answered !== undefined && answered.status !== 'PENDING'
        ? answered
        : await this.waitForSaga(productId, orderId, budgetMs);
    const started = this.routedAt.get(orderId);
    if (started !== undefined) {
      this.routedAt.delete(orderId);
      this.options.onStage?.('reply', (performance.now() - started) / 1000);
    }
    return wait;
  }

  /** A forwarded purchase; when asked, its new order's saga is waited for here, saving its node a call. */
  private async servePurchase(
    request: PurchaseRequest & { sagaWaitMs?: number },
    deadline: number,
  ): Promise<ForwardedPurchase> {
    const { sagaWaitMs, ...purchase } = request;
    const outcome = await this.options.local.purchase(purchase);
    if (outcome.kind !== 'created' || sagaWaitMs === undefined) return outcome;
    const budget = Math.min(sagaWaitMs, deadline - Date.now() - SAGA_WAIT_MARGIN_MS);
    if (budget <= 0) return outcome;
    const saga = await this.options.localSagaWait(outcome.order.orderId, budget);
    return { ...outcome, saga: saga ?? null };
  }

  private async waitForSaga(productId: number, orderId: string, budgetMs: number): Promise<SagaWait> {
    const { ownership, shardCount, peers } = this.options;
    const shard = shardOf(productId, shardCount);
    if (ownership.holds(shard)) return this.options.localSagaWait(orderId, budgetMs);
    const local = await this.options.localSagaWait(orderId, 0);
    if (local !== undefined && local.status !== 'PENDING') return local;
    const body = { productId, orderId, budgetMs };
    let wait = local;
    // Where the owner is unknown (Redis unreachable), each peer in turn: only the one running it waits.
    for (const address of this.ownerAddresses(shard)) {
      const remote = (await peers
        .call(address, 'saga-wait', body, Date.now() + budgetMs + 1_000)
        .catch(() => local)) as SagaWait | null;
      if (remote !== null) return remote;
      wait = undefined; // msgpack carries undefined as null: that node runs no such saga
    }
    return wait;
  }

  /**
   * Where to send a shard's work held elsewhere: its owner as last read from Redis. While Redis cannot be
   * read and that view names no other node (nobody, or this node, which has since dropped the shard), every
   * peer last seen, in turn: each serves only shards it holds and refuses the others.
   */
  private ownerAddresses(shard: number): string[] {
    const { ownership } = this.options;
    const owner = ownership.ownerOf(shard);
    if (owner !== undefined && owner.node !== ownership.nodeId)
      return owner.address === undefined ? [] : [owner.address];
    return ownership.cutOff ? ownership.peerAddresses() : [];
  }

  /**
   * Serves a request forwarded by another node: only for shards held here, and never forwarded again.
   * `deadline` is the call's (epoch ms): a purchase that asks for its saga's outcome waits for it until
   * shortly before.
   */
  async handlePeer(
    op: string,
    body: unknown,
    deadline = Infinity,
  ): Promise<Outcome | SagaWait | ForwardedPurchase> {
    if (op === 'saga-wait') {
      const { orderId, budgetMs } = body as { orderId: string; budgetMs: number };
      return this.options.localSagaWait(orderId, budgetMs);
    }
    const productId = productOf(op, body);
    const owned = this.options.ownership.holds(shardOf(productId, this.options.shardCount));
    this.trace?.debug({ reqId: requestIdOf(body), op, productId, owned }, 'request from a peer');
    if (!owned) return notOwner(productId);
    switch (op as Exclude<PeerOp, 'saga-wait'>) {
      case 'purchase':
        return this.servePurchase(body as PurchaseRequest & { sagaWaitMs?: number }, deadline);
      case 'restock': {
        const { quantity } = body as { productId: number; quantity: number };
        return this.options.local.restock(productId, quantity);
      }
      case 'settle':
        return this.options.local.settle(body as Settlement);
    }
  }

  private async route<T extends Outcome>(
    productId: number,
    op: PeerOp,
    body: unknown,
    deadline: number,
    local: () => Promise<T>,
  ): Promise<T> {
    const { ownership, shardCount, peers } = this.options;
    const shard = shardOf(productId, shardCount);
    let delay = 10;
    // Whether an attempt may have been applied without an answer saying so (a forwarding unanswered, timed
    // out or its connection failed; a refusal marked `uncertain`): giving up then says the outcome is
    // unknown, not that nothing owns the product.
    let unanswered = false;
    for (;;) {
      let outcome: T | undefined;
      if (ownership.holds(shard)) {
        this.options.onAttempt?.(op, 'local');
        outcome = ownAttempt(await local(), unanswered);
        unanswered ||= uncertain(outcome);
      } else {
        // Usually one address; while Redis is unreachable, each peer in turn until one holds the shard.
        for (const address of this.ownerAddresses(shard)) {
          // One attempt waits at most FORWARD_ATTEMPT_MS: a paused or partitioned owner must not hold the
          // request to its deadline while its shard moves elsewhere (a late delivery is fenced there).
          const attemptDeadline = Math.min(deadline, Date.now() + FORWARD_ATTEMPT_MS);
          this.options.onAttempt?.(op, 'forwarded');
          this.trace?.debug({ reqId: requestIdOf(body), op, productId, address }, 'forwarded to the owner');
          outcome = await peers.call(address, op, body, attemptDeadline).then(
            // Judged against the attempts before this one, as the local branch's answer is.
            (answer) => ownAttempt(answer as T | undefined, unanswered),
            (err: unknown) => {
              if ((err as { retryable?: boolean }).retryable === false) throw err;
              this.trace?.debug(
                { reqId: requestIdOf(body), op, productId, address, err: (err as Error).message },
                'owner did not answer; looking again',
              );
              unanswered = true;
              return undefined; // the peer is gone or slow: look again
            },
          );
          unanswered ||= uncertain(outcome);
          if (!movedAway(outcome)) return outcome!;
        }
      }
      if (!movedAway(outcome)) return outcome!;
      // A leaving node that finds no other owner gives up at once: nothing will take the shard while it waits.
      const giveUp = ownership.leaving && ownership.ownerOf(shard) === undefined;
      if (giveUp || Date.now() + delay >= deadline)
        return (unanswered ? unknownOutcome(productId, op) : (outcome ?? notOwner(productId))) as T;
      await sleep(delay);
      delay = Math.min(delay * 2, 200);
      ownership.poke();
    }
  }
}

function productOf(op: string, body: unknown): number {
  const productId = (body as { productId?: unknown } | null)?.productId;
  if (!['purchase', 'restock', 'settle'].includes(op) || typeof productId !== 'number') {
    throw new InvariantError(`unknown peer operation ${op}`);
  }
  return productId;
}

/** The owner was asked but did not answer before the deadline: the request may or may not have been applied. */
function unknownOutcome(productId: number, op: PeerOp): Refusal {
  const learn =
    op === 'purchase' ? 'retry with the same Idempotency-Key to learn it' : 'look before retrying';
  const message = `the owner of product ${productId} did not answer in time; the outcome is unknown: ${learn}`;
  return refused('DEADLINE_EXCEEDED', message);
}

function notOwner(productId: number): Refusal {
  return refused('OWNERSHIP_LOST', `no node owns product ${productId} right now; retry`);
}
