import type { SagaResult, SagaWait } from '../../src/domain/index.js';

interface Run {
  done: Promise<SagaResult | undefined>;
  started: number;
}

/**
 * The sagas running on this node and their ends. The coordinators record them; whoever waits for a saga
 * (a purchase's answer, another node through the cluster router) reads them here, so the router is built
 * before the coordinators whose settlements it routes.
 */
export class SagaRuns {
  private readonly runs = new Map<string, Run>();

  /** Records the saga of `orderId` as running since `started`; the function returned tells its end. */
  begin(orderId: string, started: number): (end: SagaResult | undefined) => void {
    let finish!: (end: SagaResult | undefined) => void;
    const done = new Promise<SagaResult | undefined>((resolve) => {
      finish = resolve;
    });
    this.runs.set(orderId, { done, started });
    return finish;
  }

  /** Forgets the saga (it ended or left off); its end has been told, or never will be. */
  end(orderId: string): void {
    this.runs.delete(orderId);
  }

  has(orderId: string): boolean {
    return this.runs.has(orderId);
  }

  /** When the saga began here, if it runs. */
  startedAt(orderId: string): number | undefined {
    return this.runs.get(orderId)?.started;
  }

  get size(): number {
    return this.runs.size;
  }

  /**
   * The saga's end if it comes within `budgetMs`; `PENDING` if it is still running then; undefined if
   * it does not run here (or left off), and the database has the answer.
   */
  async waitFor(orderId: string, budgetMs: number): Promise<SagaWait> {
    const run = this.runs.get(orderId);
    if (run === undefined) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const budget = new Promise<{ status: 'PENDING' }>((resolve) => {
      timer = setTimeout(() => resolve({ status: 'PENDING' }), Math.max(0, budgetMs));
    });
    return Promise.race([run.done, budget]).finally(() => clearTimeout(timer));
  }

  /** Resolves once every saga running now has ended. */
  async allEnded(): Promise<void> {
    await Promise.all([...this.runs.values()].map((r) => r.done));
  }
}
