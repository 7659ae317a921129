/**
 * Who the bench is and what it asks the service: a bearer token per bench user and the admin's (signed with
 * the local stack's key, minted once before any load; each node then verifies a user's token once and caches
 * it), products (as the admin) and purchases with what each was answered: `PurchaseLedger` keeps, per product,
 * what the MySQL checks expect (`verifyProducts`, bench/stores.ts).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import { mintToken } from '../scripts/stack/auth-key.js';
import { defaults } from '../src/config.js';
import type { AnswerClass, AnswerTiming, OpenLoopRequest } from './open-loop.js';
import type { BenchIO, BenchOptions } from './scenario.js';

/** Distinct buyers the scenarios spread purchases over (all of them fit each node's token cache). */
const BENCH_USERS = 1_000;
/** Longer than any run (`--repeat` reuses the tokens it minted). */
const TTL_S = 12 * 3600;
const MINT_CONCURRENCY = 1_000;

/** The buyer of a scenario's `seq`-th purchase: spread over BENCH_USERS, the same for the same seq. */
export const benchUser = (seq: number): string => `bench-u${(seq * 7_919) % BENCH_USERS}`;

/** Every id `benchUser` can return. */
export const benchUsers = (): string[] => Array.from({ length: BENCH_USERS }, (_, i) => `bench-u${i}`);

/** Minted tokens of this process, by role, sub and claims: a `--repeat` series mints each once. */
const minted = new Map<string, Promise<string>>();

/** `Bearer <token>` for `sub`, with the `iss` / `aud` the bench's nodes expect: `--service-env AUTH_ISSUER=…` /
 * `AUTH_AUDIENCE=…`, else the bench's env, else the service's defaults. */
async function bearer(sub: string, role: 'customer' | 'admin', env: Readonly<Record<string, string>>) {
  const issuer = env['AUTH_ISSUER'] ?? process.env['AUTH_ISSUER'] ?? defaults.authIssuer;
  const audience = env['AUTH_AUDIENCE'] ?? process.env['AUTH_AUDIENCE'] ?? defaults.authAudience;
  const key = [role, sub, issuer, audience].join('\u0000');
  if (!minted.has(key)) minted.set(key, mintToken({ sub, role, issuer, audience, ttlSeconds: TTL_S }));
  return `Bearer ${await minted.get(key)!}`;
}

/** `Authorization` header values, looked up synchronously in the load loops (never minted there). */
export type BenchTokens = Awaited<ReturnType<typeof mintTokens>>;

/** Mints (once per process) a customer token for each of `users` (default every `benchUser`) and the admin's. */
export async function mintTokens(
  { serviceEnv }: BenchOptions,
  io: BenchIO,
  users: readonly string[] = benchUsers(),
) {
  const started = performance.now();
  const bearers = new Map<string, string>();
  for (let i = 0; i < users.length; i += MINT_CONCURRENCY) {
    const chunk = users.slice(i, i + MINT_CONCURRENCY);
    const tokens = await Promise.all(chunk.map((sub) => bearer(sub, 'customer', serviceEnv)));
    chunk.forEach((sub, k) => bearers.set(sub, tokens[k]!));
  }
  const admin = await bearer('bench-admin', 'admin', serviceEnv);
  const ms = performance.now() - started;
  const ready = `${bearers.size.toLocaleString('en-US')} customer tokens and the admin's ready`;
  if (ms > 200) io.progress(`bench: ${ready} (${Math.round(ms)} ms)`);
  return {
    /** Customers minted. */
    users: bearers.size,
    /** `{ authorization }` of the admin, for the few calls outside the load loops. */
    adminHeaders: { authorization: admin },
    /** `Bearer <token>` of a customer minted up front; throws for any other user (a bench bug). */
    bearer(userId: string): string {
      const value = bearers.get(userId);
      if (value === undefined) throw new Error(`bench: no token minted for user ${userId}`);
      return value;
    },
  };
}

export type Strategy = 'actor' | 'baseline';

