// The peer's address as the per-IP limit, the trusted proxies and the internal routes see it: from uWS's
// binary form, normalized (an IPv4 client of a dual-stack socket is a.b.c.d; IPv6 is RFC 5952 text).
import fc from 'fast-check';
import t from 'tap';
import { json } from '../../src/http/reply.js';
import { createHttpServer } from '../../src/http/server.js';
import { ipv6Text, loadNativeUws, remoteAddress } from '../../src/http/uws.js';
import { silentLogger } from '../helpers/isolation.js';

const peer = (bytes: readonly number[]) => ({ getRemoteAddress: () => new Uint8Array(bytes).buffer });
const mapped = (a: number, b: number, c: number, d: number) => [
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  255,
  255,
  a,
  b,
  c,
  d,
];

t.test('IPv4, IPv4-mapped and IPv6 bytes as the text the allow lists hold', async (t) => {
  t.equal(remoteAddress(peer([10, 1, 2, 3])), '10.1.2.3');
  t.equal(remoteAddress(peer(mapped(10, 1, 2, 3))), '10.1.2.3', 'an IPv4 client of a dual-stack socket');
  t.equal(remoteAddress(peer(mapped(192, 168, 255, 0))), '192.168.255.0');
  t.equal(remoteAddress(peer([...Array(15).fill(0), 1])), '::1');
  t.equal(remoteAddress(peer(Array(16).fill(0))), '::');
  const documentation = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
  t.equal(remoteAddress(peer(documentation)), '2001:db8::1');
  t.equal(remoteAddress(peer([])), '', 'no IP address (not an IP socket)');
  // Seen before: the text comes from the map, and is the same text.
  t.equal(remoteAddress(peer([10, 1, 2, 3])), '10.1.2.3');
});

t.test("IPv6 text equals the WHATWG URL serializer's (RFC 5952 compression) for any address", async () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 }),
      (groups) => {
        const bytes = new Uint8Array(groups.flatMap((g) => [g >> 8, g & 0xff]));
        const full = groups.map((g) => g.toString(16)).join(':');
        const expected = new URL(`http://[${full}]/`).hostname.slice(1, -1);
        return ipv6Text(bytes) === expected;
      },
    ),
    { numRuns: 2000 },
  );
});

t.test(
  'a real uWS socket: IPv4 on an IPv4 listener, IPv4 and IPv6 clients of a dual-stack one',
  async (t) => {
    const uws = loadNativeUws({ fallbackRequested: false });
    const serve = async (host: string) => {
      const app = uws.App().get('/*', (res) => {
        res.end(remoteAddress(res));
      });
      const port = await new Promise<number>((resolve, reject) =>
        app.listen(host, 0, (socket) =>
          socket ? resolve(uws.us_socket_local_port(socket)) : reject(new Error(`listen on ${host}`)),
        ),
      );
      t.teardown(() => (app as typeof app & { close(): void }).close());
      return port;
    };
    const v4 = await serve('127.0.0.1');
    t.equal(await (await fetch(`http://127.0.0.1:${v4}/`)).text(), '127.0.0.1');
    const dual = await serve('::');
    t.equal(
      await (await fetch(`http://127.0.0.1:${dual}/`)).text(),
      '127.0.0.1',
      'not 0000:…:ffff:7f00:0001',
    );
    t.equal(await (await fetch(`http://[::1]:${dual}/`)).text(), '::1');
  },
);

t.test('behind a dual-stack listener, allow lists and trusted proxies match IPv4 clients', async (t) => {
  const server = createHttpServer({
    uws: loadNativeUws({ fallbackRequested: false }),
    logger: silentLogger,
    routes: [
      { method: 'get', pattern: '/internal', internal: true, handler: () => json(200, { ok: true }) },
      { method: 'get', pattern: '/who', handler: (ctx) => json(200, { ip: ctx.clientIp }) },
    ],
    access: { internalAllowFrom: ['127.0.0.1'], trustedProxies: ['127.0.0.1'] },
  });
  const port = await server.listen('::', 0);
  t.teardown(() => server.close(0));
  const internal = await fetch(`http://127.0.0.1:${port}/internal`);
  t.equal(internal.status, 200, 'an internal route from an allowed address (was 404)');
  const who = await fetch(`http://127.0.0.1:${port}/who`, { headers: { 'X-Forwarded-For': '203.0.113.9' } });
  t.same(await who.json(), { ip: '203.0.113.9' }, "the trusted proxy's X-Forwarded-For is believed");
  const direct = await fetch(`http://[::1]:${port}/who`, { headers: { 'X-Forwarded-For': '203.0.113.9' } });
  t.same(await direct.json(), { ip: '::1' }, 'an untrusted peer is its own address');
});
