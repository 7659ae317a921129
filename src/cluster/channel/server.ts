import { createHash, timingSafeEqual } from 'node:crypto';
import type { TemplatedApp, WebSocket } from 'uWebSockets.js';
import { AppError } from '../../errors.js';
import { remoteAddress } from '../../http/uws.js';
import {
  CLOSE_CODES,
  decodeRequestFrame,
  encodeFrame,
  MalformedFrameError,
  toRemoteError,
  type RemoteError,
  type RequestFrame,
} from './frames.js';
import { channelDefaults, checkSecret, type PeerServer, type PeerServerOptions } from './types.js';

/**
 * The server end of the peer channel, on the HTTP server's uWS app (same port). uWS rules kept here:
 * the upgrade handler reads headers synchronously; a socket may close while a handler awaits, so every
 * late send checks the `closed` flag first and is corked.
 */

interface PeerSocketData {
  remote: string;
  closed: boolean;
  inFlight: number;
}

type PeerSocket = WebSocket<PeerSocketData>;

const SEND_DROPPED = 2; // uWS send(): 0 = buffered, 1 = sent, 2 = dropped over maxBackpressure

/** The request id a forwarded purchase or settlement carries in its body, for error lines. */
const requestIdOf = (body: unknown): unknown =>
  typeof body === 'object' && body !== null ? (body as { requestId?: unknown }).requestId : undefined;

const digest = (text: string): Buffer => createHash('sha256').update(text).digest();

export function attachPeerServer(app: TemplatedApp, options: PeerServerOptions): PeerServer {
  checkSecret(options.secret, 'attachPeerServer');
  const path = options.path ?? channelDefaults.path;
  const maxPayloadBytes = options.maxPayloadBytes ?? channelDefaults.maxPayloadBytes;
  const maxInFlight = options.maxInFlightPerConnection ?? channelDefaults.maxInFlightPerConnection;
  const maxBackpressure = options.maxBackpressureBytes ?? channelDefaults.maxBackpressureBytes;
  const log = options.logger.child({ component: 'peer-server' });
  // Equal-length digests let timingSafeEqual compare secrets of any length.
  const secretDigest = digest(options.secret);
  const sockets = new Set<PeerSocket>();
  let inFlight = 0;
  let malformedFrames = 0;
  let rejectedUpgrades = 0;

  /** Sends one frame; after an await the socket may be gone, and the write must be corked. */
  const send = (ws: PeerSocket, frame: Uint8Array): void => {
    if (ws.getUserData().closed) return;
    ws.cork(() => {
      // A dropped reply would leave its caller waiting until the deadline: close so every call fails now.
      if (ws.send(frame, true) === SEND_DROPPED) ws.end(CLOSE_CODES.tryAgainLater, 'peer is not reading');
    });
  };

  const sendError = (ws: PeerSocket, id: number, error: RemoteError): void =>
    send(ws, encodeFrame({ t: 'res', id, ok: false, error }));

  const sendResult = (ws: PeerSocket, request: RequestFrame, body: unknown): void => {
    let frame: Uint8Array;
    try {
      frame = encodeFrame({ t: 'res', id: request.id, ok: true, body });
    } catch (err) {
      log.error(
        { err, op: request.op, reqId: requestIdOf(request.body) },
        'peer handler returned a value msgpack cannot encode',
      );
      sendError(ws, request.id, toRemoteError(err));
      return;
    }
    if (frame.byteLength > maxPayloadBytes) {
      log.error({ op: request.op, bytes: frame.byteLength }, 'peer reply larger than maxPayloadBytes');
      sendError(ws, request.id, toRemoteError(new AppError('INTERNAL', 'reply too large for the channel')));
      return;
    }
    send(ws, frame);
  };

  const serve = (ws: PeerSocket, request: RequestFrame): void => {
    const data = ws.getUserData();
    if (request.deadline <= Date.now()) {
      const late = new AppError('DEADLINE_EXCEEDED', `${request.op} reached this node after its deadline`);
      sendError(ws, request.id, toRemoteError(late));
      return;
    }
    if (data.inFlight >= maxInFlight || ws.getBufferedAmount() > maxBackpressure / 2) {
      const busy = new AppError('OVERLOADED', `peer ${data.remote} has too many requests in flight`, {
        retryAfterSeconds: 1,
      });
      sendError(ws, request.id, toRemoteError(busy));
      return;
    }
    data.inFlight += 1;
    inFlight += 1;
    Promise.resolve()
      .then(() => options.handle(request.op, request.body, request.deadline))
      .then(
        (body) => sendResult(ws, request, body),
        (err: unknown) => {
          if (!(err instanceof AppError))
            log.error({ err, op: request.op, reqId: requestIdOf(request.body) }, 'peer handler failed');
          sendError(ws, request.id, toRemoteError(err));
        },
      )
      .finally(() => {
        data.inFlight -= 1;
        inFlight -= 1;
      })
      .catch((err: unknown) => log.error({ err }, 'peer reply failed'));
  };

  app.ws<PeerSocketData>(path, {
    maxPayloadLength: maxPayloadBytes,
    idleTimeout: options.idleTimeoutSeconds ?? channelDefaults.idleTimeoutSeconds,
    sendPingsAutomatically: true,
    maxBackpressure,
    closeOnBackpressureLimit: 0, // we close ourselves when a reply is dropped (see send)
    upgrade: (res, req, context) => {
      // HttpRequest is stack-allocated: read every header before anything else.
      const presented = req.getHeader(channelDefaults.secretHeader);
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const remote = remoteAddress(res);
      if (!timingSafeEqual(digest(presented), secretDigest)) {
        rejectedUpgrades += 1;
        log.warn({ remote }, 'peer upgrade refused: missing or wrong x-peer-secret');
        res.writeStatus('401 Unauthorized').end('missing or wrong peer secret', true);
        return;
      }
      res.upgrade<PeerSocketData>({ remote, closed: false, inFlight: 0 }, key, protocol, extensions, context);
    },
    open: (ws) => {
      sockets.add(ws);
    },
    message: (ws, message, isBinary) => {
      if (!isBinary) {
        malformedFrames += 1;
        ws.end(CLOSE_CODES.unsupportedData, 'binary msgpack frames only');
        return;
      }
      let request: RequestFrame;
      try {
        // Copy: uWS reuses `message` after this callback, and msgpack binaries are views into it.
        request = decodeRequestFrame(new Uint8Array(message.slice(0)));
      } catch (err) {
        if (!(err instanceof MalformedFrameError)) throw err;
        malformedFrames += 1;
        log.warn({ remote: ws.getUserData().remote, reason: err.message }, 'malformed peer frame');
        ws.end(CLOSE_CODES.malformedFrame, 'malformed frame');
        return;
      }
      serve(ws, request);
    },
    close: (ws) => {
      ws.getUserData().closed = true;
      sockets.delete(ws);
    },
  });

  return {
    stats: () => ({ connections: sockets.size, inFlight, malformedFrames, rejectedUpgrades }),
    close() {
      for (const ws of [...sockets]) ws.end(CLOSE_CODES.goingAway, 'node shutting down');
    },
  };
}
