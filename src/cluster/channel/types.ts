import type { Logger } from '../../logger.js';
import { InvariantError } from '../../errors.js';

/** Serves one forwarded request; throw an AppError to answer with its code. */
export type PeerHandler = (op: string, body: unknown, deadline: number) => Promise<unknown>;

export interface PeerServerOptions {
  /** Shared by every node; a peer must present it in `x-peer-secret` on upgrade. Required, non-empty. */
  secret: string;
  handle: PeerHandler;
  logger: Logger;
  /** URL path of the channel. Default `/internal/peer`. */
  path?: string;
  /** Largest frame accepted or sent, bytes. Default 1 MiB. */
  maxPayloadBytes?: number;
  /** A socket with no traffic for this long is closed; uWS pings before that. Seconds, default 32. */
  idleTimeoutSeconds?: number;
  /** Bytes uWS may buffer for a slow peer; a reply that would exceed it closes the socket. Default 8 MiB. */
  maxBackpressureBytes?: number;
  /** Requests of one connection served at once; past it they are answered OVERLOADED. Default 10,000. */
  maxInFlightPerConnection?: number;
}

export interface PeerServerStats {
  /** Peer sockets open now. */
  connections: number;
  /** Requests whose handler has not finished yet. */
  inFlight: number;
  /** Sockets closed for a malformed frame, since start. */
  malformedFrames: number;
  /** Upgrades refused for a missing or wrong secret, since start. */
  rejectedUpgrades: number;
}

export interface PeerServer {
  stats(): PeerServerStats;
  /** Closes every peer socket (code 1001); callers' pending calls fail with PEER_UNAVAILABLE at once. */
  close(): void;
}

/** Delay before connect attempt `attempt` (1 = the first retry after a failure), milliseconds. */
export type ReconnectBackoff = (attempt: number) => number;

export interface PeerClientOptions {
  /** The same secret the peers' servers were given. Required, non-empty. */
  secret: string;
  logger: Logger;
  /** URL path of the channel. Default `/internal/peer`. */
  path?: string;
  /** Opening handshake (TCP connect + upgrade) limit, milliseconds. Default 2,000. */
  connectTimeoutMs?: number;
  /** Largest frame sent or accepted, bytes. Default 1 MiB. */
  maxPayloadBytes?: number;
  /** A connection is pinged this often and dropped when a whole interval passes silent. Ms, default 10,000. */
  heartbeatIntervalMs?: number;
  /** Calls are refused with OVERLOADED while this many bytes wait in a socket's send buffer. Default 8 MiB. */
  maxBufferedBytes?: number;
  /** After a failed connect, calls fail fast until this delay has passed. Default 50 ms doubling to 2 s, ±20%. */
  backoff?: ReconnectBackoff;
}

export interface PeerClientStats {
  /** Open WebSocket connections now. */
  openConnections: number;
  /** Calls waiting for a connection or an answer. */
  pendingCalls: number;
  /** Connections successfully opened since start. */
  connectionsOpened: number;
  /** Connect attempts that failed since start. */
  connectFailures: number;
  /** Answers that arrived after their call had timed out or failed, and were dropped. */
  lateReplies: number;
}

const MiB = 1024 * 1024;

export const channelDefaults = {
  path: '/internal/peer',
  maxPayloadBytes: 1 * MiB, // 1 MiB: forwarded purchases are a few hundred bytes
  idleTimeoutSeconds: 32, // uWS rounds to a multiple of 4
  maxBackpressureBytes: 8 * MiB, // 8 MiB
  maxInFlightPerConnection: 10_000,
  connectTimeoutMs: 2_000, // 2 s
  heartbeatIntervalMs: 10_000, // 10 s, well inside the server's idle timeout
  maxBufferedBytes: 8 * MiB, // 8 MiB
  secretHeader: 'x-peer-secret',
} as const;

/** 50 ms, 100 ms, … capped at 2 s, with ±20% jitter so nodes do not reconnect in lockstep. */
export const exponentialBackoff: ReconnectBackoff = (attempt) => {
  const base = Math.min(2_000, 50 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
};

export function checkSecret(secret: unknown, who: string): void {
  if (typeof secret !== 'string' || secret.length === 0) {
    throw new InvariantError(
      `${who}: options.secret must be a non-empty string (the cluster's shared peer secret)`,
    );
  }
}
