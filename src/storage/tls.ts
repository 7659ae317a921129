import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { AppError } from '../errors.js';

/**
 * Reads the CA a client verifies its server against, once per client. A missing or unreadable file is an
 * error naming the setting (`setting`), the file and what to do instead (`plaintext`: how to turn TLS off).
 */
export function readCaFile(setting: string, caFile: string, server: string, plaintext: string): Buffer {
  const file = resolve(caFile);
  try {
    return readFileSync(file);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new AppError(
      'STARTUP_FAILED',
      `${setting}=${caFile} (${file}): ${why}. Point it at the CA that signed the ${server} servers' ` +
        `certificates (the local stack writes .stack/tls/ca.pem: npm run stack -- up), or ${plaintext}`,
      { cause: err },
    );
  }
}
