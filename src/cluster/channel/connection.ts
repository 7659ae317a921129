import WebSocket from 'ws';
import { AppError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import {
  decodeResponseFrame,
  encodeFrame,
  fromRemoteError,
  MalformedFrameError,
  requestProblem,
  type ResponseFrame,
} from './frames.js';
import { channelDefaults, type ReconnectBackoff } from './types.js';

/**
 * One persistent WebSocket to one peer, shared by every call to it. Calls carry a per-connection
 * counter as correlation id; each call has a timer at its deadline. The socket opens on the first call;
 * a failed connect fails the calls waiting for it and makes later calls fail fast until the backoff
 * delay has passed (the caller owns the retry policy); a dropped socket fails its calls at once.
 */

export interface ConnectionSettings {
  secret: string;
  path: string;
  connectTimeoutMs: number;
  maxPayloadBytes: number;
  heartbeatIntervalMs: number;
  maxBufferedBytes: number;
  backoff: ReconnectBackoff;
  logger: Logger;
}

/** Counters shared by every connection of one client. */
export interface ConnectionCounters {
  connectionsOpened: number;
  connectFailures: number;
  lateReplies: number;
}

const MAX_TIMER_MS = 2 ** 31 - 1; // setTimeout fires at once past this

interface PendingCall {
  op: string;
  /** The encoded request until it is written to the socket, then undefined. */
  frame: Uint8Array | undefined;
  resolve: (body: unknown) => void;
  reject: (err: AppError) => void;
  timer: NodeJS.Timeout;
}

export class PeerConnection {
  readonly #address: string;
  readonly #settings: ConnectionSettings;
  readonly #counters: ConnectionCounters;
  readonly #log: Logger;
  readonly #calls = new Map<number, PendingCall>();
  #socket: WebSocket | undefined;
  #open = false;
  #closed = false;
  #nextId = 0;
  #failures = 0;
  #retryAt = 0;
  #lastFailure: AppError | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #heard = false;

  constructor(address: string, settings: ConnectionSettings, counters: ConnectionCounters) {
    this.#address = address;
    this.#settings = settings;
    this.#counters = counters;
    this.#log = settings.logger.child({ component: 'peer-client', peer: address });
  }

  get isOpen(): boolean {
    return this.#open;
  }

  get pendingCalls(): number {
    return this.#calls.size;
  }

  call(op: string, body: unknown, deadline: number): Promise<unknown> {
    if (this.#closed) return Promise.reject(new AppError('SHUTTING_DOWN', 'the peer client is closed'));
    // The peer would close the shared socket on such a frame, failing every other call with it.
    const problem = requestProblem(op, deadline);
    if (problem) return Promise.reject(new AppError('INTERNAL', `bad peer call: ${problem}`));
    const now = Date.now();
    if (deadline <= now) {
      return Promise.reject(
        new AppError('DEADLINE_EXCEEDED', `${op} reached its deadline before it was sent`),
      );
    }
    if (!this.#open && !this.#socket && now < this.#retryAt && this.#lastFailure) {
      const { code, message } = this.#lastFailure;
      const wait = this.#retryAt - now;
      return Promise.reject(new AppError(code, `${message}; next connect attempt in ${wait} ms`));
    }
    const id = this.#allocateId();
    let frame: Uint8Array;
    try {
      frame = encodeFrame({ t: 'req', id, op, deadline, body });
    } catch (cause) {
      return Promise.reject(new AppError('INTERNAL', `the body of ${op} cannot be encoded`, { cause }));
    }
    if (frame.byteLength > this.#settings.maxPayloadBytes) {
      const limit = this.#settings.maxPayloadBytes;
      const message = `${op} is ${frame.byteLength} bytes encoded, over the channel's maxPayloadBytes ${limit}`;
      return Promise.reject(new AppError('PAYLOAD_TOO_LARGE', message));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.#expire(id), Math.min(deadline - now, MAX_TIMER_MS));
      const call: PendingCall = { op, frame, resolve, reject, timer };
      this.#calls.set(id, call);
      if (this.#open) this.#send(id, call);
      else this.#connect();
    });
  }

  /** Fails every call with `reason` and closes the socket (code 1001), forcibly after 1 s. */
  close(reason: AppError): Promise<void> {
    this.#closed = true;
    this.#failAll(() => reason);
    const socket = this.#socket;
    if (!socket) return Promise.resolve();
    return new Promise((resolve) => {
      const force = setTimeout(() => socket.terminate(), 1_000).unref();
      socket.once('close', () => {
        clearTimeout(force);
        resolve();
      });
      socket.close(1001, 'node shutting down');
    });
  }

  #allocateId(): number {
    // Wraps at 2^32 (5-byte msgpack uint); ids still pending are skipped.
    do this.#nextId = this.#nextId >= 0xffffffff ? 1 : this.#nextId + 1;
    while (this.#calls.has(this.#nextId));
    return this.#nextId;
  }

  #send(id: number, call: PendingCall): void {
    const socket = this.#socket;
    if (!socket || !call.frame) return;
    if (socket.bufferedAmount > this.#settings.maxBufferedBytes) {
      const busy = `${socket.bufferedAmount} bytes wait to be sent to peer ${this.#address}`;
      this.#settle(id, new AppError('OVERLOADED', busy, { retryAfterSeconds: 1 }));
      return;
    }
    const { frame } = call;
    call.frame = undefined;
    socket.send(frame, { binary: true });
  }

  #settle(id: number, outcome: AppError | { body: unknown }): void {
    const call = this.#calls.get(id);
    if (!call) return;
    this.#calls.delete(id);
    clearTimeout(call.timer);
    if (outcome instanceof AppError) call.reject(outcome);
    else call.resolve(outcome.body);
  }

  #expire(id: number): void {
    const call = this.#calls.get(id);
    if (!call) return;
    const error = call.frame
      ? new AppError(
          'PEER_UNAVAILABLE',
          `no connection to peer ${this.#address} before ${call.op}'s deadline`,
        )
      : new AppError(
          'DEADLINE_EXCEEDED',
          `peer ${this.#address} did not answer ${call.op} before its deadline`,
        );
    this.#settle(id, error);
  }

  #failAll(errorFor: (call: PendingCall) => AppError): void {
    for (const [id, call] of [...this.#calls]) this.#settle(id, errorFor(call));
  }

  #connect(): void {
    if (this.#socket || this.#closed) return;
    const { secret, path, connectTimeoutMs, maxPayloadBytes } = this.#settings;
    let socket: WebSocket;
    try {
      socket = new WebSocket(`ws://${this.#address}${path}`, {
        headers: { [channelDefaults.secretHeader]: secret },
        handshakeTimeout: connectTimeoutMs,
        maxPayload: maxPayloadBytes,
        perMessageDeflate: false,
        followRedirects: false,
      });
    } catch (cause) {
      this.#connectFailed(new AppError('PEER_UNAVAILABLE', `bad peer address ${this.#address}`, { cause }));
      return;
    }
    this.#socket = socket;
    let refusedStatus: number | undefined;
    let cause: unknown;
    socket.on('unexpected-response', (_req, res) => {
      refusedStatus = res.statusCode;
      res.resume();
      socket.terminate();
    });
    socket.on('error', (err) => {
      cause = err;
    });
    socket.on('open', () => this.#opened(socket));
    socket.on('message', (data, isBinary) => this.#received(socket, data as Buffer, isBinary));
    const heard = (): void => {
      this.#heard = true;
    };
    socket.on('ping', heard);
    socket.on('pong', heard);
    socket.on('close', (code) => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      clearInterval(this.#heartbeat);
      const wasOpen = this.#open;
      this.#open = false;
      if (this.#closed) return; // close() already failed every call
      if (wasOpen) {
        this.#log.warn({ code }, 'peer connection lost');
        this.#failAll((call) => {
          const fate = call.frame ? 'was not sent' : 'may or may not have been applied';
          const message = `connection to peer ${this.#address} lost (code ${code}); ${call.op} ${fate}`;
          return new AppError('PEER_UNAVAILABLE', message);
        });
        return;
      }
      this.#connectFailed(this.#describeFailure(refusedStatus, cause));
    });
  }

  #describeFailure(refusedStatus: number | undefined, cause: unknown): AppError {
    if (refusedStatus === 401) {
      // Retrying cannot fix a secret mismatch: INTERNAL (non-retryable), with the fix in the message.
      const fix = 'every node must be configured with the same peer secret';
      return new AppError('INTERNAL', `peer ${this.#address} refused our peer secret (401); ${fix}`);
    }
    const why = refusedStatus
      ? `HTTP ${refusedStatus} on upgrade`
      : String((cause as Error | undefined)?.message);
    return new AppError('PEER_UNAVAILABLE', `cannot connect to peer ${this.#address}: ${why}`, { cause });
  }

  #connectFailed(error: AppError): void {
    this.#counters.connectFailures += 1;
    this.#failures += 1;
    this.#lastFailure = error;
    this.#retryAt = Date.now() + this.#settings.backoff(this.#failures);
    this.#log.warn(
      { code: error.code, reason: error.message, attempt: this.#failures },
      'peer connect failed',
    );
    this.#failAll(() => error);
  }

  #opened(socket: WebSocket): void {
    if (this.#socket !== socket) return;
    this.#open = true;
    this.#failures = 0;
    this.#lastFailure = undefined;
    this.#counters.connectionsOpened += 1;
    this.#heard = true;
    this.#heartbeat = setInterval(() => {
      if (!this.#heard) {
        this.#log.warn('peer silent for a whole heartbeat interval; dropping the connection');
        socket.terminate();
        return;
      }
      this.#heard = false;
      socket.ping();
    }, this.#settings.heartbeatIntervalMs).unref();
    for (const [id, call] of this.#calls) this.#send(id, call);
  }

  #received(socket: WebSocket, data: Buffer, isBinary: boolean): void {
    if (this.#socket !== socket) return;
    this.#heard = true;
    let frame: ResponseFrame;
    try {
      if (!isBinary) throw new MalformedFrameError('text frame on a binary channel');
      frame = decodeResponseFrame(data);
    } catch (err) {
      if (!(err instanceof MalformedFrameError)) throw err;
      this.#log.error({ reason: err.message }, 'malformed frame from peer; dropping the connection');
      socket.terminate();
      return;
    }
    if (!this.#calls.has(frame.id)) {
      this.#counters.lateReplies += 1; // the call already timed out or failed: nobody waits for it
      return;
    }
    this.#settle(frame.id, frame.ok ? { body: frame.body } : fromRemoteError(frame.error, this.#address));
  }
}
