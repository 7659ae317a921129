import { defaults } from '../../src/config.js';
import type { Role } from '../../src/auth/tokens.js';
import { mintToken, type TokenClaims } from '../../scripts/stack/auth-key.js';

const minted = new Map<string, Promise<string>>();

/**
 * A token of the local stack's key for `sub` with `role`, issuer and audience as the service's defaults;
 * one per (sub, role) per test process. `claims` overrides make a one-off (expired, wrong audience, ...).
 */
export function tokenFor(sub: string, role: Role = 'customer', claims: Partial<TokenClaims> = {}) {
  const make = () =>
    mintToken({ sub, role, issuer: defaults.authIssuer, audience: defaults.authAudience, ...claims });
  if (Object.keys(claims).length > 0) return make();
  const key = `${role}\u0000${sub}`;
  let token = minted.get(key);
  if (token === undefined) {
    token = make();
    minted.set(key, token);
  }
  return token;
}

/** `{ authorization: 'Bearer …' }` for a customer `sub` (or another role). */
export async function asUser(sub: string, role: Role = 'customer'): Promise<{ authorization: string }> {
  return { authorization: `Bearer ${await tokenFor(sub, role)}` };
}

/** `{ authorization: 'Bearer …' }` of the tests' admin. */
export const asAdmin = (): Promise<{ authorization: string }> => asUser('test-admin', 'admin');

/** Limits far above what any test offers, so only the rate-limit tests (which set their own) see a 429. */
export const UNLIMITED_ENV = {
  RATE_LIMIT_IP_PER_S: '10000000',
  RATE_LIMIT_USER_PURCHASES_PER_S: '1000000',
} as const;
