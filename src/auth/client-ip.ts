import { isIP } from 'node:net';

/** `::ffff:1.2.3.4` (an IPv4 client on a dual-stack socket) is 1.2.3.4; IPv6 in lower case. */
export function normalizeIp(address: string): string {
  const lower = address.toLowerCase();
  return lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4 ? lower.slice(7) : lower;
}

/**
 * The client's address: the socket's, unless the socket is a trusted proxy (the balancer), in which case
 * the last `X-Forwarded-For` entry, the address that proxy saw. Entries before it are the client's own
 * claims and are never believed, so a spoofed header cannot move a request to another limit.
 */
export function clientIp(
  socketIp: string,
  forwardedFor: string | undefined,
  trusted: ReadonlySet<string>,
): string {
  const socket = normalizeIp(socketIp);
  if (forwardedFor === undefined || !trusted.has(socket)) return socket;
  const last = forwardedFor.slice(forwardedFor.lastIndexOf(',') + 1).trim();
  return isIP(last) === 0 ? socket : normalizeIp(last);
}
