import type { HttpResponse, TemplatedApp, WebSocket } from 'uWebSockets.js';
import { AppError } from '../errors.js';
import { errorReply, writeReply } from '../http/reply.js';
import { remoteAddress } from '../http/uws.js';
import type { Logger } from '../logger.js';
import { decodeRequest, encodeFrame, errorFrame, refOfError, stockFrame } from './frames.js';
import { topicOf, type StockFeed } from './stock-feed.js';
import {
  SUBPROTOCOLS,
  WS_CLOSE,
  wsDefaults,
  type ClientRequest,
  type ServerFrame,
  type StockSubscriptionLimits,
  type WireFormat,
} from './types.js';

/**
 * The `/ws` endpoint: subscribe / unsubscribe, snapshots, slow consumers. uWS rules kept here: the
 * upgrade handler reads headers synchronously; after an await the socket may be closed (check `closed`)
 * and writes are corked; live changes reach sockets only through topics (StockFeed).
 *
 * Slow consumers: uWS skips a socket over `maxBackpressure` when publishing (it never buffers past it).
 * When such a socket drains to empty it gets the latest state of each of its products, so it ends on
 * the latest even if it skipped values. One that went over the limit and has not drained to empty
 * within `slowConsumerMs` loses its subscriptions and is closed with 4001 once its buffer is under the
 * limit again (or cut if it does not read that far within the close grace).
 */

interface Subscriber {
  format: WireFormat;
  closed: boolean;
  /** Products subscribed to. */
  count: number;
  badInARow: number;
  /** Since when the socket is over the backpressure limit (epoch ms). */
  overSince: number | undefined;
  /** Set when it was found too slow: no more data, closed with 4001 once under the limit. */
  droppingSince: number | undefined;
}

type Socket = WebSocket<Subscriber>;

const SEND_DROPPED = 2; // uWS send(): 0 = buffered, 1 = sent, 2 = dropped over maxBackpressure

export interface StockEndpointOptions {
  app: TemplatedApp;
  feed: StockFeed;
  limits: StockSubscriptionLimits;
  logger: Logger;
  /** Admission of an upgrade by its socket address and `X-Forwarded-For` (the per-IP limit); throws AppError. */
  admit?: (socketIp: string, forwardedFor: string | undefined) => void;
}

export interface StockEndpoint {
  stats(): {
    connections: number;
    subscriptions: number;
    /** Connections over the backpressure limit at the last sweep (skipping live changes). */
    lagging: number;
    slowConsumersDropped: number;
    badFrames: number;
    rejectedUpgrades: number;
  };
  /** Refuses new connections and closes every open one with 1001. */
  close(): void;
}

