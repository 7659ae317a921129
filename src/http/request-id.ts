import { randomBytes } from 'node:crypto';

/** Longest `X-Request-Id` taken from a client; a longer one is replaced by a made one. */
export const MAX_REQUEST_ID_LENGTH = 64;

// Letters, digits and `- _ . : @ / + =` (UUIDs, ULIDs, base64, W3C trace ids): nothing that breaks a log
// line, a header or the outbox's comma-separated list.
const SANE = new RegExp(`^[A-Za-z0-9._:@/+=-]{1,${MAX_REQUEST_ID_LENGTH}}$`);

/** The client's `X-Request-Id` when it is sane (1–64 characters of a safe set), else undefined. */
export function saneRequestId(header: string | undefined): string | undefined {
  return header !== undefined && SANE.test(header) ? header : undefined;
}

/**
 * Makes request ids unique across nodes and restarts: a random prefix per process start, then a counter
 * (`k3x9qa-1`, `k3x9qa-2`, …): one short string per request, no randomness per request.
 */
export function requestIdMaker(): () => string {
  const prefix = `${randomBytes(5).readUIntBE(0, 5).toString(36)}-`;
  let seq = 0;
  return () => prefix + (seq += 1).toString(36);
}
