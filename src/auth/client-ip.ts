import { BlockList, isIP } from 'node:net';
import { AppError } from '../errors.js';

/** `::ffff:1.2.3.4` (an IPv4 client on a dual-stack socket) is 1.2.3.4; IPv6 in lower case. */
export function normalizeIp(address: string): string {
  const lower = address.toLowerCase();
  return lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4 ? lower.slice(7) : lower;
}

/** Whether an address is one of a list of addresses and CIDR ranges. */
export interface AddressSet {
  has(ip: string): boolean;
}

/** An address `1.2.3.4`, `::1`, or a range `10.0.0.0/8`, `fd00::/8`; undefined when it is neither. */
function parseEntry(
  entry: string,
): { address: string; prefix: number | undefined; family: 'ipv4' | 'ipv6' } | undefined {
  const [address = '', prefixText, extra] = entry.split('/');
  const version = isIP(address);
  if (version === 0 || extra !== undefined) return undefined;
  const prefix = prefixText === undefined ? undefined : Number(prefixText);
  const max = version === 4 ? 32 : 128;
  if (prefix !== undefined && (!/^\d{1,3}$/.test(prefixText!) || prefix > max)) return undefined;
  return { address: normalizeIp(address), prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** True for a valid list entry (config validation). */
export const isAddressOrRange = (entry: string): boolean => parseEntry(entry) !== undefined;

/** The set of `entries` (addresses and CIDR ranges); a plain address is a map lookup. */
export function addressSet(entries: readonly string[]): AddressSet {
  const exact = new Set<string>();
  const ranges = new BlockList();
  let hasRanges = false;
  for (const entry of entries) {
    const parsed = parseEntry(entry);
    if (parsed === undefined)
      throw new AppError('STARTUP_FAILED', `not an IP address or CIDR range: ${JSON.stringify(entry)}`);
    if (parsed.prefix === undefined) exact.add(parsed.address);
    else {
      ranges.addSubnet(parsed.address, parsed.prefix, parsed.family);
      hasRanges = true;
    }
  }
  return {
    has(ip) {
      if (exact.has(ip)) return true;
      if (!hasRanges) return false;
      const version = isIP(ip);
      return version !== 0 && ranges.check(ip, version === 4 ? 'ipv4' : 'ipv6');
    },
  };
}

/**
 * The client's address: the socket's, unless the socket is a trusted proxy (the balancer), in which case
 * the last `X-Forwarded-For` entry, the address that proxy saw. Entries before it are the client's own
 * claims and are never believed, so a spoofed header cannot move a request to another limit.
 */
export function clientIp(socketIp: string, forwardedFor: string | undefined, trusted: AddressSet): string {
  const socket = normalizeIp(socketIp);
  if (forwardedFor === undefined || !trusted.has(socket)) return socket;
  const last = forwardedFor.slice(forwardedFor.lastIndexOf(',') + 1).trim();
  return isIP(last) === 0 ? socket : normalizeIp(last);
}
