import type { TSchema } from 'typebox';
import { ERROR_CODES, type ErrorCode } from '../errors.js';
import type { ApiResponse, RouteContract } from './contract.js';
import { routeContracts } from './routes.js';
import { ErrorBody } from './schemas.js';
import { wsSchemas } from './ws.js';

/**
 * The OpenAPI 3.1 document of the HTTP API, written from the routes' contracts (src/api/routes.ts): paths,
 * parameters, request bodies, every answer by status (error answers with the error body and the codes
 * that status may carry), bearer JWT security with the roles each route needs. The WebSocket frames
 * (`/ws`) are in `components.schemas`. Published as docs/openapi.json (`npm run -s openapi`) and served
 * at `GET /openapi.json`.
 */

export type OpenApiDocument = Record<string, unknown> & { paths: Record<string, Record<string, unknown>> };

/** Codes any route may answer: the per-IP limit, the header cap, a fault, a node stopping or cut off. */
const SERVER_CODES: readonly ErrorCode[] = [
  'RATE_LIMITED',
  'REQUEST_HEADERS_TOO_LARGE',
  'INTERNAL',
  'SHUTTING_DOWN',
  'DEPENDENCY_UNAVAILABLE',
];

/** Keys of the schemas that word errors here; they are not JSON Schema and stay out of the document. */
const PRIVATE_KEYS = new Set(['errorMessage', 'missingCode']);

/** A schema as plain JSON, without the private keys. */
function plain(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(plain);
  if (schema === null || typeof schema !== 'object') return schema;
  return Object.fromEntries(
    Object.entries(schema as Record<string, unknown>)
      .filter(([key]) => !PRIVATE_KEYS.has(key))
      .map(([key, value]) => [key, plain(value)]),
  );
}

/** The keywords of a schema read here (TypeBox's TSchema declares none). */
const meta = (
  schema: TSchema | undefined,
): { properties?: Record<string, TSchema>; required?: string[]; missingCode?: ErrorCode; type?: unknown } =>
  schema ?? {};

const propertiesOf = (schema: TSchema | undefined): [string, TSchema][] =>
  Object.entries(meta(schema).properties ?? {});

const requiredOf = (schema: TSchema | undefined): readonly string[] => meta(schema).required ?? [];

/** The error codes a route may answer, in the registry's order. */
export function errorCodesOf(contract: RouteContract): ErrorCode[] {
  const codes = new Set<ErrorCode>([...SERVER_CODES, ...(contract.errors ?? [])]);
  if (contract.roles !== undefined)
    ['UNAUTHENTICATED', 'FORBIDDEN'].forEach((c) => codes.add(c as ErrorCode));
  if (contract.internal === true) codes.add('NOT_FOUND');
  if (contract.params || contract.query || contract.headers || contract.body) codes.add('VALIDATION_FAILED');
  for (const [, schema] of propertiesOf(contract.headers)) {
    const missing = meta(schema).missingCode;
    if (missing !== undefined) codes.add(missing);
  }
  if (contract.body) ['MALFORMED_JSON', 'PAYLOAD_TOO_LARGE'].forEach((c) => codes.add(c as ErrorCode));
  return (Object.keys(ERROR_CODES) as ErrorCode[]).filter((code) => codes.has(code));
}

const retryAfter = {
  'Retry-After': { description: 'Seconds to wait before a retry', schema: { type: 'integer', minimum: 0 } },
};

function responseObject(response: ApiResponse): Record<string, unknown> {
  return {
    description: response.description,
    ...(response.headers === undefined
      ? {}
      : {
          headers: Object.fromEntries(
            Object.entries(response.headers).map(([name, h]) => [
              name,
              { description: h.description, schema: plain(h.schema) },
            ]),
          ),
        }),
    ...(response.schema === undefined
      ? {}
      : { content: { [response.contentType ?? 'application/json']: { schema: plain(response.schema) } } }),
  };
}

/**
 * The answers of a route by status: its own, and one per error status with the error body listing the
 * codes of that status (both, as `anyOf`, where a status is both).
 */
