import { createRequire } from 'node:module';
import type * as UWS from 'uWebSockets.js';
import { AppError } from '../errors.js';

/**
 * Loads the native uWebSockets.js binary directly. The package's own entry point silently falls back
 * to a slow pure-Node implementation when the binary does not load; a flash-sale front must refuse to
 * start instead.
 */
export type Uws = typeof UWS;

/** uWebSockets.js's native binary cannot be loaded here: the service refuses to start (STARTUP_FAILED). */
export class NativeUwsUnavailableError extends AppError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('STARTUP_FAILED', message, options);
    this.name = 'NativeUwsUnavailableError';
  }
}

export function loadNativeUws(options: { fallbackRequested: boolean }): Uws {
  if (options.fallbackRequested) {
    throw new NativeUwsUnavailableError(
      'UWS_USE_FALLBACK is set: refusing to run on the pure-Node uWebSockets.js fallback; unset UWS_USE_FALLBACK',
    );
  }
  const require = createRequire(import.meta.url);
  const binary = `uWebSockets.js/binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  try {
    return require(binary) as Uws;
  } catch (cause) {
    throw new NativeUwsUnavailableError(
      `the native uWebSockets.js binary ${binary} does not load on this machine (Node ${process.version}, ` +
        `${process.platform}/${process.arch}); refusing to start on the slow fallback. ` +
        `Use Node 20 on glibc <= 2.36, as package.json's engines field says.`,
      { cause },
    );
  }
}

const asciiDecoder = new TextDecoder();

/**
 * The peer's address as text (`127.0.0.1`, `::1`). uWS reads it from the kernel on every call (a
 * getpeername syscall); decoding its bytes with one shared TextDecoder is ~5× cheaper than
 * `Buffer.from(…).toString()`, which a cached read paid on every request.
 */
export function remoteAddress(res: { getRemoteAddressAsText(): ArrayBuffer }): string {
  return asciiDecoder.decode(res.getRemoteAddressAsText());
}
