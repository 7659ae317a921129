import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AppError } from '../domain/errors.js';
import { PaymentLedger } from './ledger.js';
import type { ChargeRequest, PaymentProvider, PaymentProviderOptions } from './types.js';

export type { PaymentProvider, PaymentProviderOptions, ProviderStats } from './types.js';

export const defaults = {
  latencyMs: 5,
  declineRate: 0,
  errorRate: 0,
  timeoutRate: 0,
  timeoutHoldMs: 30_000, // 30 s: far beyond any client's per-call timeout
  maxBodyBytes: 16 * 1024, // 16 KiB
} as const;

const KEY_MAX_LENGTH = 256;

type Reply = { status: number; body: unknown; delayMs: number };

/** The provider's error body (its own shape: no `retryable`), for an error of the registry. */
const errorBody = ({ code, message, field }: AppError): unknown => ({
  error: field === undefined ? { code, message } : { code, message, field },
});

/** Checks latency and rates; a bad option is a bug of the caller, so it throws at once. */
function checkOptions(options: Partial<PaymentProviderOptions>): void {
  for (const name of ['declineRate', 'errorRate', 'timeoutRate'] as const) {
    const rate = options[name];
    if (rate !== undefined && !(rate >= 0 && rate <= 1)) throw new RangeError(`${name} must be from 0 to 1`);
  }
  for (const name of ['latencyMs', 'timeoutHoldMs', 'maxBodyBytes'] as const) {
    const value = options[name];
    if (value !== undefined && !(Number.isInteger(value) && value >= 0))
      throw new RangeError(`${name} must be a non-negative integer`);
  }
}

function readBody(request: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else if (size - chunk.length <= limit)
        reject(new AppError('PAYLOAD_TOO_LARGE', `body over ${limit} bytes`));
    });
    request.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.once('error', reject);
  });
}

function parseCharge(text: string): ChargeRequest {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new AppError('MALFORMED_JSON', 'body is not JSON');
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new AppError('VALIDATION_FAILED', 'body must be a JSON object');
  const { key, amountCents, orderId } = body as Record<string, unknown>;
  if (typeof key !== 'string' || key.length === 0 || key.length > KEY_MAX_LENGTH)
    throw new AppError('VALIDATION_FAILED', `key: a string of 1 to ${KEY_MAX_LENGTH} characters`, {
      field: 'key',
    });
  if (typeof amountCents !== 'number' || !Number.isSafeInteger(amountCents) || amountCents < 1)
    throw new AppError('VALIDATION_FAILED', 'amountCents: a positive integer', { field: 'amountCents' });
  const orderIdValid =
    (typeof orderId === 'string' && orderId.length > 0 && orderId.length <= KEY_MAX_LENGTH) ||
    (typeof orderId === 'number' && Number.isSafeInteger(orderId) && orderId >= 0);
  if (!orderIdValid)
    throw new AppError('VALIDATION_FAILED', 'orderId: a non-empty string or an integer', {
      field: 'orderId',
    });
  return { key, amountCents, orderId };
}

function decodeKey(segment: string): string {
  try {
    const key = decodeURIComponent(segment);
    if (key.length > 0 && key.length <= KEY_MAX_LENGTH) return key;
  } catch {
    // Falls through to the 400 below.
  }
  throw new AppError('VALIDATION_FAILED', 'key: a URL-encoded string of 1 to 256 characters', {
    field: 'key',
  });
}

