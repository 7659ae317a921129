// The local stack's certificates: a CA of its own and one server certificate (127.0.0.1, localhost) it
// signs, for MariaDB (primary and replica) and Redis. Made with the openssl CLI on the first `up`, reused
// after; reissued only when missing, not signed by the CA, without the addresses, or about to expire.
//
// .stack/tls/
//   ca.pem, ca-key.pem          the CA (clients verify servers against ca.pem: MYSQL_TLS_CA_FILE, REDIS_TLS_CA_FILE)
//   server.pem, server-key.pem  the servers' certificate and key
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { STACK_HOST, STACK_TLS, TLS_DIR } from './layout.js';
import { StackError, startedBeforeChangeOf } from './process.js';

const execFileAsync = promisify(execFile);
const CA_DAYS = 3650;
const SERVER_DAYS = 825;
/** A certificate that expires within this is reissued. */
const RENEW_BEFORE_MS = 30 * 24 * 3600_000;
/** The names the server certificate is valid for: clients connect to 127.0.0.1 (or localhost). */
const SERVER_IPS = [STACK_HOST];
const SERVER_DNS = ['localhost'];

export interface TlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** Why `cert` (signed by `ca`) cannot be used, or undefined when it can. */
function certificateProblem(certFile: string, keyFile: string, ca?: X509Certificate): string | undefined {
  if (!fs.existsSync(certFile) || !fs.existsSync(keyFile)) return 'missing';
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(fs.readFileSync(certFile));
    if (!cert.checkPrivateKey(createPrivateKey(fs.readFileSync(keyFile)))) return 'key does not match';
  } catch (error) {
    return `unreadable (${(error as Error).message})`;
  }
  if (Date.parse(cert.validTo) - Date.now() < RENEW_BEFORE_MS) return `expires ${cert.validTo}`;
  if (ca === undefined) return cert.ca ? undefined : 'not a CA';
  if (!cert.verify(ca.publicKey)) return 'not signed by the CA';
  for (const ip of SERVER_IPS) if (cert.checkIP(ip) === undefined) return `not valid for ${ip}`;
  for (const dns of SERVER_DNS) if (cert.checkHost(dns) === undefined) return `not valid for ${dns}`;
  return undefined;
}

async function openssl(args: readonly string[]): Promise<void> {
  try {
    await execFileAsync('openssl', args, { timeout: 60_000 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim() ?? '';
    throw new StackError(`tls: openssl ${args[0]} failed: ${(error as Error).message}\n${stderr}`);
  }
}

/** Writes the new files beside, then renames them in place: an interrupted run leaves no half-made pair. */
async function issue(what: 'ca' | 'server'): Promise<void> {
  const staging = fs.mkdtempSync(path.join(TLS_DIR, `.issuing-${what}-`));
  try {
    const cert = path.join(staging, 'cert.pem');
    const key = path.join(staging, 'key.pem');
    if (what === 'ca') {
      await openssl([
        'req',
        ...['-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', String(CA_DAYS)],
        ...['-keyout', key, '-out', cert, '-subj', '/CN=flash-sale local stack CA'],
        ...[
          '-addext',
          'basicConstraints=critical,CA:TRUE',
          '-addext',
          'keyUsage=critical,keyCertSign,cRLSign',
        ],
      ]);
    } else {
      const csr = path.join(staging, 'server.csr');
      const extensions = path.join(staging, 'server.ext');
      const san = [...SERVER_IPS.map((ip) => `IP:${ip}`), ...SERVER_DNS.map((dns) => `DNS:${dns}`)];
      fs.writeFileSync(
        extensions,
        [
          `subjectAltName=${san.join(',')}`,
          'basicConstraints=critical,CA:FALSE',
          'keyUsage=critical,digitalSignature,keyEncipherment',
          'extendedKeyUsage=serverAuth',
          '',
        ].join('\n'),
      );
      await openssl([
        'req',
        ...['-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=localhost'],
      ]);
      await openssl([
        'x509',
        ...['-req', '-in', csr, '-CA', STACK_TLS.ca, '-CAkey', STACK_TLS.caKey],
        ...['-set_serial', `0x${randomBytes(16).toString('hex')}`, '-sha256', '-days', String(SERVER_DAYS)],
        ...['-extfile', extensions, '-out', cert],
      ]);
    }
    fs.chmodSync(key, 0o600);
    fs.chmodSync(cert, 0o644);
    const [certFile, keyFile] =
      what === 'ca' ? [STACK_TLS.ca, STACK_TLS.caKey] : [STACK_TLS.cert, STACK_TLS.key];
    fs.renameSync(key, keyFile);
    fs.renameSync(cert, certFile);
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

async function ensureFiles(): Promise<TlsFiles> {
  fs.mkdirSync(TLS_DIR, { recursive: true, mode: 0o700 });
  if (certificateProblem(STACK_TLS.ca, STACK_TLS.caKey) !== undefined) {
    await issue('ca');
    // Whatever the old CA signed is worthless now.
    fs.rmSync(STACK_TLS.cert, { force: true });
  }
  const ca = new X509Certificate(fs.readFileSync(STACK_TLS.ca));
  if (certificateProblem(STACK_TLS.cert, STACK_TLS.key, ca) !== undefined) await issue('server');
  const problem = certificateProblem(STACK_TLS.cert, STACK_TLS.key, ca);
  if (problem !== undefined) throw new StackError(`tls: the new server certificate is unusable: ${problem}`);
  return { ca: STACK_TLS.ca, cert: STACK_TLS.cert, key: STACK_TLS.key };
}

let ensured: Promise<TlsFiles> | undefined;

/**
 * The CA and server certificate, made on first use (idempotent; once per process, as every server of
 * one `up` asks). The servers read them at start: a reissued certificate makes them stale (see `issuedAt`).
 */
export function ensureTls(): Promise<TlsFiles> {
  ensured ??= ensureFiles().catch((error: unknown) => {
    ensured = undefined;
    throw error;
  });
  return ensured;
}

/** Why process `pid` serves an older server certificate than the one on disk (it was reissued), or undefined. */
export function olderThanCertificate(pid: number): string | undefined {
  return startedBeforeChangeOf(pid, [STACK_TLS.cert]) === undefined
    ? undefined
    : 'started before its certificate was reissued';
}