/** The error code of an error body (`{ error: { code } }`), or `?` when it has none. */
export function errorCode(text: string): string {
  try {
    const code = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' ? code : '?';
  } catch {
    return '?';
  }
}

/** An answer that leaves the key's order unknown: `503 OVERLOADED`, `transport UND_ERR_SOCKET`, ... */
type PurchaseAttempt = { productId: number; userId: string; key: string; answer: string };
/** Per product: fresh 201s (confirmed orders), 402s (made and cancelled), the keys answered 202 (saga open). */
type ProductTally = { created: number; declined: number; readonly pendingKeys: string[] };

/** Now on the monotonic clock, µs (the clock of V8 .cpuprofile timestamps on Linux). */
export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** A histogram of latencies, µs, up to 2 min. */
export const newLatencyHistogram = (): RecordableHistogram =>
  createHistogram({ lowest: 1, highest: 120_000_000, figures: 3 });

/** What a purchase's answer means to its load (`PurchaseLedger.purchase`'s `then`). */
type Then = (cls: AnswerClass, timing: AnswerTiming, status: number) => AnswerClass | void;

export class PurchaseLedger {
  readonly perProduct = new Map<number, ProductTally>();
  readonly ambiguous: PurchaseAttempt[] = [];
  /** Keys sent once but answered as replays: a proxy retry (through nginx) or a bug (straight to a node). */
  replayed = 0;

  /** `tokens`: of every user `purchase` is called with (minted before the load). */
  constructor(private readonly tokens: BenchTokens) {}

  /** Purchases of one unit, each with a fresh key `<tag>-<n>` and the next bench user: `stream(tag)(productId)`
   * is a load's `next`; given several products, each purchase is of one of them at random. */
  stream(tag: string): (product: number | readonly number[]) => () => OpenLoopRequest {
    let seq = 0;
    return (product) => () => {
      const ids = typeof product === 'number' ? [product] : product;
      const productId = ids[Math.floor(Math.random() * ids.length)]!;
      seq += 1;
      return this.purchase(productId, 1, `${tag}-${seq}`, benchUser(seq));
    };
  }

  tally(productId: number): ProductTally {
    const tally = this.perProduct.get(productId) ?? { created: 0, declined: 0, pendingKeys: [] };
    return this.perProduct.set(productId, tally).get(productId)!;
  }

  /** `POST /purchases` of one key as `userId` (op `purchase`); only a 201 is not an error; `then` (given the
   * status) may reclassify. */
  purchase(productId: number, quantity: number, key: string, userId: string, then?: Then): OpenLoopRequest {
    const attempt = { productId, userId, key };
    return {
      op: 'purchase',
      method: 'POST',
      path: '/purchases',
      headers: { authorization: this.tokens.bearer(userId), 'idempotency-key': key },
      body: JSON.stringify({ productId, quantity }),
      answer: (status, headers, body, timing) => {
        const cls = this.answer(attempt, status, headers, body);
        return then?.(cls, timing, status) ?? cls;
      },
      transportError: (code) => void this.ambiguous.push({ ...attempt, answer: `transport ${code}` }),
    };
  }

  private answer(
    a: Omit<PurchaseAttempt, 'answer'>,
    status: number,
    headers: IncomingHttpHeaders,
    body: string,
  ) {
    const tally = this.tally(a.productId);
    if (status === 201) {
      tally.created += 1;
      if (headers['idempotent-replayed'] !== 'true') return { error: false, label: '201' };
      // Keys are sent once: a replay means a retry on the way found its first attempt committed (nginx's on a
      // failed node: `Run.check`). Still this key's confirmed order.
      this.replayed += 1;
      return { error: false, label: '201 REPLAYED' };
    }
    if (status === 202) {
      tally.pendingKeys.push(a.key);
      return { error: true, label: '202 PENDING' };
    }
    const label = `${status} ${errorCode(body)}`;
    if (status === 402) tally.declined += 1;
    if (status >= 500) this.ambiguous.push({ ...a, answer: label });
    return { error: true, label };
  }
}
