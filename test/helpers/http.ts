import { readFileSync } from 'node:fs';
import type { TSchema } from 'typebox';
import { Compile } from '#typebox';
import type { TokenVerifier } from '../../src/auth/tokens.js';
import type { Test } from 'tap';
import type { ApiRoute } from '../../src/api/contract.js';
import { openApiDocument } from '../../src/api/openapi.js';
import { toAppError } from '../../src/errors.js';
import { errorReply, type Reply } from '../../src/http/reply.js';
import { createHttpServer, type Route } from '../../src/http/server.js';
import { loadNativeUws } from '../../src/http/uws.js';
import { silentLogger } from './isolation.js';

export const uws = loadNativeUws({ fallbackRequested: false });

/**
 * The contract check of the test helpers: every answer a test receives through them (startApp's and the
 * cluster's calls, startServer's routes) is checked against the OpenAPI document for its route and
 * status, and the test fails on a mismatch.
 */
export interface ApiAnswer {
  method: string;
  /** Path and query, as requested. */
  path: string;
  status: number;
  contentType: string | undefined;
  /** The body: parsed JSON, else the text. */
  body: unknown;
}

interface Operation {
  responses: Record<string, { content?: Record<string, { schema: Record<string, unknown> }> } | undefined>;
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Record<string, unknown>> };
}

const validators = new WeakMap<object, ReturnType<typeof Compile>>();
/** A schema of the document compiled once. */
function validatorOf(schema: object) {
  let validator = validators.get(schema);
  if (validator === undefined) validators.set(schema, (validator = Compile(schema as TSchema)));
  return validator;
}

/** The published document (docs/openapi.json), what clients read. */
export const publishedDocument = JSON.parse(
  readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8'),
) as Document;

/** Checks answers against `document`: `mismatch` says why an answer does not match, or undefined. */
export function contractChecker(document: Document = publishedDocument) {
  const operations = Object.entries(document.paths).flatMap(([path, methods]) => {
    const pattern = new RegExp(`^${path.replace(/\{[^}]+\}/g, '[^/]+')}$`);
    return Object.entries(methods).map(([method, operation]) => ({
      method: method.toUpperCase(),
      path,
      pattern,
      operation,
    }));
  });
  const errorSchema = document.components.schemas['Error']!;
  const bodyMismatch = (schema: object, body: unknown): string | undefined => {
    const validator = validatorOf(schema);
    if (validator.Check(body)) return undefined;
    return validator
      .Errors(body)
      .slice(0, 3)
      .map((e) => `${e.instancePath || '/'} ${e.message}`)
      .join('; ');
  };
  return {
    /** Why `answer` does not match its route's documented answer of that status; undefined if it does. */
    mismatch: (answer: ApiAnswer): string | undefined => {
      // As the server sees it: the client resolves `.` and `..` segments (and encodes) through WHATWG URL.
      const { pathname } = new URL(answer.path, 'http://client.invalid');
      const found = operations.find((o) => o.method === answer.method && o.pattern.test(pathname));
      const what = `${answer.method} ${answer.path} → ${answer.status}`;
      if (found === undefined) {
        // No such route: the server's 404.
        if (answer.status !== 404) return `${what}: not a documented route, yet not 404`;
        const why = bodyMismatch(errorSchema, answer.body);
        return why === undefined ? undefined : `${what}: not the error body: ${why}`;
      }
      const response = found.operation.responses[String(answer.status)];
      if (response === undefined) return `${what}: status not documented for ${found.method} ${found.path}`;
      if (response.content === undefined)
        return answer.body === '' || answer.body === undefined
          ? undefined
          : `${what}: documented without a body`;
      const [mediaType, media] = Object.entries(response.content)[0]!;
      if (!(answer.contentType ?? '').startsWith(mediaType))
        return `${what}: Content-Type ${answer.contentType}, documented ${mediaType}`;
      const why = bodyMismatch(media.schema, answer.body);
      return why === undefined
        ? undefined
        : `${what}: body does not match ${found.method} ${found.path} ${answer.status}: ${why}; body ${JSON.stringify(answer.body).slice(0, 300)}`;
    },
  };
}

const published = contractChecker();

/** Fails `t` when `answer` does not match the published document. */
export function checkAnswer(t: Test, answer: ApiAnswer): void {
  const why = published.mismatch(answer);
  if (why !== undefined) t.fail(`contract: ${why}`);
}

const isApiRoute = (route: Route): route is ApiRoute => 'contract' in route;

/**
 * `routes` whose answers are checked against their contracts' document (on the server: what a handler
 * answers or throws; the server's own refusals before a handler are not seen here).
 */
function checkedRoutes(t: Test, routes: Route[]): Route[] {
  const api = routes.filter(isApiRoute);
  if (api.length === 0) return routes;
  const checker = contractChecker(openApiDocument(api.map((route) => route.contract)) as unknown as Document);
  const check = (route: Route, ctx: Parameters<Route['handler']>[0], reply: Reply): Reply => {
    const raw = reply.text?.body ?? (reply.body === undefined ? '' : JSON.stringify(reply.body));
    const text = typeof raw === 'string' ? raw : Buffer.from(raw).toString();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // text
    }
    const why = checker.mismatch({
      method: route.method === 'del' ? 'DELETE' : route.method.toUpperCase(),
      path: ctx.url,
      status: reply.status,
      contentType: reply.text?.contentType ?? 'application/json',
      body,
    });
    if (why !== undefined) t.fail(`contract: ${why}`);
    return reply;
  };
  return routes.map((route) =>
    !isApiRoute(route)
      ? route
      : {
          ...route,
          // Synchronous answers stay synchronous (the server answers those within the request's call).
          handler: (ctx) => {
            const failed = (err: unknown): never => {
              check(route, ctx, errorReply(toAppError(err)));
              throw err;
            };
            let reply: Reply | Promise<Reply>;
            try {
              reply = route.handler(ctx);
            } catch (err) {
              return failed(err);
            }
            return reply instanceof Promise
              ? reply.then((answer) => check(route, ctx, answer), failed)
              : check(route, ctx, reply);
          },
        },
  );
}

/**
 * Starts a uWS server with `routes` on a free port and closes it when the test ends. The answers of routes
 * made from a contract are checked against it.
 */
export async function startServer(
  t: Test,
  routes: Route[],
  options: { maxBodyBytes?: number; tokens?: TokenVerifier; trustedProxies?: readonly string[] } = {},
) {
  const server = createHttpServer({
    uws,
    logger: silentLogger,
    routes: checkedRoutes(t, routes),
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
