import { AppError } from '../../errors.js';
import { PeerConnection, type ConnectionCounters, type ConnectionSettings } from './connection.js';
import {
  channelDefaults,
  checkSecret,
  exponentialBackoff,
  type PeerClientOptions,
  type PeerClientStats,
} from './types.js';

/**
 * The calling end of the peer channel: one per process, one persistent multiplexed connection per peer
 * address, opened on first use. Errors a call can fail with (all AppErrors):
 * - PEER_UNAVAILABLE (retryable): no connection before the deadline, connect failed or backing off,
 *   or the connection dropped with the call in flight (the message says whether it was sent);
 * - DEADLINE_EXCEEDED (retryable): sent, no answer before the deadline (a late answer is dropped);
 * - INTERNAL (not retryable): the peer refused our secret — a configuration fault retries cannot fix;
 * - OVERLOADED / PAYLOAD_TOO_LARGE: local send buffer full / request over maxPayloadBytes;
 * - SHUTTING_DOWN: the client was closed;
 * - any code the remote handler threw (unknown codes become INTERNAL).
 */
export class PeerClient {
  readonly #settings: ConnectionSettings;
  readonly #connections = new Map<string, PeerConnection>();
  readonly #counters: ConnectionCounters = { connectionsOpened: 0, connectFailures: 0, lateReplies: 0 };
  #closed = false;

  constructor(options: PeerClientOptions) {
    checkSecret(options.secret, 'PeerClient');
    this.#settings = Object.freeze({
      secret: options.secret,
      logger: options.logger,
      path: options.path ?? channelDefaults.path,
      connectTimeoutMs: options.connectTimeoutMs ?? channelDefaults.connectTimeoutMs,
      maxPayloadBytes: options.maxPayloadBytes ?? channelDefaults.maxPayloadBytes,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? channelDefaults.heartbeatIntervalMs,
      maxBufferedBytes: options.maxBufferedBytes ?? channelDefaults.maxBufferedBytes,
      backoff: options.backoff ?? exponentialBackoff,
    });
  }

  /**
   * Sends `op` with `body` to the node at `address` (`host:port`) and resolves with the handler's
   * result. `deadline` is absolute, epoch milliseconds; it travels with the request.
   */
  call(address: string, op: string, body: unknown, deadline: number): Promise<unknown> {
    if (this.#closed) return Promise.reject(new AppError('SHUTTING_DOWN', 'the peer client is closed'));
    let connection = this.#connections.get(address);
    if (!connection) {
      connection = new PeerConnection(address, this.#settings, this.#counters);
      this.#connections.set(address, connection);
    }
    return connection.call(op, body, deadline);
  }

  stats(): PeerClientStats {
    let openConnections = 0;
    let pendingCalls = 0;
    for (const connection of this.#connections.values()) {
      if (connection.isOpen) openConnections += 1;
      pendingCalls += connection.pendingCalls;
    }
    return { openConnections, pendingCalls, ...this.#counters };
  }

  /** Fails pending calls with SHUTTING_DOWN and closes every connection. */
  async close(): Promise<void> {
    this.#closed = true;
    const reason = new AppError('SHUTTING_DOWN', 'the peer client closed with this call pending');
    const connections = [...this.#connections.values()];
    this.#connections.clear();
    await Promise.all(connections.map((connection) => connection.close(reason)));
  }
}
