import nact from 'nact';
import type { ActorSystemRef, Ref } from 'nact';
import { ProductCore, type CoreEffects } from './product-core.js';
import type { ProductId } from '../../src/domain/index.js';
import type { ProductMessage } from './types.js';

const { spawn, stop } = nact;

/** Names must be unique among live actors; a retired actor may still be draining when its successor starts. */
let activations = 0;

/** What the actor needs from outside: the core's effects minus what the actor does itself. */
export type ActorEffects = Omit<CoreEffects, 'retire'> & {
  /** Called once, inside the actor, when it decides to retire (the registry drops it from routing). */
  retired(productId: ProductId): void;
  /** A handler threw: a bug. The actor stops after answering what it holds. */
  crashed(productId: ProductId, error: unknown): void;
};

export interface ProductActorHandle {
  ref: Ref<ProductMessage>;
  core: ProductCore;
}

/**
 * Spawns the nact actor for one product, directly under the system (product actors must not share a
 * parent that receives traffic: nact copies a parent's children map on every message).
 *
 * The handler stays synchronous: reserve in memory, start a flush if none runs. The flush itself is a
 * detached promise owned by the registry, which dispatches `flushed` back when the batch is written.
 */
export function spawnProductActor(
  system: ActorSystemRef,
  productId: ProductId,
  effects: ActorEffects,
): ProductActorHandle {
  const core = new ProductCore(productId, {
    startFlush: (batch) => effects.startFlush(batch),
    committed: (info) => effects.committed(info),
    now: () => effects.now(),
    retire: () => effects.retired(productId),
    ...(effects.stage === undefined ? {} : { stage: effects.stage }),
  });
  const handle = (_state: undefined, msg: ProductMessage, ctx: { self: Ref<ProductMessage> }): undefined => {
    switch (msg.kind) {
      case 'loaded':
        core.loaded(msg.record);
        break;
      case 'load_failed':
        core.loadFailed(msg.error);
        break;
      case 'purchases':
        core.purchases(msg.items);
        break;
      case 'restock':
        core.restock(msg.quantity, msg.reply);
        break;
      case 'settle':
        core.settle(msg.settlement, msg.reply);
        break;
      case 'flushed':
        core.flushed(msg.result);
        break;
      case 'stop':
        // The registry sends `stop` last, after removing this actor from routing: the mailbox is drained.
        core.stop(msg.reason, msg.message);
        stop(ctx.self);
        break;
    }
    return undefined;
  };
  const ref = spawn(system, handle, `product-${productId}-${(activations += 1)}`, {
    onCrash: (_msg, error, ctx) => {
      effects.crashed(productId, error);
      core.stop('DEPENDENCY_UNAVAILABLE', 'the product actor failed; retry');
      return ctx.stop;
    },
  });
  return { ref, core };
}
