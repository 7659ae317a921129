import { decode, encode } from '@msgpack/msgpack';
import { compileObject } from '../api/contract.js';
import { MAX_REF_LENGTH, PingFrame, SubscribeFrame, UnsubscribeFrame } from '../api/ws.js';
import { AppError } from '../errors.js';
import type { ClientRequest, ServerFrame, StockState, WireFormat } from './types.js';

/** Encodes one server frame in the connection's format (JSON text or msgpack binary). */
export function encodeFrame(format: WireFormat, frame: ServerFrame): string | Uint8Array {
  return format === 'json' ? JSON.stringify(frame) : encode(frame);
}

/** A `stock` frame of exactly the documented fields (a queued change carries more, e.g. `announced`). */
export function stockFrame(state: StockState): ServerFrame {
  const frame: ServerFrame = {
    type: 'stock',
    productId: state.productId,
    stock: state.stock,
    version: state.version,
  };
  if (state.at !== undefined) frame.at = state.at;
  return frame;
}

export function errorFrame(err: AppError, extra: { productIds?: number[]; ref?: string | number } = {}) {
  const frame: ServerFrame = { type: 'error', error: err.toBody().error };
  if (extra.productIds !== undefined) frame.productIds = extra.productIds;
  if (extra.ref !== undefined) frame.ref = extra.ref;
  return frame;
}

/** The compiled check of each op's frame (src/api/ws.ts); throws the first failure naming the field. */
const variants = {
  subscribe: compileObject('frame', SubscribeFrame),
  unsubscribe: compileObject('frame', UnsubscribeFrame),
  ping: compileObject('frame', PingFrame),
};
/** Fields of any client frame. */
const FIELDS = new Set(
  [SubscribeFrame, UnsubscribeFrame, PingFrame].flatMap((schema) => Object.keys(schema.properties)),
);

/**
 * Parses and validates one client frame with the compiled schema of its `op` (src/api/ws.ts). Throws
 * AppError MALFORMED_FRAME (not JSON / msgpack) or VALIDATION_FAILED naming the field; `ref` of a frame that
 * parsed is kept on the error for the answer. A `ref` that is neither a number nor a string of at most 64
 * characters is ignored.
 */
export function decodeRequest(format: WireFormat, data: ArrayBuffer, maxIds: number): ClientRequest {
  let value: unknown;
  try {
    value = format === 'json' ? JSON.parse(Buffer.from(data).toString('utf8')) : decode(new Uint8Array(data));
  } catch {
    throw new AppError(
      'MALFORMED_FRAME',
      format === 'json' ? 'frame is not JSON' : 'frame is not msgpack (subprotocol msgpack)',
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new AppError('VALIDATION_FAILED', 'a frame is an object with an `op`', { field: 'op' });
  const body = value as Record<string, unknown>;
  const ref = refOf(body['ref']);
  if (ref === undefined) delete body['ref'];
  const fail = (err: unknown): never => {
    throw Object.assign(err as AppError, { ref });
  };
  for (const key of Object.keys(body)) {
    if (!FIELDS.has(key))
      fail(new AppError('VALIDATION_FAILED', `unknown field ${JSON.stringify(key)}`, { field: key }));
  }
  const op = body['op'];
  if (op !== 'subscribe' && op !== 'unsubscribe' && op !== 'ping')
    return fail(
      new AppError('VALIDATION_FAILED', '`op` must be "subscribe", "unsubscribe" or "ping"', { field: 'op' }),
    );
  const ids = body['ids'];
  // The cap before the ids themselves: it is the answer to a frame with too many ids, whatever they are.
  if (op !== 'ping' && Array.isArray(ids) && ids.length > maxIds)
    fail(new AppError('TOO_MANY_SUBSCRIPTIONS', `at most ${maxIds} ids per connection`, { field: 'ids' }));
  try {
    variants[op](body);
  } catch (err) {
    fail(err);
  }
  const request = op === 'ping' ? { op } : { op, ids: [...new Set(ids as number[])] };
  return (ref === undefined ? request : { ...request, ref }) as ClientRequest;
}

function refOf(value: unknown): string | number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string' && value.length <= MAX_REF_LENGTH) return value;
  return undefined;
}

/** The `ref` a failed frame carried, if it parsed that far. */
export function refOfError(err: unknown): string | number | undefined {
  return (err as { ref?: string | number }).ref;
}
