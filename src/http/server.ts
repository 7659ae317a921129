import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { AppError, toAppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { readBody } from './body.js';
import { errorReply, writeReply, type Reply } from './reply.js';
import type { Uws } from './uws.js';

/**
 * The HTTP front on uWebSockets.js. Rules this file keeps (from the uWS examples):
 * read everything from HttpRequest before the first await (it is stack-allocated), attach onAborted
 * before any await, and cork every write that happens after one.
 */

export type Method = 'get' | 'post' | 'put' | 'patch' | 'del';

/** A request copied out of uWS, safe to use after an await. */
export interface RequestContext {
  readonly method: string;
  readonly url: string;
  /** Route parameters in pattern order (`/products/:id` → params[0]). */
  readonly params: readonly string[];
  /** Raw query string without `?`. */
  readonly query: string;
  /** Lower-cased header names. */
  readonly headers: Readonly<Record<string, string>>;
  /** The request body; empty for methods without one. */
  readonly body: Buffer;
  readonly log: Logger;
  /** True once the client went away; a handler may stop early. */
  readonly aborted: () => boolean;
}

export type Handler = (ctx: RequestContext) => Reply | Promise<Reply>;

export interface Route {
  method: Method;
  pattern: string;
  handler: Handler;
}

export interface HttpServerOptions {
  uws: Uws;
  logger: Logger;
  routes: readonly Route[];
  /** Largest request body accepted, bytes. Default 16 KiB. */
  maxBodyBytes?: number;
  /** Called once per answered request (metrics). */
  onResponse?: (info: { method: string; route: string; status: number; seconds: number }) => void;
}

export interface HttpServer {
  readonly app: TemplatedApp;
  /** Starts listening; resolves with the bound port (useful with port 0). */
  listen(host: string, port: number): Promise<number>;
  /** Requests being handled now. */
  inFlight(): number;
  /** Stop accepting, let in-flight requests finish for up to `graceMs`, then close every connection. */
  close(graceMs: number): Promise<{ drained: boolean; abandoned: number }>;
}

const paramCount = (pattern: string): number =>
  pattern.split('/').filter((part) => part.startsWith(':')).length;

export function createHttpServer(options: HttpServerOptions): HttpServer {
  const { uws, logger } = options;
  const maxBodyBytes = options.maxBodyBytes ?? 16 * 1024; // 16 KiB
  const app = uws.App();
  let listenSocket: us_listen_socket | undefined;
  let draining = false;
  let inFlight = 0;
  let drainedWaiter: (() => void) | undefined;
  let requestSeq = 0;

  const finished = (): void => {
    inFlight -= 1;
    if (inFlight === 0 && drainedWaiter) drainedWaiter();
  };

  const serve = (route: Route, res: HttpResponse, req: HttpRequest): void => {
    if (draining) {
      writeReply(
        res,
        errorReply(
          new AppError('SHUTTING_DOWN', 'this node is shutting down; retry', { retryAfterSeconds: 1 }),
        ),
        true,
      );
      return;
    }
    inFlight += 1;
    const started = performance.now();
    let aborted = false;
    let done = false;
    res.onAborted(() => {
      aborted = true;
      if (!done) {
        done = true;
        finished();
      }
    });
    const headers: Record<string, string> = {};
    req.forEach((name, value) => {
      headers[name] = value;
    });
    const params: string[] = [];
    for (let i = 0; i < paramCount(route.pattern); i += 1)
      params.push(decodeURIComponent(req.getParameter(i)));
    const method = req.getMethod();
    const url = req.getUrl();
    const query = req.getQuery() ?? '';
    const requestId =
      headers['x-request-id'] || `${process.pid.toString(36)}-${(requestSeq += 1).toString(36)}`;
    const log = logger.child({ reqId: requestId });
    const hasBody = route.method !== 'get' && route.method !== 'del';
    const declared = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);

    const respond = (reply: Reply): void => {
      if (aborted || done) return;
      done = true;
      writeReply(res, reply);
      finished();
      options.onResponse?.({
        method: route.method,
        route: route.pattern,
        status: reply.status,
        seconds: (performance.now() - started) / 1000,
      });
    };
    const run = async (): Promise<Reply> => {
      const body = hasBody ? await readBody(res, declared, maxBodyBytes) : Buffer.alloc(0);
      return route.handler({ method, url, params, query, headers, body, log, aborted: () => aborted });
    };
    run().then(respond, (err: unknown) => {
      const appError = toAppError(err);
      if (appError.status >= 500 && appError.code === 'INTERNAL') log.error({ err }, 'request failed');
      respond(errorReply(appError));
    });
  };

  for (const route of options.routes) {
    app[route.method](route.pattern, (res, req) => serve(route, res, req));
  }
  app.any('/*', (res, req) => {
    const reply = errorReply(
      new AppError('NOT_FOUND', `no route for ${req.getMethod().toUpperCase()} ${req.getUrl()}`),
    );
    writeReply(res, reply);
  });

  return {
    app,
    listen(host, port) {
      return new Promise((resolve, reject) => {
        app.listen(host, port, (socket) => {
          if (!socket) {
            reject(new Error(`could not listen on ${host}:${port} (port in use or not permitted); set PORT`));
            return;
          }
          listenSocket = socket;
          resolve(uws.us_socket_local_port(socket));
        });
      });
    },
    inFlight: () => inFlight,
    async close(graceMs) {
      draining = true;
      if (listenSocket) {
        uws.us_listen_socket_close(listenSocket);
        listenSocket = undefined;
      }
      let drained = inFlight === 0;
      if (!drained) {
        drained = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), graceMs);
          drainedWaiter = () => {
            clearTimeout(timer);
            resolve(true);
          };
        });
      }
      const abandoned = inFlight;
      // Closes keep-alive connections too; not in the v20.30 typings.
      (app as TemplatedApp & { close(): void }).close();
      return { drained, abandoned };
    },
  };
}
