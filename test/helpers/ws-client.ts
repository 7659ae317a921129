import { decode, encode } from '@msgpack/msgpack';
import type { Test } from 'tap';
import type { TSchema } from 'typebox';
import { Compile } from '#typebox';
import WebSocket from 'ws';
import { publishedDocument } from './http.js';

/** The server frames' schema of the published document: every frame a subscriber receives must match it. */
const serverFrame = Compile(publishedDocument.components.schemas['WsServerFrame'] as TSchema);

/** Why `frame` is not a documented server frame; undefined if it is. */
export function frameMismatch(frame: unknown): string | undefined {
  if (serverFrame.Check(frame)) return undefined;
  const errors = serverFrame.Errors(frame).slice(0, 3);
  return `${errors.map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ')}: ${JSON.stringify(frame)}`;
}

export interface StockSeen {
  productId: number;
  stock: number;
  version: number;
  at?: number;
}

export interface Subscriber {
  ws: WebSocket;
  /** Every frame received, decoded, in order. */
  frames: any[];
  /** Per product, the state a client keeps: the highest version seen. */
  latest: Map<number, StockSeen>;
  /** Per product, the versions applied (newer than the one before), in order. */
  applied: Map<number, StockSeen[]>;
  /** Stock frames discarded as not newer (duplicates or out of order). */
  discarded: number;
  send(frame: unknown): void;
  /** Sends raw bytes or text as is. */
  sendRaw(data: string | Buffer, binary?: boolean): void;
  /** Resolves with the first frame (from now on, or already received when `past`) that matches. */
  waitFor(match: (frame: any) => boolean, timeoutMs?: number, past?: boolean): Promise<any>;
  /** Resolves once the product's latest stock is `stock` (and at least `version` when given). */
  waitForStock(productId: number, stock: number, timeoutMs?: number): Promise<StockSeen>;
  closed: Promise<{ code: number; reason: string }>;
}

/**
 * A stock subscriber as a client would write one (the `ws` package): keeps the highest version per
 * product. Closed when the test ends.
 */
export async function connectSubscriber(
  t: Test,
  url: string,
  options: { protocol?: string | string[] } = {},
): Promise<Subscriber> {
  const ws = new WebSocket(url, options.protocol ?? []);
  let binary = false;
  const frames: any[] = [];
  const latest = new Map<number, StockSeen>();
  const applied = new Map<number, StockSeen[]>();
  const waiters = new Set<{ match: (frame: any) => boolean; resolve: (frame: any) => void }>();
  let discarded = 0;
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    const frame = isBinary ? decode(data) : JSON.parse(data.toString());
    const why = frameMismatch(frame);
    if (why !== undefined) t.fail(`contract: not a documented server frame: ${why}`);
    frames.push(frame);
    if (frame.type === 'stock') {
      const known = latest.get(frame.productId);
      if (known === undefined || frame.version > known.version) {
        latest.set(frame.productId, frame);
        applied.set(frame.productId, [...(applied.get(frame.productId) ?? []), frame]);
      } else {
        discarded += 1;
      }
    }
    for (const waiter of [...waiters]) {
      if (waiter.match(frame)) {
        waiters.delete(waiter);
        waiter.resolve(frame);
      }
    }
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  binary = ws.protocol === 'msgpack';
  t.teardown(() => ws.terminate());
  const subscriber: Subscriber = {
    ws,
    frames,
    latest,
    applied,
    get discarded() {
      return discarded;
    },
    send: (frame) => (binary ? ws.send(encode(frame)) : ws.send(JSON.stringify(frame))),
    sendRaw: (data, isBinary = false) => ws.send(data, { binary: isBinary }),
    waitFor(match, timeoutMs = 10_000, past = false) {
      if (past) {
        const found = frames.find(match);
        if (found !== undefined) return Promise.resolve(found);
      }
      return new Promise((resolve, reject) => {
        const waiter = { match, resolve };
        waiters.add(waiter);
        setTimeout(() => {
          if (!waiters.delete(waiter)) return;
          reject(
            new Error(`no matching frame within ${timeoutMs} ms; last: ${JSON.stringify(frames.slice(-3))}`),
          );
        }, timeoutMs).unref();
      });
    },
    async waitForStock(productId, stock, timeoutMs = 15_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const seen = latest.get(productId);
        if (seen?.stock === stock) return seen;
        if (Date.now() > until)
          throw new Error(
            `product ${productId}: stock ${seen?.stock} (v${seen?.version}), expected ${stock}`,
          );
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    closed,
  };
  return subscriber;
}

export const wsUrl = (base: string): string => `${base.replace(/^http/, 'ws')}/ws`;
