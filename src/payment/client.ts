import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import { Pool } from 'undici';
import { sleep } from '../timeouts.js';
import { PaymentError } from './errors.js';
import type {
  BreakerState,
  ChargeRequest,
  PaymentClientOptions,
  PaymentResult,
  PaymentStatus,
} from './types.js';

export const defaults = {
  timeoutMs: 1_000, // 1 s per attempt
  retries: 3,
  retryBaseDelayMs: 20,
  retryMaxDelayMs: 500,
  connections: 64,
  breakerErrorThresholdPercentage: 50,
  breakerVolumeThreshold: 20,
  breakerWindowMs: 10_000, // 10 s
  breakerResetTimeoutMs: 5_000, // 5 s
} as const;

type Settings = { -readonly [K in keyof typeof defaults]: number };

/** An attempt that ran out of `timeoutMs` after its request was written. */
class AttemptTimeout extends Error {}

/** Buckets of the breaker's rolling window. */
const BREAKER_BUCKETS = 10;

interface ProviderCall {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly body?: string;
}

/** An answer the provider gave on purpose: a payment record (200) or a refusal (4xx). */
type ProviderAnswer =
  | { readonly status: 200; readonly result: PaymentResult }
  | { readonly status: number; readonly code: string | undefined; readonly message: string | undefined };

const STATUSES: ReadonlySet<string> = new Set<PaymentStatus>(['succeeded', 'declined', 'voided', 'refunded']);

