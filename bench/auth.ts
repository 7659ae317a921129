/**
 * The bench's callers: a bearer token per bench user and the admin's, signed with the local stack's key,
 * minted once before any load (each node then verifies a user's token once and caches it).
 */
import { mintToken } from '../scripts/stack/auth-key.js';
import { defaults } from '../src/config.js';
import type { BenchIO, BenchOptions } from './types.js';

/** Distinct buyers the scenarios spread purchases over (all of them fit each node's token cache). */
export const BENCH_USERS = 1_000;
/** Longer than any run (`--repeat` reuses the tokens it minted). */
const TTL_S = 12 * 3600;
const MINT_CONCURRENCY = 1_000;

/** The buyer of a scenario's `seq`-th purchase: spread over BENCH_USERS, the same for the same seq. */
export const benchUser = (seq: number): string => `bench-u${(seq * 7_919) % BENCH_USERS}`;

/** Every id `benchUser` can return. */
export const benchUsers = (): string[] => Array.from({ length: BENCH_USERS }, (_, i) => `bench-u${i}`);

/** Minted tokens of this process, by role, sub and claims: a `--repeat` series mints each once. */
const minted = new Map<string, Promise<string>>();

/** A token for `sub`, with the `iss` / `aud` the bench's nodes expect: `--service-env AUTH_ISSUER=…` /
 * `AUTH_AUDIENCE=…`, else the bench's env, else the service's defaults. */
function token(sub: string, role: 'customer' | 'admin', env: Readonly<Record<string, string>>) {
  const issuer = env['AUTH_ISSUER'] ?? process.env['AUTH_ISSUER'] ?? defaults.authIssuer;
  const audience = env['AUTH_AUDIENCE'] ?? process.env['AUTH_AUDIENCE'] ?? defaults.authAudience;
  const key = [role, sub, issuer, audience].join('\u0000');
  if (!minted.has(key)) minted.set(key, mintToken({ sub, role, issuer, audience, ttlSeconds: TTL_S }));
  return minted.get(key)!;
}

/** `Authorization` header values, looked up synchronously in the load loops (never minted there). */
export class BenchTokens {
  private constructor(
    private readonly bearers: ReadonlyMap<string, string>,
    /** `Bearer <admin token>`. */
    readonly admin: string,
  ) {}

  /** Customers minted. */
  get users(): number {
    return this.bearers.size;
  }

  /** `Bearer <token>` of a customer minted up front; throws for any other user (a bench bug). */
  bearer(userId: string): string {
    const value = this.bearers.get(userId);
    if (value === undefined) throw new Error(`bench: no token minted for user ${userId}`);
    return value;
  }

  /** `{ authorization }` of the admin, for the few calls outside the load loops. */
  adminHeaders(): { authorization: string } {
    return { authorization: this.admin };
  }

  /** Mints (once per process) a customer token for each of `users` (default every `benchUser`) and the admin's. */
  static async mint(
    options: Pick<BenchOptions, 'serviceEnv'>,
    io: Pick<BenchIO, 'progress'>,
    users: readonly string[] = benchUsers(),
  ): Promise<BenchTokens> {
    const started = performance.now();
    const bearers = new Map<string, string>();
    for (let i = 0; i < users.length; i += MINT_CONCURRENCY) {
      const chunk = users.slice(i, i + MINT_CONCURRENCY);
      const tokens = await Promise.all(chunk.map((sub) => token(sub, 'customer', options.serviceEnv)));
      chunk.forEach((sub, k) => bearers.set(sub, `Bearer ${tokens[k]!}`));
    }
    const admin = `Bearer ${await token('bench-admin', 'admin', options.serviceEnv)}`;
    const ms = performance.now() - started;
    if (ms > 200)
      io.progress(
        `bench: ${bearers.size.toLocaleString('en-US')} customer tokens and the admin's ready (${Math.round(ms)} ms)`,
      );
    return new BenchTokens(bearers, admin);
  }
}
