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

/** Texts of the IPv4 peers seen lately, by their 32-bit address; cleared when it grows past the bound. */
const ipv4Texts = new Map<number, string>();
/** Texts of the IPv6 peers seen lately, by their 16 bytes as latin1. */
const ipv6Texts = new Map<string, string>();
const PEER_TEXTS_MAX = 10_000;

function remember<K>(texts: Map<K, string>, key: K, text: string): string {
  if (texts.size >= PEER_TEXTS_MAX) texts.clear();
  texts.set(key, text);
  return text;
}

/** `::ffff:a.b.c.d` as 16 bytes: ten zero bytes, then two 0xff. */
function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i += 1) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** 16 bytes as RFC 5952 text: lower-case hex groups, the longest run of two or more zero groups as `::`. */
export function ipv6Text(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  let bestAt = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let end = i;
    while (end < 8 && groups[end] === 0) end += 1;
    if (end - i > bestLength) {
      bestAt = i;
      bestLength = end - i;
    }
    i = end;
  }
  const hex = (from: number, to: number) =>
    groups
      .slice(from, to)
      .map((g) => g.toString(16))
      .join(':');
  return bestAt < 0 ? hex(0, 8) : `${hex(0, bestAt)}::${hex(bestAt + bestLength, 8)}`;
}

/**
 * The peer's address as normalized text: `127.0.0.1`, also for an IPv4 client of a dual-stack (`::`)
 * socket, and RFC 5952 text for IPv6 (`::1`), as `normalizeIp` and the allow lists expect. uWS's own
 * text form is neither (`0000:…:ffff:7f00:0001`), and it reads the address from the kernel on every call
 * (a getpeername syscall, unavoidable: this uWS build keeps no per-connection state for HTTP). The binary
 * form costs about half of the text form with its decode (2.3–3.9 against 4.4–6.4 CPU-µs measured on this
 * project's VM), and an address seen before gets its text from a map.
 */
export function remoteAddress(res: { getRemoteAddress(): ArrayBuffer }): string {
  const bytes = new Uint8Array(res.getRemoteAddress());
  if (bytes.length === 4 || (bytes.length === 16 && isV4Mapped(bytes))) {
    const at = bytes.length - 4;
    const key = ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
    return (
      ipv4Texts.get(key) ??
      remember(ipv4Texts, key, `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}`)
    );
  }
  if (bytes.length !== 16) return ''; // not an IP socket (uWS gives an empty buffer)
  const key = String.fromCharCode(...bytes);
  return ipv6Texts.get(key) ?? remember(ipv6Texts, key, ipv6Text(bytes));
}
