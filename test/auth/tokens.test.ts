import { SignJWT, createLocalJWKSet, exportJWK, generateKeyPair, type JWK } from 'jose';
import t from 'tap';
import { defaults, loadConfig } from '../../src/config.js';
import { AppError } from '../../src/errors.js';
import { TokenVerifier, requireRole, type Identity } from '../../src/auth/tokens.js';

const auth = loadConfig({}).auth;
const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'EdDSA' };
const keys = createLocalJWKSet({ keys: [publicJwk] });

const sign = (claims: Record<string, unknown>, options: { exp?: number; key?: typeof privateKey } = {}) => {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    role: 'customer',
    sub: 'alice',
    iss: defaults.authIssuer,
    aud: defaults.authAudience,
    exp: options.exp ?? now + 600,
    ...claims,
  })
    .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
    .sign(options.key ?? privateKey);
};

/** The AppError an authenticate call refuses with. */
async function refusal(verifier: TokenVerifier, header: string | undefined): Promise<AppError> {
  try {
    await verifier.authenticate(header);
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error(`accepted: ${header}`);
}

t.test('a good token gives its sub and role; the second check is a cache hit', async (t) => {
  const seen: string[] = [];
  const verifier = new TokenVerifier({ auth, keys, onVerify: (how) => seen.push(how) });
  const token = await sign({});
  const first = await verifier.authenticate(`Bearer ${token}`);
  t.match(first, { userId: 'alice', role: 'customer' });
  const second = verifier.authenticate(`Bearer ${token}`);
  t.notOk(second instanceof Promise, 'a cached token is answered synchronously');
  t.equal((second as Identity).userId, 'alice');
  t.same(seen, ['verified', 'cached']);
});

t.test('every bad token is 401 UNAUTHENTICATED with a Bearer invalid_token challenge', async (t) => {
  const verifier = new TokenVerifier({ auth, keys });
  const now = Math.floor(Date.now() / 1000);
  const other = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const good = await sign({});
  const [header, payload, signature] = good.split('.') as [string, string, string];
  const tampered = JSON.parse(Buffer.from(payload, 'base64url').toString());
  tampered.role = 'admin';
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...tampered, role: 'customer' })}.`;
  // Algorithm confusion: an HMAC token keyed with the public key's bytes.
  const hs256 = await new SignJWT({ role: 'admin' })
    .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
    .setSubject('alice')
    .setIssuer(defaults.authIssuer)
    .setAudience(defaults.authAudience)
    .setExpirationTime(now + 600)
    .sign(new TextEncoder().encode(JSON.stringify(publicJwk)));
  const noSub = await new SignJWT({ role: 'customer' })
    .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
    .setIssuer(defaults.authIssuer)
    .setAudience(defaults.authAudience)
    .setExpirationTime(now + 600)
    .sign(privateKey);
  const cases: [string, string, RegExp][] = [
    ['alg none', unsigned, /algorithm|malformed/],
    ['HS256 with the public key as secret', hs256, /algorithm/],
    ['wrong key', await sign({}, { key: other.privateKey }), /signature/],
    ['tampered payload', `${header}.${b64(tampered)}.${signature}`, /signature/],
    ['expired beyond the skew', await sign({}, { exp: now - auth.clockSkewSeconds - 5 }), /expired/],
    ['not valid yet', await sign({ nbf: now + auth.clockSkewSeconds + 60 }), /not valid yet/],
    ['wrong audience', await sign({ aud: 'someone-else' }), /aud/],
    ['wrong issuer', await sign({ iss: 'https://evil.example' }), /iss/],
    ['no sub', noSub, /sub/],
    ['unknown role', await sign({ role: 'superuser' }), /role/],
    ['a sub with spaces', await sign({ sub: 'bob smith' }), /sub/],
    ['garbage', 'not.a.jwt', /malformed/],
  ];
  for (const [name, token, message] of cases) {
    const err = await refusal(verifier, `Bearer ${token}`);
    t.equal(err.code, 'UNAUTHENTICATED', `${name}: UNAUTHENTICATED`);
    t.equal(err.status, 401);
    t.match(err.message, message, `${name}: ${err.message}`);
    t.match(err.headers?.['WWW-Authenticate'], /^Bearer realm="flash-sale", error="invalid_token"/);
  }
  t.equal(verifier.cached(), 0, 'no refused token is remembered');
  const missing = await refusal(verifier, undefined);
  t.equal(missing.headers?.['WWW-Authenticate'], 'Bearer realm="flash-sale"', 'no token: a bare challenge');
  t.match((await refusal(verifier, `Basic ${good}`)).message, /Bearer/);
  t.match((await refusal(verifier, `Bearer ${'a'.repeat(5000)}`)).message, /longer than/);
});

t.test(
  'within the clock skew an expired token still passes; the cache forgets it at exp + skew',
  async (t) => {
    const verifier = new TokenVerifier({ auth, keys });
    const now = Math.floor(Date.now() / 1000);
    const identity = await verifier.authenticate(`Bearer ${await sign({}, { exp: now - 5 })}`);
    t.equal(identity.validUntilMs, (now - 5 + auth.clockSkewSeconds) * 1000);
  },
);

t.test('the cache is bounded: past its size the oldest token goes first', async (t) => {
  const verifier = new TokenVerifier({ auth: { ...auth, tokenCacheSize: 2 }, keys });
  const tokens = await Promise.all(['a', 'b', 'c'].map((sub) => sign({ sub })));
  for (const token of tokens) await verifier.authenticate(`Bearer ${token}`);
  t.equal(verifier.cached(), 2);
  t.ok(verifier.authenticate(`Bearer ${tokens[2]}`) instanceof Promise === false, 'the newest is cached');
  t.ok(verifier.authenticate(`Bearer ${tokens[0]}`) instanceof Promise, 'the oldest was dropped');
});

t.test('roles: the wrong one is 403 FORBIDDEN naming the role needed', async (t) => {
  const customer: Identity = { userId: 'alice', role: 'customer', validUntilMs: Date.now() + 1000 };
  t.doesNotThrow(() => requireRole(customer, ['customer', 'admin']));
  t.throws(() => requireRole(customer, ['admin']), { code: 'FORBIDDEN', message: /needs the role admin/ });
});

t.test('a JWKS file that cannot be read names the setting and the fix', async (t) => {
  t.throws(() => new TokenVerifier({ auth: { ...auth, jwksFile: '/nonexistent/jwks.json' } }), {
    message: /AUTH_JWKS_FILE .*npm run stack -- up/,
  });
});
