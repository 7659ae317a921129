import fs from 'node:fs';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors as joseErrors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
} from 'jose';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';

/** What a caller may do: `customer` buys and reads own orders; `admin` runs the catalog and reads all. */
export type Role = 'customer' | 'admin';
export const ROLES: readonly Role[] = ['customer', 'admin'];

/** A verified caller. */
export interface Identity {
  /** The token's `sub`: the user id orders are recorded under. */
  readonly userId: string;
  readonly role: Role;
  /** When the token stops being accepted (its `exp` plus the clock skew), ms since the epoch. */
  readonly validUntilMs: number;
}

/** The same characters and length as an order's `user_id` column allows. */
const SUBJECT = /^[A-Za-z0-9._:@-]{1,64}$/;
/** Longest `Authorization` header looked at; longer is refused before any parsing. */
export const MAX_TOKEN_LENGTH = 4096;

/** RFC 6750: no credentials → a challenge without an error; bad credentials → `invalid_token`. */
function unauthenticated(message: string, invalidToken: boolean): AppError {
  const challenge = invalidToken
    ? `Bearer realm="flash-sale", error="invalid_token", error_description="${message.replace(/["\\]/g, "'")}"`
    : 'Bearer realm="flash-sale"';
  return new AppError('UNAUTHENTICATED', message, {
    field: 'Authorization',
    headers: { 'WWW-Authenticate': challenge },
  });
}

/** Why jose refused a token, in words a client can act on. */
function describe(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return 'the token is not valid yet (nbf)';
    if (err.reason === 'missing') return `the token has no ${err.claim} claim`;
    return `the token's ${err.claim} claim is not accepted`;
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed || err instanceof joseErrors.JOSENotSupported)
    return 'the token is signed with an algorithm not accepted';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'the token signature does not verify';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no key of the issuer matches the token';
  if (err instanceof joseErrors.JWKSTimeout) return 'the key set could not be fetched in time';
  return 'the token is malformed';
}

/** The key set tokens are checked against: a JWKS URL (fetched, cached, refetched for a new `kid`) or a file. */
export function loadKeySet(auth: Config['auth']): JWTVerifyGetKey {
  if (auth.jwksUrl !== undefined)
    return createRemoteJWKSet(new URL(auth.jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 600_000 });
  let text: string;
  try {
    text = fs.readFileSync(auth.jwksFile, 'utf8');
  } catch (cause) {
    throw new AppError(
      'STARTUP_FAILED',
      `AUTH_JWKS_FILE ${auth.jwksFile} cannot be read (${(cause as Error).message}): run \`npm run stack -- up\` ` +
        'to create the local signing key, or set AUTH_JWKS_URL to your identity provider',
      { cause },
    );
  }
  return createLocalJWKSet(JSON.parse(text) as JSONWebKeySet);
}

export interface TokenVerifierOptions {
  auth: Config['auth'];
  keys?: JWTVerifyGetKey;
  /** Called once per token checked: `cached` or the signature verified, and the outcome. */
  onVerify?: (how: 'cached' | 'verified' | 'refused') => void;
}

/**
 * Verifies `Authorization: Bearer` tokens: algorithms pinned by configuration, `exp`, `sub`, `iss`, `aud`
 * required. A verified token is remembered (bounded, until its `exp`), so a user's next requests cost a
 * map lookup instead of a signature check. Refused tokens are not remembered.
 */
export class TokenVerifier {
  private readonly cache = new Map<string, Identity>();
  private readonly keys: JWTVerifyGetKey;
  private readonly verifyOptions;

  constructor(private readonly options: TokenVerifierOptions) {
    this.keys = options.keys ?? loadKeySet(options.auth);
    this.verifyOptions = {
      algorithms: [...options.auth.algorithms],
      issuer: options.auth.issuer,
      audience: options.auth.audience,
      clockTolerance: options.auth.clockSkewSeconds,
      requiredClaims: ['exp', 'sub', 'iss', 'aud'],
    };
  }

  /** The caller of a request, from its `Authorization` header; throws 401 UNAUTHENTICATED. */
  authenticate(authorization: string | undefined): Identity | Promise<Identity> {
    if (authorization === undefined || authorization === '')
      throw unauthenticated('this route needs an Authorization: Bearer <token> header', false);
    if (authorization.length > MAX_TOKEN_LENGTH)
      throw unauthenticated(`the Authorization header is longer than ${MAX_TOKEN_LENGTH} characters`, true);
    if (!/^Bearer [A-Za-z0-9_\-.=]+$/.test(authorization))
      throw unauthenticated('the Authorization header must be "Bearer <token>"', true);
    const token = authorization.slice(7);
    const cached = this.cache.get(token);
    if (cached !== undefined) {
      if (Date.now() < cached.validUntilMs) {
        this.options.onVerify?.('cached');
        return cached;
      }
      this.cache.delete(token);
    }
    return this.verify(token);
  }

  private async verify(token: string): Promise<Identity> {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.keys, this.verifyOptions));
    } catch (err) {
      this.options.onVerify?.('refused');
      throw unauthenticated(describe(err), true);
    }
    const { sub, role, exp } = payload;
    if (typeof sub !== 'string' || !SUBJECT.test(sub)) {
      this.options.onVerify?.('refused');
      throw unauthenticated('the token sub must be 1 to 64 characters of A-Z a-z 0-9 . _ : @ -', true);
    }
    if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) {
      this.options.onVerify?.('refused');
      throw unauthenticated(`the token role claim must be one of ${ROLES.join(', ')}`, true);
    }
    const identity: Identity = {
      userId: sub,
      role: role as Role,
      validUntilMs: (exp! + this.options.auth.clockSkewSeconds) * 1000,
    };
    this.remember(token, identity);
    this.options.onVerify?.('verified');
    return identity;
  }

  private remember(token: string, identity: Identity): void {
    const limit = this.options.auth.tokenCacheSize;
    if (limit === 0) return;
    // A Map iterates in insertion order: past the bound, the oldest entry goes first.
    if (this.cache.size >= limit) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(token, identity);
  }

  /** Tokens remembered now. */
  cached(): number {
    return this.cache.size;
  }
}

/** Refuses an identity whose role is not among `roles`: 403 FORBIDDEN naming the role needed. */
export function requireRole(identity: Identity, roles: readonly Role[]): void {
  if (!roles.includes(identity.role)) {
    throw new AppError(
      'FORBIDDEN',
      `this route needs the role ${roles.join(' or ')}; the token has ${identity.role}`,
      { field: 'Authorization' },
    );
  }
}
