import { decode, encode } from '@msgpack/msgpack';
import { AppError } from '../errors.js';
import type { ClientRequest, ServerFrame, StockState, WireFormat } from './types.js';

/** Largest product id accepted (MySQL BIGINT UNSIGNED ids stay far below it). */
const MAX_ID = Number.MAX_SAFE_INTEGER;
const MAX_REF_LENGTH = 64;

/** Encodes one server frame in the connection's format (JSON text or msgpack binary). */
export function encodeFrame(format: WireFormat, frame: ServerFrame): string | Uint8Array {
  return format === 'json' ? JSON.stringify(frame) : encode(frame);
}

export function stockFrame(state: StockState): ServerFrame {
  return { type: 'stock', ...state };
}

export function errorFrame(err: AppError, extra: { productIds?: number[]; ref?: string | number } = {}) {
  const frame: ServerFrame = { type: 'error', error: err.toBody().error };
  if (extra.productIds !== undefined) frame.productIds = extra.productIds;
  if (extra.ref !== undefined) frame.ref = extra.ref;
  return frame;
}

/**
 * Parses and validates one client frame. Throws AppError MALFORMED_FRAME (not JSON / msgpack) or
 * VALIDATION_FAILED naming the field; `ref` of a frame that parsed is kept on the error for the answer.
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
  const fail = (message: string, field: string): never => {
    throw Object.assign(new AppError('VALIDATION_FAILED', message, { field }), { ref });
  };
  for (const key of Object.keys(body)) {
    if (key !== 'op' && key !== 'ids' && key !== 'ref') fail(`unknown field ${JSON.stringify(key)}`, key);
  }
  const withRef = <T extends object>(request: T): T => (ref === undefined ? request : { ...request, ref });
  switch (body['op']) {
    case 'ping':
      return withRef({ op: 'ping' as const });
    case 'subscribe':
    case 'unsubscribe': {
      const ids = body['ids'];
      if (!Array.isArray(ids) || ids.length === 0)
        return fail('`ids` must be a non-empty array of product ids', 'ids');
      if (ids.length > maxIds)
        throw Object.assign(
          new AppError('TOO_MANY_SUBSCRIPTIONS', `at most ${maxIds} ids per connection`, { field: 'ids' }),
          { ref },
        );
      ids.forEach((id, i) => {
        if (typeof id !== 'number' || !Number.isInteger(id) || id < 1 || id > MAX_ID)
          fail(`ids[${i}] must be a positive integer product id`, `ids[${i}]`);
      });
      return withRef({ op: body['op'], ids: [...new Set(ids as number[])] });
    }
    default:
      return fail('`op` must be "subscribe", "unsubscribe" or "ping"', 'op');
  }
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
