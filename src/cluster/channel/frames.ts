import { Decoder, Encoder } from '@msgpack/msgpack';
import { AppError, ERROR_CODES, type ErrorCode } from '../../errors.js';

/**
 * The wire format of the peer channel: one msgpack-encoded object per binary WebSocket message.
 * Frames from the other side are untrusted input: every field is checked before use, and a frame that
 * fails the check closes the socket (it means a bug or a stranger, not a recoverable condition).
 */

export interface RequestFrame {
  t: 'req';
  /** Correlation id, unique among the sender's pending calls on one connection. */
  id: number;
  op: string;
  /** Absolute deadline, epoch milliseconds (both nodes' clocks are NTP-synced). */
  deadline: number;
  body: unknown;
}

export interface RemoteError {
  code: string;
  message: string;
  retryable: boolean;
  field?: string;
  retryAfterSeconds?: number;
}

export type ResponseFrame =
  { t: 'res'; id: number; ok: true; body: unknown } | { t: 'res'; id: number; ok: false; error: RemoteError };

/** WebSocket close codes the channel uses (RFC 6455 §7.4.1). */
export const CLOSE_CODES = {
  goingAway: 1001,
  unsupportedData: 1003,
  malformedFrame: 1007,
  tryAgainLater: 1013,
} as const;

/** A peer channel frame that cannot be read: the connection is closed with `malformedFrame`. */
export class MalformedFrameError extends AppError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('MALFORMED_FRAME', message, options);
    this.name = 'MalformedFrameError';
  }
}

const MAX_OP_LENGTH = 200;

// One encoder/decoder per process: both are synchronous, so sharing them is safe.
const encoder = new Encoder();
const decoder = new Decoder();

/** Encodes a frame into a buffer of its own (the caller may keep it queued). */
export function encodeFrame(frame: RequestFrame | ResponseFrame): Uint8Array {
  return encoder.encode(frame);
}

type Fields = Record<string, unknown>;

function decodeObject(bytes: Uint8Array): Fields {
  let value: unknown;
  try {
    value = decoder.decode(bytes);
  } catch (cause) {
    throw new MalformedFrameError('frame is not valid msgpack', { cause });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw new MalformedFrameError('frame is not a msgpack map');
  }
  return value as Fields;
}

function readId(fields: Fields): number {
  const id = fields.id;
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
    throw new MalformedFrameError('frame id must be a non-negative integer');
  }
  return id;
}

/** Why `op` and `deadline` cannot travel in a request, or undefined; both ends check the same rules. */
export function requestProblem(op: unknown, deadline: unknown): string | undefined {
  if (typeof op !== 'string' || op.length === 0 || op.length > MAX_OP_LENGTH) {
    return `op must be a string of 1..${MAX_OP_LENGTH} characters`;
  }
  if (typeof deadline !== 'number' || !Number.isFinite(deadline)) {
    return 'deadline must be a finite number (epoch ms)';
  }
  return undefined;
}

/** Decodes and checks a request frame; throws MalformedFrameError. `bytes` must not be reused later. */
export function decodeRequestFrame(bytes: Uint8Array): RequestFrame {
  const fields = decodeObject(bytes);
  if (fields.t !== 'req') throw new MalformedFrameError("expected a frame with t = 'req'");
  const id = readId(fields);
  const { op, deadline } = fields;
  const problem = requestProblem(op, deadline);
  if (problem) throw new MalformedFrameError(problem);
  return { t: 'req', id, op: op as string, deadline: deadline as number, body: fields.body };
}

function readRemoteError(value: unknown): RemoteError {
  if (typeof value !== 'object' || value === null) throw new MalformedFrameError('error must be a map');
  const { code, message, retryable, field, retryAfterSeconds } = value as Fields;
  if (typeof code !== 'string' || typeof message !== 'string' || typeof retryable !== 'boolean') {
    throw new MalformedFrameError('error needs code, message (strings) and retryable (boolean)');
  }
  const error: RemoteError = { code, message, retryable };
  if (typeof field === 'string') error.field = field;
  if (typeof retryAfterSeconds === 'number' && Number.isFinite(retryAfterSeconds)) {
    error.retryAfterSeconds = retryAfterSeconds;
  }
  return error;
}

/** Decodes and checks a response frame; throws MalformedFrameError. */
export function decodeResponseFrame(bytes: Uint8Array): ResponseFrame {
  const fields = decodeObject(bytes);
  if (fields.t !== 'res') throw new MalformedFrameError("expected a frame with t = 'res'");
  const id = readId(fields);
  if (fields.ok === true) return { t: 'res', id, ok: true, body: fields.body };
  if (fields.ok === false) return { t: 'res', id, ok: false, error: readRemoteError(fields.error) };
  throw new MalformedFrameError('ok must be a boolean');
}

/** The error part of a response: AppErrors keep code and hints; anything else is INTERNAL, message hidden. */
export function toRemoteError(err: unknown): RemoteError {
  if (!(err instanceof AppError)) return { code: 'INTERNAL', message: 'internal error', retryable: false };
  const error: RemoteError = { code: err.code, message: err.message, retryable: err.retryable };
  if (err.field !== undefined) error.field = err.field;
  if (err.retryAfterSeconds !== undefined) error.retryAfterSeconds = err.retryAfterSeconds;
  return error;
}

const isErrorCode = (code: string): code is ErrorCode => Object.hasOwn(ERROR_CODES, code);

/** A remote error as a local AppError; a code this build does not know becomes INTERNAL. */
export function fromRemoteError(error: RemoteError, address: string): AppError {
  const options = {
    ...(error.field === undefined ? {} : { field: error.field }),
    ...(error.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: error.retryAfterSeconds }),
  };
  if (isErrorCode(error.code)) return new AppError(error.code, error.message, options);
  return new AppError('INTERNAL', `peer ${address} answered unknown code ${error.code}: ${error.message}`);
}