/** The simulated external payment service: idempotent charges by key, voids, and injected faults. */
export function createPaymentProvider(options: Partial<PaymentProviderOptions> = {}): PaymentProvider {
  checkOptions(options);
  let settings: PaymentProviderOptions = { ...defaults, random: Math.random, ...options };
  const ledger = new PaymentLedger();
  const held = new Set<NodeJS.Timeout>();

  const roll = (rate: number): boolean => settings.random() < rate;
  const answer = (status: number, body: unknown, delayMs = settings.latencyMs): Reply => ({
    status,
    body,
    delayMs,
  });
  const refuse = (error: AppError, delayMs?: number): Reply =>
    answer(error.status, errorBody(error), delayMs);
  const unavailable = (): Reply =>
    refuse(new AppError('PROVIDER_UNAVAILABLE', 'simulated provider outage: nothing was recorded'));

  function charge(request: ChargeRequest): Reply {
    ledger.countChargeAttempt(request.key);
    if (roll(settings.errorRate)) return unavailable();
    const outcome = ledger.charge(request, () => roll(settings.declineRate), new Date());
    if (outcome.kind === 'conflict')
      return refuse(
        new AppError('PAYMENT_KEY_REUSED', `key was charged ${outcome.answer.amountCents} cents before`),
      );
    // A timeout happens after the charge is recorded: the late answer is what makes blind retries dangerous.
    if (outcome.kind === 'recorded' && roll(settings.timeoutRate))
      return answer(200, outcome.answer, settings.timeoutHoldMs);
    return answer(200, outcome.answer);
  }

  async function route(request: IncomingMessage): Promise<Reply> {
    const path = (request.url ?? '/').split('?', 1)[0] ?? '/';
    const method = request.method ?? 'GET';
    if (path === '/stats') {
      if (method !== 'GET') throw new AppError('METHOD_NOT_ALLOWED', 'use GET');
      return answer(200, ledger.stats(), 0);
    }
    if (path === '/admin/reset') {
      if (method !== 'POST') throw new AppError('METHOD_NOT_ALLOWED', 'use POST');
      ledger.reset();
      return answer(200, { reset: true }, 0);
    }
    const [, resource, segment, action, ...rest] = path.split('/');
    if (resource !== 'payments' || rest.length > 0 || (action !== undefined && action !== 'void'))
      throw new AppError('NOT_FOUND', `no route ${method} ${path}`);
    ledger.countRequest();
    const expected = segment === undefined || action !== undefined ? 'POST' : 'GET';
    if (method !== expected) throw new AppError('METHOD_NOT_ALLOWED', `use ${expected}`);
    if (segment === undefined) return charge(parseCharge(await readBody(request, settings.maxBodyBytes)));
    const key = decodeKey(segment);
    if (roll(settings.errorRate)) return unavailable();
    if (action === 'void') return answer(200, ledger.void(key, new Date()));
    const record = ledger.get(key);
    return record === undefined
      ? refuse(new AppError('PAYMENT_NOT_FOUND', 'no payment with this key'))
      : answer(200, record);
  }

  function send(response: ServerResponse, reply: Reply): void {
    const write = (): void => {
      if (response.destroyed) return;
      const json = JSON.stringify(reply.body);
      response.writeHead(reply.status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(json),
      });
      response.end(json);
    };
    if (reply.delayMs <= 0) return write();
    const timer = setTimeout(() => {
      held.delete(timer);
      write();
    }, reply.delayMs);
    held.add(timer);
    // A client that gave up frees its timer at once (held answers would otherwise pile up).
    response.once('close', () => {
      clearTimeout(timer);
      held.delete(timer);
    });
  }

  const server = http.createServer((request, response) => {
    route(request).then(
      (reply) => send(response, reply),
      (error: unknown) => {
        const bad = error instanceof AppError ? error : new AppError('INTERNAL', String(error));
        if (bad.status === 413) response.setHeader('connection', 'close');
        send(response, refuse(bad, 0));
      },
    );
  });

  return {
    listen: (port, host = '127.0.0.1') =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve((server.address() as AddressInfo).port);
        });
      }),
    close: () =>
      new Promise((resolve) => {
        for (const timer of held) clearTimeout(timer);
        held.clear();
        if (!server.listening) return resolve();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
    configure: (changes) => {
      checkOptions(changes);
      settings = { ...settings, ...changes };
    },
    stats: () => ledger.stats(),
  };
}
