import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { addressSet, clientIp } from '../auth/client-ip.js';
import type { RateLimits } from '../auth/rate-limits.js';
import { requireRole, type Identity, type Role, type TokenVerifier } from '../auth/tokens.js';
import { AppError, toAppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { readBody } from './body.js';
import { errorReply, writeReply, type Reply } from './reply.js';
import { requestIdMaker, saneRequestId } from './request-id.js';
import { remoteAddress, type Uws } from './uws.js';

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
  /**
   * The client's `X-Request-Id` if sane (1–64 characters of `A-Z a-z 0-9 . _ : @ / + = -`), else one made
   * here; echoed in the answer's `X-Request-Id`, and every log line of the request carries it as `reqId`.
   */
  readonly requestId: string;
  /** This request's logger (`reqId` on every line); made on first use. */
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
  /** The uWS app to serve on, made by `uws` (WebSockets and the peer channel share it). Default: new. */
  app?: TemplatedApp;
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

/** A request copied out of uWS. Its child logger is made on first use: most answers log nothing. */
class Request implements RequestContext {
  identity: Identity | undefined = undefined;
  body: Buffer = EMPTY_BODY;
  wasAborted = false;
  private child: Logger | undefined;

  constructor(
    readonly method: string,
    readonly url: string,
    readonly params: readonly string[],
    readonly query: string,
    readonly headers: Readonly<Record<string, string>>,
    readonly clientIp: string,
    readonly requestId: string,
    private readonly logger: Logger,
  ) {}

  get log(): Logger {
    return (this.child ??= this.logger.child({ reqId: this.requestId }));
  }

  aborted(): boolean {
    return this.wasAborted;
  }
}

/** Header collection without a closure per request (uWS calls `forEach` synchronously). */
let collected: Record<string, string> = {};
let collectedBytes = 0;
const collectHeader = (name: string, value: string): void => {
  collected[name] = value;
  collectedBytes += name.length + value.length;
};

export function createHttpServer(options: HttpServerOptions): HttpServer {
  const { uws, logger } = options;
  const maxBodyBytes = options.maxBodyBytes ?? 16 * 1024; // 16 KiB
  const maxHeaderBytes = options.maxHeaderBytes ?? 8 * 1024; // 8 KiB
  const access = options.access ?? {};
  const trustedProxies = addressSet(access.trustedProxies ?? []);
  const internalAllowFrom = addressSet(access.internalAllowFrom ?? []);
  const app = options.app ?? uws.App();
  let listenSocket: us_listen_socket | undefined;
  let draining = false;
  let inFlight = 0;
  let drainedWaiter: (() => void) | undefined;
  const nextRequestId = requestIdMaker();
  /** The client's sane `X-Request-Id`, or a new one. */
  const requestIdOf = (header: string | undefined): string => saneRequestId(header) ?? nextRequestId();
  // Read once: the level is set at start. At debug, every answer is logged with its id, status and time.
  const traceAnswers = logger.isLevelEnabled('debug');

  const finished = (): void => {
    inFlight -= 1;
    if (inFlight === 0 && drainedWaiter) drainedWaiter();
  };

  const answered = (
    route: Route,
    res: HttpResponse,
    request: Request,
    reply: Reply,
    started: number,
    corked = false,
  ): void => {
    writeReply(res, reply, false, request.requestId, corked);
    const seconds = (performance.now() - started) / 1000;
    options.onResponse?.({ method: route.method, route: route.pattern, status: reply.status, seconds });
    if (traceAnswers)
      logger.debug(
        { reqId: request.requestId, method: request.method, url: request.url, status: reply.status, seconds },
        'answered',
      );
  };

  const failure = (request: Request, err: unknown): Reply => {
    const appError = toAppError(err);
    if (appError.status >= 500 && appError.code === 'INTERNAL') request.log.error({ err }, 'request failed');
    return errorReply(appError);
  };

  /** Checks every request passes before its handler: header size, internal routes, the per-IP limit. */
  const admit = (route: Route, request: Request, headerBytes: number): void => {
    if (headerBytes > maxHeaderBytes)
      throw new AppError(
        'REQUEST_HEADERS_TOO_LARGE',
        `request headers total ${headerBytes} bytes; at most ${maxHeaderBytes} are accepted`,
      );
    if (
      route.internal === true &&
      (!internalAllowFrom.has(request.clientIp) || request.headers['x-forwarded-for'] !== undefined)
    )
      throw notFound(request.method, request.url);
    access.limits?.admitIp(request.clientIp);
  };

  const authorizedRun = async (
    route: Route,
    request: Request,
    reading: Promise<Buffer> | undefined,
  ): Promise<Reply> => {
    if (route.roles !== undefined) {
      if (access.tokens === undefined)
        throw new AppError('UNAUTHENTICATED', 'this node verifies no tokens', { field: 'Authorization' });
      request.identity = await access.tokens.authenticate(request.headers['authorization']);
      requireRole(request.identity, route.roles);
    }
    if (reading !== undefined) request.body = await reading;
    return route.handler(request);
  };

  const serve = (route: Route, params: number, res: HttpResponse, req: HttpRequest): void => {
    if (draining) {
      // Through the balancer (a trusted proxy that set X-Forwarded-For): close the connection unanswered.
      // nginx counts that as the node failing and sends the request to the other node, a keyed purchase
      // included (docker/nginx/nginx.conf); a 503 would reach the client, since nginx passes the nodes'
      // 503s through (a node's 503 for a dependency outage must not take it out of the balancer).
      // Nothing of the request ran here. A direct caller gets the 503 and its Retry-After.
      if (req.getHeader('x-forwarded-for') !== '' && trustedProxies.has(remoteAddress(res))) {
        res.close();
        return;
      }
      writeReply(
        res,
        errorReply(
          new AppError('SHUTTING_DOWN', 'this node is shutting down; retry', { retryAfterSeconds: 1 }),
        ),
        true,
        requestIdOf(req.getHeader('x-request-id')),
        true,
      );
      return;
    }
    const started = performance.now();
    const headers: Record<string, string> = (collected = {});
    collectedBytes = 0;
    req.forEach(collectHeader);
    const headerBytes = collectedBytes;
    const values: string[] = [];
    for (let i = 0; i < params; i += 1) {
      const raw = req.getParameter(i);
      values.push(raw.includes('%') ? decodeURIComponent(raw) : raw);
    }
    const socketIp = remoteAddress(res);
    const request = new Request(
      req.getMethod(),
      req.getUrl(),
      values,
      req.getQuery() ?? '',
      headers,
      clientIp(socketIp, headers['x-forwarded-for'], trustedProxies),
      requestIdOf(headers['x-request-id']),
      logger,
    );
    const hasBody = route.method !== 'get' && route.method !== 'del';
    // Answered later: uWS needs onAborted attached before this call returns (and before reading a body).
    let done = false;
    const track = (): void => {
      inFlight += 1;
      res.onAborted(() => {
        request.wasAborted = true;
        if (!done) {
          done = true;
          finished();
        }
      });
    };
    // Anonymous routes without a body run at once: a reply from memory goes out within this call.
    let pending: Promise<Reply>;
    if (route.roles === undefined && !hasBody) {
      let reply: Reply | Promise<Reply>;
      try {
        admit(route, request, headerBytes);
        reply = route.handler(request);
      } catch (err) {
        reply = failure(request, err);
      }
      if (!(reply instanceof Promise)) {
        answered(route, res, request, reply, started, true);
        return;
      }
      track();
      pending = reply;
    } else {
      track();
      const declared =
        headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
      // uWS hands the body over only to an onData attached now, before any await.
      const reading = hasBody ? readBody(res, declared, maxBodyBytes) : undefined;
      reading?.catch(() => undefined); // a refusal below answers first; this rejection is then moot
      try {
        admit(route, request, headerBytes);
        pending = authorizedRun(route, request, reading);
      } catch (err) {
        pending = Promise.resolve(failure(request, err));
      }
    }
    void pending
      .catch((err: unknown) => failure(request, err))
      .then((reply) => {
        if (done) return;
        done = true;
        answered(route, res, request, reply, started);
        finished();
      });
  };

  for (const route of options.routes) {
    const params = paramCount(route.pattern);
    app[route.method](route.pattern, (res, req) => serve(route, params, res, req));
  }
  app.any('/*', (res, req) =>
    writeReply(
      res,
      errorReply(notFound(req.getMethod(), req.getUrl())),
      false,
      requestIdOf(req.getHeader('x-request-id')),
      true,
    ),
  );

  return {
    app,
    listen(host, port) {
      return new Promise((resolve, reject) => {
        app.listen(host, port, (socket) => {
          if (!socket) {
            reject(
              new AppError(
                'STARTUP_FAILED',
                `could not listen on ${host}:${port} (port in use or not permitted); set PORT`,
              ),
            );
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
