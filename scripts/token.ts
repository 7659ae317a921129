// `npm run -s token -- --sub <user> --role <customer|admin> [--ttl-s <seconds>]`: prints a JWT signed with
// the local stack's key (made on first use), with the configured issuer and audience, and nothing else.
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../src/config.js';
import { ROLES } from '../src/auth/tokens.js';
import { mintToken } from './stack/auth-key.js';

const USAGE = 'usage: npm run -s token -- --sub <user> --role <customer|admin> [--ttl-s <seconds>]';

function fail(message: string): never {
  process.stderr.write(`token: ${message}\n${USAGE}\n`);
  process.exit(2);
}

// `--ttl-s -120` (a negative number after its option) would read as an option of its own: join them.
const args = process.argv
  .slice(2)
  .flatMap((arg, i, all) =>
    arg === '--ttl-s' && /^-\d+$/.test(all[i + 1] ?? '')
      ? []
      : all[i - 1] === '--ttl-s' && /^-\d+$/.test(arg)
        ? [`--ttl-s=${arg}`]
        : [arg],
  );
let values;
try {
  ({ values } = parseArgs({
    args,
    options: { sub: { type: 'string' }, role: { type: 'string' }, 'ttl-s': { type: 'string' } },
    strict: true,
  }));
} catch (err) {
  fail((err as Error).message);
}
const { sub, role } = values;
if (sub === undefined || !/^[A-Za-z0-9._:@-]{1,64}$/.test(sub))
  fail('--sub is required: 1 to 64 characters of A-Z a-z 0-9 . _ : @ -');
if (role === undefined || !(ROLES as readonly string[]).includes(role))
  fail(`--role is required: one of ${ROLES.join(', ')}`);
const ttl = values['ttl-s'] === undefined ? 3600 : Number(values['ttl-s']);
if (!Number.isSafeInteger(ttl) || ttl === 0)
  fail('--ttl-s must be a non-zero whole number of seconds (negative: an already expired token)');
let auth;
try {
  ({ auth } = loadConfig());
} catch (err) {
  if (err instanceof ConfigError) fail(err.message);
  throw err;
}
process.stdout.write(
  `${await mintToken({ sub, role, issuer: auth.issuer, audience: auth.audience, ttlSeconds: ttl })}\n`,
);
