// The local stack's token signing key: an Ed25519 pair made on first `up`, the public half as the JWKS
// file the service verifies with (AUTH_JWKS_FILE's default). Tests, the bench and `npm run token` sign with it.
import fs from 'node:fs';
import path from 'node:path';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { STACK_DIR } from './layout.js';

export const AUTH_DIR = path.join(STACK_DIR, 'auth');
/** The private key (JWK). Never leaves `.stack/`. */
export const SIGNING_KEY_FILE = path.join(AUTH_DIR, 'signing-key.json');
/** The public key set the service loads (config default `.stack/auth/jwks.json`). */
export const JWKS_FILE = path.join(AUTH_DIR, 'jwks.json');
const ALGORITHM = 'EdDSA';

/** Creates the key pair unless both files exist; returns the private JWK. Idempotent and race-safe. */
export async function ensureSigningKey(): Promise<JWK> {
  if (fs.existsSync(SIGNING_KEY_FILE) && fs.existsSync(JWKS_FILE))
    return JSON.parse(fs.readFileSync(SIGNING_KEY_FILE, 'utf8')) as JWK;
  const { privateKey, publicKey } = await generateKeyPair(ALGORITHM, { crv: 'Ed25519', extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: ALGORITHM, use: 'sig' };
  fs.mkdirSync(AUTH_DIR, { recursive: true, mode: 0o700 });
  // Written beside, then renamed: a concurrent reader never sees half a file, and the pair stays matched.
  const write = (file: string, value: unknown, mode: number) => {
    const staging = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(staging, `${JSON.stringify(value, null, 2)}\n`, { mode });
    fs.renameSync(staging, file);
  };
  if (fs.existsSync(SIGNING_KEY_FILE) || fs.existsSync(JWKS_FILE)) {
    // Half a pair (an interrupted first run): start over.
    fs.rmSync(SIGNING_KEY_FILE, { force: true });
    fs.rmSync(JWKS_FILE, { force: true });
  }
  write(JWKS_FILE, { keys: [{ ...publicJwk, kid, alg: ALGORITHM, use: 'sig' }] }, 0o644);
  write(SIGNING_KEY_FILE, privateJwk, 0o600);
  return privateJwk;
}

export interface TokenClaims {
  sub: string;
  role: string;
  issuer: string;
  audience: string;
  /** Lifetime from now, s; negative: already expired that long ago. Default 3600. */
  ttlSeconds?: number;
  /** Not valid before this many seconds from now. */
  notBeforeSeconds?: number;
}

let signing: Promise<{ key: Awaited<ReturnType<typeof importJWK>>; kid: string }> | undefined;

/** A JWT signed with the local key (created if missing). */
export async function mintToken(claims: TokenClaims): Promise<string> {
  signing ??= ensureSigningKey().then(async (jwk) => ({
    key: await importJWK(jwk, ALGORITHM),
    kid: jwk.kid!,
  }));
  const { key, kid } = await signing;
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ role: claims.role })
    .setProtectedHeader({ alg: ALGORITHM, kid, typ: 'JWT' })
    .setSubject(claims.sub)
    .setIssuer(claims.issuer)
    .setAudience(claims.audience)
    .setIssuedAt(now)
    .setExpirationTime(now + (claims.ttlSeconds ?? 3600));
  if (claims.notBeforeSeconds !== undefined) jwt.setNotBefore(now + claims.notBeforeSeconds);
  return jwt.sign(key);
}
