import type { Test } from 'tap';
import {
  createPaymentProvider,
  type PaymentProvider,
  type PaymentProviderOptions,
} from '../../src/payment-provider/server.js';

/** Starts a provider of this test's own on a free port (never the stack's) and closes it at teardown. */
export async function startProvider(
  t: Test,
  options: Partial<PaymentProviderOptions> = {},
): Promise<{ provider: PaymentProvider; base: string }> {
  const provider = createPaymentProvider({ latencyMs: 0, ...options });
  const port = await provider.listen(0);
  t.teardown(() => provider.close());
  return { provider, base: `http://127.0.0.1:${port}` };
}

/** A JSON request; resolves with the status and the parsed body. */
export async function call(
  base: string,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<{ status: number; body: any }> {
  const response = await fetch(base + path, {
    method,
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  return { status: response.status, body: await response.json() };
}

/** A random stream that returns `values` in order, then `rest` forever (to script fault rolls). */
export function scripted(values: readonly number[], rest = 0.999): () => number {
  let next = 0;
  return () => values[next++] ?? rest;
}
