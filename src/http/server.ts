import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { addressSet, clientIp } from '../auth/client-ip.js';
import type { RateLimits } from '../auth/rate-limits.js';
import { requireRole, type Identity, type Role, type TokenVerifier } from '../auth/tokens.js';
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
  /** The verified caller of a route with `roles`; undefined on anonymous routes. */
  readonly identity: Identity | undefined;
  /** The client's address (from `X-Forwarded-For` only behind a trusted proxy). */
  readonly clientIp: string;
  readonly log: Logger;
  /** True once the client went away; a handler may stop early. */
  readonly aborted: () => boolean;
}

export type Handler = (ctx: RequestContext) => Reply | Promise<Reply>;

export interface Route {
  method: Method;
  pattern: string;
  handler: Handler;
  /** Roles that may call the route (a verified bearer token is required); absent: anonymous. */
  roles?: readonly Role[];
  /**
   * Served only to a socket address in `internalAllowFrom` that did not come through a proxy
   * (`/metrics` for the scraper); anyone else gets 404 as for an unknown route.
   */
  internal?: boolean;
}

/** Who may call what: the server applies these to every route before its handler runs. */
export interface AccessControl {
  /** Verifies bearer tokens; without it, routes with `roles` refuse every request. */
  tokens?: TokenVerifier;
  /** The per-IP limit of every request. */
  limits?: Pick<RateLimits, 'admitIp'>;
  /** Proxies (addresses, CIDR ranges) whose `X-Forwarded-For` is believed. */
  trustedProxies?: readonly string[];
  /** Socket addresses and CIDR ranges that may call `internal` routes. Default: none. */
  internalAllowFrom?: readonly string[];
}

export interface HttpServerOptions {
  uws: Uws;
  logger: Logger;
  routes: readonly Route[];
  /** Largest request body accepted, bytes. Default 16 KiB. */
  maxBodyBytes?: number;
  /** Largest sum of header names and values accepted, bytes. Default 8 KiB. */
  maxHeaderBytes?: number;
  access?: AccessControl;
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

const EMPTY_BODY = Buffer.alloc(0);

const notFound = (method: string, url: string): AppError =>
  new AppError('NOT_FOUND', `no route for ${method.toUpperCase()} ${url}`);

const paramCount = (pattern: string): number =>
  pattern.split('/').filter((part) => part.startsWith(':')).length;

export function createHttpServer(options: HttpServerOptions): HttpServer {
  const { uws, logger } = options;
  const maxBodyBytes = options.maxBodyBytes ?? 16 * 1024; // 16 KiB
  const maxHeaderBytes = options.maxHeaderBytes ?? 8 * 1024; // 8 KiB
  const access = options.access ?? {};
  const trustedProxies = addressSet(access.trustedProxies ?? []);
  const internalAllowFrom = addressSet(access.internalAllowFrom ?? []);
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
    let headerBytes = 0;
    req.forEach((name, value) => {
      headers[name] = value;
      headerBytes += name.length + value.length;
    });
    const socketIp = Buffer.from(res.getRemoteAddressAsText()).toString();
    const params: string[] = [];
    for (let i = 0; i < paramCount(route.pattern); i += 1)
      params.push(decodeURIComponent(req.getParameter(i)));
    const method = req.getMethod();
    const url = req.getUrl();
    const query = req.getQuery() ?? '';
    // Most answers log nothing: the request's child logger is made on first use only.
    let log: Logger | undefined;
    const requestLog = (): Logger =>
      (log ??= logger.child({
        reqId: headers['x-request-id'] || `${process.pid.toString(36)}-${(requestSeq += 1).toString(36)}`,
      }));
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
    const ip = clientIp(socketIp, headers['x-forwarded-for'], trustedProxies);
    // uWS hands the body over only to an onData attached now, before any await.
    const reading = hasBody ? readBody(res, declared, maxBodyBytes) : undefined;
    reading?.catch(() => undefined); // a refusal below answers first; this rejection is then moot
    const context = (identity: Identity | undefined, body: Buffer): RequestContext => ({
      method,
      url,
      params,
      query,
      headers,
      body,
      get log() {
        return requestLog();
      },
      aborted: () => aborted,
      identity,
      clientIp: ip,
    });
    const authorizedRun = async (): Promise<Reply> => {
      let identity: Identity | undefined;
      if (route.roles !== undefined) {
        if (access.tokens === undefined)
          throw new AppError('UNAUTHENTICATED', 'this node verifies no tokens', { field: 'Authorization' });
        identity = await access.tokens.authenticate(headers['authorization']);
        requireRole(identity, route.roles);
      }
      const body = reading === undefined ? EMPTY_BODY : await reading;
      return route.handler(context(identity, body));
    };
    /** Anonymous routes without a body run synchronously: a reply from memory goes out in this call. */
    const run = (): Reply | Promise<Reply> => {
      if (headerBytes > maxHeaderBytes)
        throw new AppError(
          'REQUEST_HEADERS_TOO_LARGE',
          `request headers total ${headerBytes} bytes; at most ${maxHeaderBytes} are accepted`,
        );
      if (route.internal === true && (!internalAllowFrom.has(ip) || headers['x-forwarded-for'] !== undefined))
        throw notFound(method, url);
      access.limits?.admitIp(ip);
      if (route.roles === undefined && reading === undefined)
        return route.handler(context(undefined, EMPTY_BODY));
      return authorizedRun();
    };
    const fail = (err: unknown): void => {
      const appError = toAppError(err);
      if (appError.status >= 500 && appError.code === 'INTERNAL')
        requestLog().error({ err }, 'request failed');
      respond(errorReply(appError));
    };
    let result: Reply | Promise<Reply>;
    try {
      result = run();
    } catch (err) {
      fail(err);
      return;
    }
    if (result instanceof Promise) result.then(respond, fail);
    else respond(result);
  };

  for (const route of options.routes) {
    app[route.method](route.pattern, (res, req) => serve(route, res, req));
  }
  app.any('/*', (res, req) => writeReply(res, errorReply(notFound(req.getMethod(), req.getUrl()))));

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
