/**
 * The `reads` scenario's reference server: a bare uWebSockets.js app answering every GET with the given
 * body and headers, on the native binary only: `node --import tsx bench/uws-hello.ts <port> <body> [headers]
 * [peer]`. With `peer` it also reads each request's peer address as the node does for its per-IP limit
 * (`remoteAddress`: one getpeername system call).
 */
import { loadNativeUws, remoteAddress } from '../src/http/uws.js';

const [portArg, body = '{"hello":"world"}', headersArg = '{}', mode = ''] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port <= 0 || port > 65_535 || !['', 'peer'].includes(mode)) {
  process.stderr.write('usage: uws-hello.ts <port> [body] [headers as a JSON object] [peer]\n');
  process.exit(2);
}
const peer = mode === 'peer';
const headers = Object.entries(JSON.parse(headersArg) as Record<string, string>);

let uws;
try {
  uws = loadNativeUws({
    fallbackRequested: !['', '0', 'false'].includes((process.env['UWS_USE_FALLBACK'] ?? '').toLowerCase()),
  });
} catch (err) {
  process.stderr.write(`uws-hello: ${(err as Error).message}\n`);
  process.exit(1);
}

uws
  .App()
  .get('/*', (res) => {
    if (peer) remoteAddress(res);
    res.writeStatus('200 OK');
    for (const [name, value] of headers) res.writeHeader(name, value);
    res.end(body);
  })
  .listen('127.0.0.1', port, (socket) => {
    if (socket === false) {
      process.stderr.write(`uws-hello: cannot listen on 127.0.0.1:${port}\n`);
      process.exit(1);
    }
    process.stdout.write(
      `uws-hello listening on 127.0.0.1:${port}${peer ? ', reading peer addresses' : ''}\n`,
    );
  });
