/**
 * WebSocket stock subscribers of the chaos run, written as a client would: through nginx, each follows
 * every product of the run (`{op: 'subscribe', ids}`), keeps the highest version per product, and
 * reconnects (and subscribes again, which sends fresh snapshots) when its node dies or drops it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';

interface StockFrame {
  type: string;
  productId: number;
  stock: number;
  version: number;
}

interface Subscriber {
  ws: WebSocket | undefined;
  readonly latest: Map<number, { stock: number; version: number }>;
}

export interface StockTruth {
  readonly stock: number;
  readonly version: number;
}

const RECONNECT_MS = 250;

export class StockSubscribers {
  private readonly subscribers: Subscriber[] = [];
  private closing = false;
  /** Connections lost and opened again. */
  reconnects = 0;

  constructor(
    /** `ws://host:port/ws` (nginx's). */
    private readonly url: string,
    private readonly productIds: readonly number[],
  ) {}

  /** Opens `count` subscribers; resolves once each has a snapshot of every product. */
  async open(count: number): Promise<void> {
    for (let i = 0; i < count; i += 1) this.subscribers.push({ ws: undefined, latest: new Map() });
    await Promise.all(this.subscribers.map((s) => this.connect(s)));
    const deadline = Date.now() + 30_000;
    while (this.subscribers.some((s) => s.latest.size < this.productIds.length)) {
      if (Date.now() > deadline) throw new Error('chaos: WebSocket subscribers got no snapshot within 30 s');
      await sleep(50);
    }
  }

  private connect(subscriber: Subscriber): Promise<void> {
    return new Promise((resolve) => {
      const ws = new WebSocket(this.url, { perMessageDeflate: false });
      subscriber.ws = ws;
      ws.on('message', (data: Buffer) => {
        let frame: StockFrame;
        try {
          frame = JSON.parse(data.toString()) as StockFrame;
        } catch {
          return;
        }
        if (frame.type !== 'stock') return;
        const known = subscriber.latest.get(frame.productId);
        if (known === undefined || frame.version > known.version)
          subscriber.latest.set(frame.productId, { stock: frame.stock, version: frame.version });
      });
      ws.once('open', () => {
        ws.send(JSON.stringify({ op: 'subscribe', ids: this.productIds }));
        resolve();
      });
      ws.on('error', () => undefined); // 'close' follows: reconnect there
      ws.once('close', () => {
        resolve();
        if (this.closing) return;
        this.reconnects += 1;
        setTimeout(() => void this.connect(subscriber), RECONNECT_MS);
      });
    });
  }

  /** (subscriber, product) pairs whose highest version is not `truth`'s. */
  stale(truth: ReadonlyMap<number, StockTruth>): number {
    let stale = 0;
    for (const s of this.subscribers)
      for (const [id, want] of truth) {
        const seen = s.latest.get(id);
        if (seen?.version !== want.version || seen.stock !== want.stock) stale += 1;
      }
    return stale;
  }

  /** Waits up to `timeoutMs` for every subscriber to hold `truth`; the pairs still stale. */
  async waitFresh(truth: ReadonlyMap<number, StockTruth>, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.stale(truth) > 0 && Date.now() < deadline) await sleep(100);
    return this.stale(truth);
  }

  close(): void {
    this.closing = true;
    for (const s of this.subscribers) s.ws?.terminate();
  }
}
