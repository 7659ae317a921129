import type { TokenVerifier } from '../../src/auth/tokens.js';
import { pino } from 'pino';
import type { Test } from 'tap';
import { createHttpServer, type Route } from '../../src/http/server.js';
import { loadNativeUws } from '../../src/http/uws.js';

export const silentLogger = pino({ level: 'silent' });
export const uws = loadNativeUws({ fallbackRequested: false });

/** Starts a uWS server with `routes` on a free port and closes it when the test ends. */
export async function startServer(
  t: Test,
  routes: Route[],
  options: { maxBodyBytes?: number; tokens?: TokenVerifier; trustedProxies?: readonly string[] } = {},
) {
  const server = createHttpServer({
    uws,
    logger: silentLogger,
    routes,
    ...(options.maxBodyBytes ? { maxBodyBytes: options.maxBodyBytes } : {}),
    access: {
      ...(options.tokens ? { tokens: options.tokens } : {}),
      ...(options.trustedProxies ? { trustedProxies: options.trustedProxies } : {}),
    },
  });
  const port = await server.listen('127.0.0.1', 0);
  let closed = false;
  t.teardown(async () => {
    if (!closed) await server.close(0);
  });
  return {
    server,
    base: `http://127.0.0.1:${port}`,
    close: async (graceMs: number) => {
      closed = true;
      return server.close(graceMs);
    },
  };
}