export function attachStockEndpoint(options: StockEndpointOptions): StockEndpoint {
  const { app, feed, limits } = options;
  const log = options.logger.child({ component: 'ws' });
  const sockets = new Set<Socket>();
  const counts = { slowConsumersDropped: 0, badFrames: 0, rejectedUpgrades: 0 };
  let subscriptions = 0;
  let lagging = 0;
  let closing = false;

  const send = (ws: Socket, frame: ServerFrame): void => {
    const data = ws.getUserData();
    if (data.closed || data.droppingSince !== undefined) return;
    if (ws.send(encodeFrame(data.format, frame), data.format === 'msgpack') === SEND_DROPPED)
      data.overSince ??= Date.now();
  };

  const fail = (ws: Socket, err: AppError, extra: { productIds?: number[]; ref?: string | number } = {}) =>
    ws.cork(() => send(ws, errorFrame(err, extra)));

  const unsubscribe = (ws: Socket, productId: number): boolean => {
    const data = ws.getUserData();
    if (!ws.unsubscribe(topicOf(data.format, productId))) return false;
    data.count -= 1;
    subscriptions -= 1;
    return true;
  };

  const subscribe = (ws: Socket, ids: number[], ref: string | number | undefined): void => {
    const data = ws.getUserData();
    const fresh = ids.filter((id) => !ws.isSubscribed(topicOf(data.format, id)));
    if (data.count + fresh.length > limits.maxSubscriptions) {
      const message = `subscribing to ${fresh.length} more would exceed ${limits.maxSubscriptions} products per connection (${data.count} now); unsubscribe first`;
      fail(ws, new AppError('TOO_MANY_SUBSCRIPTIONS', message, { field: 'ids' }), { ref });
      return;
    }
    // Subscribe before reading: a change committed meanwhile is published to this socket too.
    for (const id of fresh) ws.subscribe(topicOf(data.format, id));
    data.count += fresh.length;
    subscriptions += fresh.length;
    feed.readStocks(ids).then(
      (states) => {
        if (data.closed) return;
        const missing = ids.filter((_, i) => states[i] === undefined);
        for (const id of missing) unsubscribe(ws, id);
        ws.cork(() => {
          if (missing.length > 0) {
            const err = new AppError('PRODUCT_NOT_FOUND', `no product with id ${missing.join(', ')}`, {
              field: 'ids',
            });
            send(ws, errorFrame(err, { productIds: missing, ref }));
          }
          const found = ids.filter((_, i) => states[i] !== undefined);
          if (found.length > 0)
            send(ws, { type: 'subscribed', ids: found, ...(ref === undefined ? {} : { ref }) });
          for (const state of states) {
            if (state === undefined || !ws.isSubscribed(topicOf(data.format, state.productId))) continue;
            send(ws, stockFrame(feed.remember(state)));
          }
        });
      },
      (err: unknown) => {
        if (data.closed) return;
        for (const id of fresh) unsubscribe(ws, id);
        log.warn({ err: (err as Error).message }, 'snapshot read failed');
        const unavailable = new AppError(
          'DEPENDENCY_UNAVAILABLE',
          'could not read the current stock; retry',
          {
            retryAfterSeconds: 1,
          },
        );
        fail(ws, unavailable, { productIds: ids, ref });
      },
    );
  };

  const handle = (ws: Socket, request: ClientRequest): void => {
    switch (request.op) {
      case 'subscribe':
        subscribe(ws, request.ids, request.ref);
        return;
      case 'unsubscribe': {
        const ids = request.ids.filter((id) => unsubscribe(ws, id));
        ws.cork(() =>
          send(ws, { type: 'unsubscribed', ids, ...(request.ref === undefined ? {} : { ref: request.ref }) }),
        );
        return;
      }
      case 'ping':
        ws.cork(() => send(ws, { type: 'pong', ...(request.ref === undefined ? {} : { ref: request.ref }) }));
    }
  };

  /** Sends the latest state of each subscribed product (after the socket skipped values). */
  const catchUp = (ws: Socket): void => {
    const data = ws.getUserData();
    ws.cork(() => {
      for (const topic of ws.getTopics()) {
        const state = feed.latestOf(Number(topic.slice(2)));
        if (state !== undefined) send(ws, stockFrame(state));
      }
    });
    data.overSince = undefined;
  };

  const dropSlow = (ws: Socket, now: number): void => {
    const data = ws.getUserData();
    counts.slowConsumersDropped += 1;
    data.droppingSince = now;
    for (const topic of ws.getTopics()) unsubscribe(ws, Number(topic.slice(2)));
    log.info({ buffered: ws.getBufferedAmount() }, 'slow subscriber dropped');
    // The close frame is sent only under the limit (uWS drops frames over it): now, or when it drains.
    if (ws.getBufferedAmount() < limits.maxBackpressureBytes) ws.end(WS_CLOSE.slowConsumer, 'slow consumer');
  };

  // A dropped subscriber gets this long to read down to its close frame before the connection is cut.
  const closeGraceMs = Math.max(limits.slowConsumerMs, wsDefaults.slowCloseGraceMs);
  // The sweep runs only while a subscriber is connected: an idle node has no timer for it.
  let sweep: NodeJS.Timeout | undefined;
  const sweepEveryMs = Math.min(1_000, Math.max(25, Math.floor(limits.slowConsumerMs / 4)));
  const sweeping = (on: boolean): void => {
    if (on && sweep === undefined) sweep = setInterval(sweepOnce, sweepEveryMs).unref();
    if (!on && sweep !== undefined) {
      clearInterval(sweep);
      sweep = undefined;
      lagging = 0;
    }
  };
  const sweepOnce = (): void => {
    const now = Date.now();
    lagging = 0;
    for (const ws of sockets) {
      const data = ws.getUserData();
      if (data.droppingSince !== undefined) {
        // It has not read down to the close frame: cut it (what it holds is bounded and freed).
        if (now - data.droppingSince >= closeGraceMs) ws.close();
        continue;
      }
      // Behind = it went over the limit (uWS skipped it) and has not read everything since.
      const buffered = ws.getBufferedAmount();
      if (buffered === 0) data.overSince = undefined;
      else if (buffered >= limits.maxBackpressureBytes) data.overSince ??= now;
      if (data.overSince === undefined) continue;
      lagging += 1;
      if (now - data.overSince >= limits.slowConsumerMs) dropSlow(ws, now);
    }
  };

  app.ws<Subscriber>(wsDefaults.path, {
    maxPayloadLength: Math.max(wsDefaults.hardFrameLimitBytes, 4 * limits.maxFrameBytes),
    idleTimeout: limits.idleTimeoutSeconds,
    sendPingsAutomatically: true,
    maxBackpressure: limits.maxBackpressureBytes,
    closeOnBackpressureLimit: 0, // a slow consumer is closed by the sweep, with a code that says so
    upgrade: (res, req, context) => {
      // HttpRequest is stack-allocated: read every header before anything else.
      const key = req.getHeader('sec-websocket-key');
      const offered = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const forwardedFor = req.getHeader('x-forwarded-for');
      try {
        options.admit?.(remoteAddress(res), forwardedFor || undefined);
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        counts.rejectedUpgrades += 1;
        reject(res, err);
        return;
      }
      if (closing) {
        counts.rejectedUpgrades += 1;
        reject(
          res,
          new AppError('SHUTTING_DOWN', 'this node is shutting down; connect again', {
            retryAfterSeconds: 1,
          }),
        );
        return;
      }
      const names = offered
        .split(',')
        .map((p) => p.trim())
        .filter((p) => p !== '');
      const chosen = names.find((p): p is WireFormat => (SUBPROTOCOLS as readonly string[]).includes(p));
      if (names.length > 0 && chosen === undefined) {
        counts.rejectedUpgrades += 1;
        const message = `unsupported subprotocol ${JSON.stringify(offered)}: offer "json" or "msgpack"`;
        reject(res, new AppError('VALIDATION_FAILED', message, { field: 'sec-websocket-protocol' }));
        return;
      }
      const data: Subscriber = {
        format: chosen ?? 'json',
        closed: false,
        count: 0,
        badInARow: 0,
        overSince: undefined,
        droppingSince: undefined,
      };
      res.upgrade<Subscriber>(data, key, chosen ?? '', extensions, context);
    },
    open: (ws) => {
      sockets.add(ws);
      sweeping(true);
    },
    message: (ws, message) => {
      const data = ws.getUserData();
      if (data.droppingSince !== undefined) return;
      if (message.byteLength > limits.maxFrameBytes) {
        counts.badFrames += 1;
        ws.end(WS_CLOSE.frameTooLarge, `frame over ${limits.maxFrameBytes} bytes`);
        return;
      }
      let request: ClientRequest;
      try {
        request = decodeRequest(data.format, message, limits.maxSubscriptions);
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        counts.badFrames += 1;
        data.badInARow += 1;
        if (data.badInARow >= wsDefaults.maxBadFramesInARow) {
          ws.end(WS_CLOSE.tooManyBadFrames, `${data.badInARow} bad frames in a row`);
          return;
        }
        const ref = refOfError(err);
        fail(ws, err, ref === undefined ? {} : { ref });
        return;
      }
      data.badInARow = 0;
      handle(ws, request);
    },
    drain: (ws) => {
      const data = ws.getUserData();
      const buffered = ws.getBufferedAmount();
      if (data.droppingSince !== undefined) {
        if (buffered < limits.maxBackpressureBytes) ws.end(WS_CLOSE.slowConsumer, 'slow consumer');
        return;
      }
      // Backpressure is over: whatever uWS skipped meanwhile is replaced by the latest state.
      if (buffered === 0 && data.count > 0) catchUp(ws);
    },
    subscription: (_ws, topic, newCount) => {
      if (newCount === 0) feed.forget(Number(Buffer.from(topic).toString().slice(2)));
    },
    close: (ws) => {
      const data = ws.getUserData();
      data.closed = true;
      subscriptions -= data.count;
      data.count = 0;
      sockets.delete(ws);
      if (sockets.size === 0) sweeping(false);
    },
  });

  return {
    stats: () => ({ connections: sockets.size, subscriptions, lagging, ...counts }),
    close() {
      closing = true;
      sweeping(false);
      for (const ws of [...sockets]) ws.end(WS_CLOSE.goingAway, 'node shutting down');
    },
  };
}

function reject(res: HttpResponse, err: AppError): void {
  writeReply(res, errorReply(err), true);
}