function parseResult(body: unknown): PaymentResult | undefined {
  if (body === null || typeof body !== 'object') return undefined;
  const { status, key, amountCents, declineReason } = body as Record<string, unknown>;
  if (typeof key !== 'string' || typeof status !== 'string' || !STATUSES.has(status)) return undefined;
  return {
    status: status as PaymentStatus,
    key,
    ...(typeof amountCents === 'number' ? { amountCents } : {}),
    ...(typeof declineReason === 'string' ? { declineReason } : {}),
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function settingsFrom(options: PaymentClientOptions): Settings {
  const settings: Settings = { ...defaults };
  for (const name of Object.keys(defaults) as (keyof Settings)[]) {
    const value = options[name];
    if (value === undefined) continue;
    const least = name === 'retries' || name === 'breakerVolumeThreshold' ? 0 : 1;
    if (!Number.isInteger(value) || value < least)
      throw new RangeError(`PaymentClient option ${name} must be an integer of at least ${least}`);
    settings[name] = value;
  }
  return settings;
}

/**
 * The service's client of the payment provider. Every attempt has its own timeout, retryable failures are
 * retried with jittered exponential backoff under the same idempotency key, and a circuit breaker fails
 * fast while the provider keeps failing. A decline is a result, never an error.
 */
export class PaymentClient {
  private readonly settings: Settings;
  private readonly basePath: string;
  private readonly pool: Pool;
  private readonly breaker: CircuitBreaker<[ProviderCall], ProviderAnswer>;
  /** Turns the breaker's window when told (see rotateWindow): opossum's own turns it on a timer. */
  private readonly rotation = new EventEmitter();
  private readonly bucketMs: number;
  private rotatedAt = performance.now();

  constructor(private readonly options: PaymentClientOptions) {
    this.settings = settingsFrom(options);
    const url = new URL(options.url);
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.pool = new Pool(url.origin, {
      connections: this.settings.connections,
      connectTimeout: this.settings.timeoutMs,
    });
    this.bucketMs = this.settings.breakerWindowMs / BREAKER_BUCKETS;
    this.breaker = new CircuitBreaker((call: ProviderCall) => this.attempt(call), {
      timeout: false, // each attempt times itself (exchange)
      errorThresholdPercentage: this.settings.breakerErrorThresholdPercentage,
      volumeThreshold: this.settings.breakerVolumeThreshold,
      rollingCountTimeout: this.settings.breakerWindowMs,
      rollingCountBuckets: BREAKER_BUCKETS,
      resetTimeout: this.settings.breakerResetTimeoutMs,
      // No timers while idle: opossum turns its window every bucket and emits a stats snapshot every bucket
      // (2 wake-ups a second, forever); here the window is turned by the buckets that passed, right before
      // the breaker reads it (a call, a failure). No latency percentiles either: nothing reads them, and
      // opossum would keep every call's latency and sort them all at each read.
      rotateBucketController: this.rotation,
      enableSnapshots: false,
      rollingPercentilesEnabled: false,
    });
    // opossum reads the window right after emitting 'failure' (to decide whether to open): turn it first.
    this.breaker.on('failure', () => this.rotateWindow());
    const notify = options.onBreakerStateChange;
    if (notify !== undefined) {
      this.breaker.on('open', () => notify('open'));
      this.breaker.on('halfOpen', () => notify('half-open'));
      this.breaker.on('close', () => notify('closed'));
    }
  }

  /** Charges once per key; `declined` is returned, not thrown. */
  async charge(request: ChargeRequest): Promise<PaymentResult> {
    const { key, amountCents, orderId } = request;
    const body = JSON.stringify({ key, amountCents, orderId });
    return this.expectResult(await this.call({ method: 'POST', path: '/payments', body }), `charge ${key}`);
  }

  /** The provider's record of `key`, or undefined when it never saw the key. */
  async lookup(key: string): Promise<PaymentResult | undefined> {
    const answer = await this.call({ method: 'GET', path: `/payments/${encodeURIComponent(key)}` });
    if (answer.status === 404 && 'code' in answer && answer.code === 'PAYMENT_NOT_FOUND') return undefined;
    return this.expectResult(answer, `lookup ${key}`);
  }

  /** Voids `key`: refunds a charge, or blocks a charge that has not arrived yet. Idempotent. */
  async void(key: string): Promise<PaymentResult> {
    const answer = await this.call({ method: 'POST', path: `/payments/${encodeURIComponent(key)}/void` });
    return this.expectResult(answer, `void ${key}`);
  }

  breakerState(): BreakerState {
    if (this.breaker.closed) return 'closed';
    return this.breaker.halfOpen ? 'half-open' : 'open';
  }

  async close(): Promise<void> {
    this.breaker.shutdown();
    await this.pool.close();
  }

  private expectResult(answer: ProviderAnswer, what: string): PaymentResult {
    if ('result' in answer) return answer.result;
    throw new PaymentError(
      'PAYMENT_REJECTED',
      `payment provider refused ${what}: ${answer.status} ${answer.code ?? '?'} ${answer.message ?? ''}`.trim(),
      { status: answer.status },
    );
  }

  /** One logical call: attempts through the breaker, retried while the failure is retryable. */
  private async call(call: ProviderCall): Promise<ProviderAnswer> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        this.rotateWindow();
        return await this.breaker.fire(call);
      } catch (error) {
        const failure = this.toPaymentError(error);
        failure.attempts = attempt;
        const again = failure.code === 'PAYMENT_UNAVAILABLE' || failure.code === 'PAYMENT_TIMEOUT';
        if (!again || attempt > this.settings.retries || this.breaker.isShutdown) throw failure;
        await sleep(this.backoffMs(attempt));
      }
    }
  }

  /** Turns the breaker's rolling window by the buckets that passed since it was last turned. */
  private rotateWindow(): void {
    const passed = Math.floor((performance.now() - this.rotatedAt) / this.bucketMs);
    if (passed <= 0) return;
    this.rotatedAt += passed * this.bucketMs;
    for (let i = Math.min(passed, BREAKER_BUCKETS); i > 0; i -= 1) this.rotation.emit('rotate');
  }

  /** Full jitter: uniform in [0, min(max, base · 2^(attempt-1))). */
  private backoffMs(attempt: number): number {
    const ceiling = Math.min(
      this.settings.retryMaxDelayMs,
      this.settings.retryBaseDelayMs * 2 ** (attempt - 1),
    );
    return Math.random() * ceiling;
  }

  private toPaymentError(error: unknown): PaymentError {
    if (error instanceof PaymentError) return error;
    const code = (error as { code?: unknown } | undefined)?.code;
    if (code === 'EOPENBREAKER')
      return new PaymentError(
        'PAYMENT_CIRCUIT_OPEN',
        `payment provider circuit is open after repeated failures; next trial within ${this.settings.breakerResetTimeoutMs} ms`,
      );
    const what = code === 'ESHUTDOWN' ? 'the payment client is closed' : String(error);
    return new PaymentError('PAYMENT_UNAVAILABLE', what, { cause: error });
  }

  /** One HTTP exchange, the breaker's action: 5xx, timeouts and transport errors throw (and count as failures). */
  private async attempt(call: ProviderCall): Promise<ProviderAnswer> {
    const what = `${call.method} ${call.path}`;
    try {
      const response = await this.exchange(call);
      const body = parseJson(response.text);
      const status = response.status;
      if (status >= 500)
        throw new PaymentError('PAYMENT_UNAVAILABLE', `payment provider answered ${status} to ${what}`, {
          status,
        });
      if (status === 200) {
        const result = parseResult(body);
        if (result !== undefined) return { status, result };
        throw new PaymentError(
          'PAYMENT_UNAVAILABLE',
          `payment provider answered ${what} with no payment record`,
          {
            status,
          },
        );
      }
      const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
      return {
        status,
        code: typeof error?.code === 'string' ? error.code : undefined,
        message: typeof error?.message === 'string' ? error.message : undefined,
      };
    } catch (error) {
      if (error instanceof PaymentError) throw error;
      if (error instanceof AttemptTimeout || (error as { code?: unknown }).code === 'UND_ERR_CONNECT_TIMEOUT')
        throw new PaymentError(
          'PAYMENT_TIMEOUT',
          `payment provider did not answer ${what} within ${this.settings.timeoutMs} ms (PAYMENT_TIMEOUT_MS)`,
          { cause: error },
        );
      throw new PaymentError(
        'PAYMENT_UNAVAILABLE',
        `cannot reach the payment provider at ${this.options.url} (PAYMENT_URL): ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  /**
   * Sends `call` and reads its whole answer. The attempt's timer starts when undici writes the request onto a
   * connection, so a call waiting for a free one is not timed: a burst beyond the connections (a restart
   * resuming 200 sagas at 400 ms each on 64 connections) must not time out calls the provider never saw, nor
   * open the breaker on a healthy provider. Connecting has the pool's own timeout. (`pool.request` with an
   * AbortController and a timer per call timed the wait too, and cost a call ~25 µs of CPU more at 200 in
   * flight; undici's headersTimeout has a timer resolution of half a second.)
   */
  private exchange(call: ProviderCall): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let status = 0;
      const chunks: Buffer[] = [];
      this.pool.dispatch(
        {
          method: call.method,
          path: this.basePath + call.path,
          headers: call.body === undefined ? {} : { 'content-type': 'application/json' },
          body: call.body ?? null,
        },
        {
          onRequestStart: (controller) => {
            clearTimeout(timer); // one timer per call, should undici ever start it twice
            timer = setTimeout(() => controller.abort(new AttemptTimeout()), this.settings.timeoutMs);
          },
          onResponseStart: (_controller, statusCode) => {
            status = statusCode;
          },
          onResponseData: (_controller, chunk) => {
            chunks.push(chunk);
          },
          onResponseEnd: () => {
            clearTimeout(timer);
            resolve({ status, text: Buffer.concat(chunks).toString('utf8') });
          },
          onResponseError: (_controller, error) => {
            clearTimeout(timer);
            reject(error);
          },
        },
      );
    });
  }
}
