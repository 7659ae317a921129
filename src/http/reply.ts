import { STATUS_CODES } from 'node:http';
import type { HttpResponse } from 'uWebSockets.js';
import { AppError } from '../errors.js';

/** What a route handler returns: a status, a JSON body or a text body, extra headers. */
export interface Reply {
  status: number;
  body?: unknown;
  /** Sent as is instead of JSON (text, or its bytes), with `contentType`. */
  text?: { body: string | Uint8Array; contentType: string };
  headers?: Readonly<Record<string, string>>;
}

export const json = (status: number, body: unknown, headers?: Record<string, string>): Reply =>
  headers === undefined ? { status, body } : { status, body, headers };

/** `reply` with `headers` added (the reply's own win on a clash). */
export const withHeaders = (headers: Readonly<Record<string, string>>, reply: Reply): Reply =>
  Object.keys(headers).length === 0 ? reply : { ...reply, headers: { ...headers, ...reply.headers } };

export function errorReply(err: AppError): Reply {
  const headers: Record<string, string> = { ...err.headers };
  if (err.retryAfterSeconds !== undefined) headers['Retry-After'] = String(err.retryAfterSeconds);
  return { status: err.status, body: err.toBody(), headers };
}

const statusLines = new Map<number, string>();
function statusLine(status: number): string {
  let line = statusLines.get(status);
  if (line === undefined) {
    line = `${status} ${STATUS_CODES[status] ?? 'Unknown'}`;
    statusLines.set(status, line);
  }
  return line;
}

/**
 * Writes a reply in one write; the caller guarantees the response is not aborted. `requestId` is echoed in
 * `X-Request-Id`. `corked`: called inside uWS's request handler, which corks its writes itself; an answer
 * after an await is corked here.
 */
export function writeReply(
  res: HttpResponse,
  reply: Reply,
  closeConnection = false,
  requestId?: string,
  corked = false,
): void {
  if (corked) write(res, reply, closeConnection, requestId);
  else res.cork(() => write(res, reply, closeConnection, requestId));
}

function write(
  res: HttpResponse,
  reply: Reply,
  closeConnection: boolean,
  requestId: string | undefined,
): void {
  const payload = reply.text?.body ?? (reply.body === undefined ? undefined : JSON.stringify(reply.body));
  res.writeStatus(statusLine(reply.status));
  if (payload !== undefined) {
    res.writeHeader('Content-Type', reply.text?.contentType ?? 'application/json');
    res.writeHeader('X-Content-Type-Options', 'nosniff');
  }
  if (requestId !== undefined) res.writeHeader('X-Request-Id', requestId);
  const headers = reply.headers;
  if (headers) for (const name in headers) res.writeHeader(name, headers[name]!);
  res.end(payload, closeConnection);
}
