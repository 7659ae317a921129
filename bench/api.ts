/** The few service calls scenarios make outside their load loops. */
import type { Dispatcher } from 'undici';
import type { BenchTokens } from './auth.js';

export type Strategy = 'actor' | 'baseline';

export type CreatedProduct = Awaited<ReturnType<typeof createProduct>>;

/** `POST /products` as the bench's admin. */
export async function createProduct(
  http: Dispatcher,
  tokens: BenchTokens,
  name: string,
  stock: number,
  strategy: Strategy = 'actor',
) {
  const res = await http.request({
    path: '/products',
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: tokens.admin },
    body: JSON.stringify({ name, priceCents: 1999, stock, strategy }),
  });
  const text = await res.body.text();
  if (res.statusCode !== 201)
    throw new Error(`POST /products answered ${res.statusCode}: ${text.slice(0, 300)}`);
  const body = JSON.parse(text) as { id: number; stock: number; strategy: Strategy };
  return { id: body.id, stock: body.stock, strategy: body.strategy } as const;
}

/** `count` actor products named `bench <tag> <i>`, created one after another. */
export async function createProducts(
  http: Dispatcher,
  tokens: BenchTokens,
  tag: string,
  count: number,
  stock: number,
): Promise<CreatedProduct[]> {
  const products: CreatedProduct[] = [];
  for (let i = 0; i < count; i += 1)
    products.push(await createProduct(http, tokens, `bench ${tag} ${i}`, stock));
  return products;
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
