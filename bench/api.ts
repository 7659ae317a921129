/** The few service calls scenarios make outside their load loops. */
import type { Dispatcher } from 'undici';

export type Strategy = 'actor' | 'baseline';

export interface CreatedProduct {
  readonly id: number;
  readonly stock: number;
  readonly strategy: Strategy;
}

export async function createProduct(
  http: Dispatcher,
  input: { name: string; priceCents: number; stock: number; strategy: Strategy },
): Promise<CreatedProduct> {
  const res = await http.request({
    path: '/products',
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(input),
  });
  const text = await res.body.text();
  if (res.statusCode !== 201)
    throw new Error(`POST /products answered ${res.statusCode}: ${text.slice(0, 300)}`);
  const body = JSON.parse(text) as { id: number; stock: number; strategy: Strategy };
  return { id: body.id, stock: body.stock, strategy: body.strategy };
}

/** The error code of an error body (`{ error: { code } }`), or `?` when it has none. */
export function errorCode(text: string): string {
  try {
    const code = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' ? code : '?';
  } catch {
    return '?';
  }
}
