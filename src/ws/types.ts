import type { Static } from 'typebox';
import type {
  PingFrame,
  ServerFrame as ServerFrameSchema,
  StockFrame,
  SubscribeFrame,
  UnsubscribeFrame,
} from '../api/ws.js';

/** Wire formats a subscriber can pick with `Sec-WebSocket-Protocol`; JSON when it names none. */
export type WireFormat = 'json' | 'msgpack';
export const SUBPROTOCOLS: readonly WireFormat[] = ['json', 'msgpack'];

/**
 * Close codes the stock endpoint sends (README "WebSocket stock subscribers"). 4000-range codes are the
 * application's own; the others are RFC 6455's.
 */
export const WS_CLOSE = {
  /** The node is shutting down: reconnect (nginx sends the new connection to another node). */
  goingAway: 1001,
  /** A frame larger than WS_MAX_FRAME_BYTES. */
  frameTooLarge: 1009,
  /** Over WS_MAX_BACKPRESSURE_BYTES of unsent data for longer than WS_SLOW_CONSUMER_MS. */
  slowConsumer: 4001,
  /** MAX_BAD_FRAMES_IN_A_ROW frames answered with an error frame, without a good one in between. */
  tooManyBadFrames: 4002,
} as const;

/**
 * A product's committed stock and the row version it was committed at (versions only grow); `at`, when the
 * owner published the change (epoch ms, fractional), is absent in snapshots read from the cache. The shape
 * of a `stock` frame without its `type` (src/api/ws.ts).
 */
export type StockState = Omit<Static<typeof StockFrame>, 'type'>;

/** What a client may send, once checked (src/ws/frames.ts): a ping's ignored `ids` are not kept. */
export type ClientRequest =
  Static<typeof SubscribeFrame> | Static<typeof UnsubscribeFrame> | Omit<Static<typeof PingFrame>, 'ids'>;

/** What the server sends. `stock` frames are both snapshots and live changes: keep the highest version. */
export type ServerFrame = Static<typeof ServerFrameSchema>;

export interface StockSubscriptionLimits {
  /** Products one connection may subscribe to. Default 100. */
  maxSubscriptions: number;
  /** Largest client frame; a larger one closes the connection with 1009, bytes. Default 4096. */
  maxFrameBytes: number;
  /** A connection with no traffic for this long is closed; the server pings before that, s. Default 60. */
  idleTimeoutSeconds: number;
  /** Unsent bytes a connection may hold; past it live changes skip it until it drains, bytes. Default 64 KiB. */
  maxBackpressureBytes: number;
  /** How long a connection may stay over the backpressure limit before it is closed with 4001, ms. Default 5000. */
  slowConsumerMs: number;
}

export const wsDefaults = {
  path: '/ws',
  maxSubscriptions: 100,
  maxFrameBytes: 4 * 1024, // 4 KiB: a subscribe frame with the full cap of ids fits easily
  idleTimeoutSeconds: 60,
  maxBackpressureBytes: 64 * 1024, // 64 KiB: about 800 stock frames
  slowConsumerMs: 5_000, // 5 s
  /** Consecutive frames answered with an error before the connection is closed with 4002. */
  maxBadFramesInARow: 10,
  /** A dropped slow subscriber's close frame waits behind its unread data at least this long, ms. */
  slowCloseGraceMs: 5_000,
  /** uWS cuts (no close frame) anything past this; up to it the endpoint closes with 1009 itself, bytes. */
  hardFrameLimitBytes: 64 * 1024,
} as const;