export function responsesOf(contract: RouteContract): Record<string, ApiResponse> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of errorCodesOf(contract)) {
    const status = ERROR_CODES[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses: Record<string, ApiResponse> = {};
  const statuses = [...new Set([...Object.keys(contract.responses).map(Number), ...byStatus.keys()])].sort(
    (a, b) => a - b,
  );
  for (const status of statuses) {
    const own = contract.responses[status];
    const codes = byStatus.get(status);
    if (codes === undefined) {
      responses[status] = own!;
      continue;
    }
    const errorBody = ErrorBody(codes);
    const retryable = codes.some((code) => ERROR_CODES[code].retryable);
    responses[status] = {
      description: [own?.description, codes.join(', ')].filter(Boolean).join('; '),
      schema: own?.schema === undefined ? errorBody : { anyOf: [own.schema, errorBody] },
      headers: { ...(retryable ? retryAfter : {}), ...own?.headers },
    };
  }
  return responses;
}

const parameters = (contract: RouteContract): unknown[] => {
  const of = (location: 'path' | 'query' | 'header', schema: TSchema | undefined) =>
    propertiesOf(schema).map(([name, property]) => {
      const { description, ...rest } = plain(property) as { description?: string };
      const isArray = meta(property).type === 'array';
      return {
        name,
        in: location,
        required: location === 'path' || requiredOf(schema).includes(name),
        ...(description === undefined ? {} : { description }),
        ...(isArray ? { style: 'form', explode: false } : {}),
        schema: rest,
      };
    });
  return [...of('path', contract.params), ...of('query', contract.query), ...of('header', contract.headers)];
};

const SECURITY_DESCRIPTION =
  '`Authorization: Bearer <jwt>`, signed by the identity provider (README "Security"). The token\'s `role` ' +
  'claim is `customer` or `admin`; each operation lists the roles it accepts. No token or a bad one: 401 ' +
  '`UNAUTHENTICATED` with `WWW-Authenticate: Bearer`; another role: 403 `FORBIDDEN`.';

/** The document of `contracts`. */
export function openApiDocument(contracts: readonly RouteContract[]): OpenApiDocument {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const contract of contracts) {
    const path = contract.pattern.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const method = contract.method === 'del' ? 'delete' : contract.method;
    const params = parameters(contract);
    (paths[path] ??= {})[method] = {
      operationId: contract.operationId,
      summary: contract.summary,
      ...(contract.description === undefined ? {} : { description: contract.description }),
      tags: [contract.tag],
      ...(params.length === 0 ? {} : { parameters: params }),
      ...(contract.body === undefined
        ? {}
        : {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: plain(contract.body) } },
            },
          }),
      responses: Object.fromEntries(
        Object.entries(responsesOf(contract)).map(([status, response]) => [status, responseObject(response)]),
      ),
      security: contract.roles === undefined ? [] : [{ bearer: [...contract.roles] }],
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'flash-sale',
      version: '0.1.0',
      description:
        'Flash-sale inventory and purchase service (README "API"). Errors are ' +
        '`{"error": {"code", "message", "field"?, "retryable"}}`; retryable ones carry `Retry-After`. ' +
        'Stock subscriptions are a WebSocket at `/ws` (README "WebSocket stock subscribers"): the frames are ' +
        '`components.schemas.WsClientFrame` and `WsServerFrame`.',
    },
    tags: [
      { name: 'catalog', description: 'Products: reads, creation, restocks, sales' },
      { name: 'purchases', description: 'Purchases and their orders' },
      { name: 'operations', description: 'Liveness, readiness, metrics, this document' },
    ],
    paths,
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: SECURITY_DESCRIPTION },
      },
      schemas: {
        Error: plain(ErrorBody()),
        ...Object.fromEntries(Object.entries(wsSchemas).map(([name, schema]) => [name, plain(schema)])),
      },
    },
  };
}

/**
 * The published document (docs/openapi.json): every route's contract with the default settings, as a node
 * started without overrides serves it.
 */
export function publishedDocument(limits: { maxQuantity: number }): OpenApiDocument {
  return openApiDocument(routeContracts(limits));
}
