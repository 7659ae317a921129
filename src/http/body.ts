import type { HttpResponse } from 'uWebSockets.js';
import { AppError } from '../errors.js';

/**
 * Collects a request body up to `limitBytes`. Rejects with PAYLOAD_TOO_LARGE as soon as the declared
 * or received length passes the limit. `onAborted` must already be attached by the caller.
 */
export function readBody(
  res: HttpResponse,
  declaredLength: number | undefined,
  limitBytes: number,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (declaredLength !== undefined && declaredLength > limitBytes) {
      reject(tooLarge(limitBytes));
      return;
    }
    const chunks: Buffer[] = [];
    let received = 0;
    let failed = false;
    res.onData((chunk, isLast) => {
      if (failed) return;
      received += chunk.byteLength;
      if (received > limitBytes) {
        failed = true;
        reject(tooLarge(limitBytes));
        return;
      }
      // uWS neuters the chunk after this callback returns: copy it.
      chunks.push(Buffer.from(new Uint8Array(chunk).slice()));
      if (isLast) resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    });
  });
}

function tooLarge(limitBytes: number): AppError {
  return new AppError('PAYLOAD_TOO_LARGE', `request body is larger than ${limitBytes} bytes`, {
    field: 'body',
  });
}

/** Parses a JSON object body; anything else is a 400 that names the body. */
export function parseJsonObject(body: Buffer): Record<string, unknown> {
  if (body.length === 0)
    throw new AppError('MALFORMED_JSON', 'request body is empty; expected a JSON object', { field: 'body' });
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new AppError('MALFORMED_JSON', `request body is not valid JSON: ${(err as Error).message}`, {
      field: 'body',
    });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new AppError('VALIDATION_FAILED', 'request body must be a JSON object', { field: 'body' });
  }
  return value as Record<string, unknown>;
}
