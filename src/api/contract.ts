import type { Static, TObject, TSchema } from 'typebox';
import { Compile } from '#typebox';
import type { Role } from '../auth/tokens.js';
import { AppError, type ErrorCode } from '../errors.js';
import { parseJsonObject } from '../http/body.js';
import type { Reply } from '../http/reply.js';
import type { Method, RequestContext, Route } from '../http/server.js';

/**
 * One schema per route: a route's contract (what it reads, who may call it, what it answers) states its
 * parameters, query, headers and body as TypeBox schemas. They are compiled once, when the route is
 * made; the handler gets the checked values typed from them (`Static<>`), and the OpenAPI document
 * (src/api/openapi.ts) is written from the same contract.
 */

/** A documented answer of a route. */
export interface ApiResponse {
  description: string;
  /** The body's schema; absent: no body. */
  schema?: TSchema;
  /** Default `application/json`. */
  contentType?: string;
  /** Headers the answer carries. */
  headers?: Readonly<Record<string, { description: string; schema: TSchema }>>;
}

export interface RouteContract<
  P extends TObject = TObject,
  Q extends TObject = TObject,
  H extends TObject = TObject,
  B extends TObject = TObject,
> {
  method: Method;
  /** uWS pattern, `/products/:id`. */
  pattern: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  /** Roles that may call the route (bearer JWT); absent: anonymous. */
  roles?: readonly Role[];
  /** Served only to `internalAllowFrom` (see Route). */
  internal?: boolean;
  /** Path parameters, named as in `pattern`. */
  params?: P;
  query?: Q;
  /** Headers the route reads, by their canonical name (`Idempotency-Key`); others are not looked at. */
  headers?: H;
  /** A JSON object body. */
  body?: B;
  /** The answers of the route itself, by status. */
  responses: Readonly<Record<number, ApiResponse>>;
  /** Error codes the route itself may answer, beyond those of its inputs, its roles and the server. */
  errors?: readonly ErrorCode[];
}

type Of<S> = S extends TObject ? Static<S> : undefined;

/** The checked input of a route. */
export interface Input<C extends RouteContract> {
  params: Of<C['params']>;
  query: Of<C['query']>;
  headers: Of<C['headers']>;
  body: Of<C['body']>;
}

export type ApiHandler<C extends RouteContract> = (
  ctx: RequestContext,
  input: Input<C>,
) => Reply | Promise<Reply>;

/** A route with the contract it was made from. */
export interface ApiRoute extends Route {
  contract: RouteContract;
}

/** Where a checked value comes from: a request's parts, or a WebSocket frame. */
export type Source = 'params' | 'query' | 'headers' | 'body' | 'frame';

interface Annotated {
  errorMessage?: string | Readonly<Record<string, string>>;
  missingCode?: ErrorCode;
  type?: string | string[];
  items?: TSchema;
  minimum?: number;
  maximum?: number;
  maxLength?: number;
  enum?: readonly unknown[];
  properties?: Readonly<Record<string, TSchema>>;
}

/**
 * Text of a path or query parameter as a number: up to 16 decimal digits, without leading zeros unless the
 * value may be 0 (as the hand-written checks took them: ids `[1-9][0-9]*`, versions `[0-9]+`). Anything else
 * stays text, and fails as such.
 */
const DIGITS = /^\d{1,16}$/;

/** A schema's keywords read here (TypeBox's TSchema declares none). */
const meta = (schema: TSchema | undefined): Annotated => schema ?? {};

/** How a path or query parameter's text becomes its value (undefined: absent, an empty list). */
function converter(schema: TSchema | undefined): (raw: string) => unknown {
  const s = meta(schema);
  if (s.type === 'array') {
    const item = converter(s.items);
    return (raw) => (raw === '' ? undefined : [...new Set(raw.split(',').map((part) => item(part.trim())))]);
  }
  if (s.type !== 'integer') return (raw) => raw;
  const leadingZeros = s.minimum === 0;
  return (raw) => (DIGITS.test(raw) && (leadingZeros || raw[0] !== '0' || raw === '0') ? Number(raw) : raw);
}

const propertiesOf = (schema: TObject): Readonly<Record<string, TSchema>> => meta(schema).properties ?? {};

/** A path or query value as it was sent (numbers were canonical decimals). */
const asText = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value));

/** Fills `{field}` and `{value}`. */
const fill = (template: string, field: string, value: unknown): string =>
  template.replace('{field}', field).replace('{value}', () => JSON.stringify(value));

/** The message of `field` failing `keyword` (an error of the schema, or the default wording). */
function messageOf(source: Source, field: string, schema: TSchema, keyword: string, value: unknown): string {
  const s = meta(schema);
  const custom =
    typeof s.errorMessage === 'string'
      ? s.errorMessage
      : (s.errorMessage?.[keyword] ?? s.errorMessage?.['_']);
  if (custom !== undefined) return fill(custom, field, value);
  if (keyword === 'required')
    return source === 'headers' ? `the ${field} header is required` : `${field} is required`;
  if (s.enum !== undefined) return `${field} must be one of ${s.enum.join(', ')}`;
  if (s.type === 'integer') {
    if (keyword === 'minimum' || keyword === 'maximum')
      return `${field} must be from ${s.minimum} to ${s.maximum}, got ${JSON.stringify(value)}`;
    return `${field} must be an integer, got ${JSON.stringify(value)}`;
  }
  if (s.type === 'string') return `${field} must be a non-empty string of at most ${s.maxLength} characters`;
  return `${field} is not valid`;
}

/**
 * Checks an object (a part of a request, or a frame) with its compiled schema; throws the first failure
 * as VALIDATION_FAILED naming the field (or the schema's `missingCode` when a required value is absent).
 */
export function compileObject(source: Source, schema: TObject): (value: Record<string, unknown>) => void {
  const validator = Compile(schema);
  const properties = propertiesOf(schema);
  const names = Object.keys(properties);
  const closed = (schema as unknown as { additionalProperties?: unknown }).additionalProperties === false;
  return (value) => {
    if (validator.Check(value)) return;
    // The failure path only: read the errors, name the first as the hand-written checks did. Unknown
    // names first, then the declared ones in order.
    if (closed) {
      for (const name of Object.keys(value)) {
        if (names.includes(name)) continue;
        const message =
          source === 'body'
            ? `unknown field ${JSON.stringify(name)}; allowed: ${names.join(', ')}`
            : `unknown ${source === 'query' ? 'query parameter' : 'field'} ${JSON.stringify(name)}`;
        throw new AppError('VALIDATION_FAILED', message, { field: name });
      }
    }
    const errors = validator.Errors(value);
    for (const name of names) {
      const property = properties[name]!;
      if (value[name] === undefined) {
        if (!errors.some((e) => e.keyword === 'required')) continue;
        const code = meta(property).missingCode ?? 'VALIDATION_FAILED';
        throw new AppError(code, messageOf(source, name, property, 'required', undefined), { field: name });
      }
      const prefix = `/${name}`;
      const error = errors.find((e) => e.instancePath === prefix || e.instancePath.startsWith(`${prefix}/`));
      if (error === undefined) continue;
      const item = error.instancePath.slice(prefix.length);
      if (item === '') {
        const shown = source === 'body' || source === 'frame' ? value[name] : asText(value[name]);
        throw new AppError('VALIDATION_FAILED', messageOf(source, name, property, error.keyword, shown), {
          field: name,
        });
      }
      // An item of an array: a frame names it (`ids[1]`) by the item's schema; a query names the list.
      const index = Number(item.slice(1).split('/')[0]);
      const failed = (value[name] as unknown[])[index];
      if (source === 'frame') {
        const field = `${name}[${index}]`;
        const items = meta(property).items!;
        throw new AppError('VALIDATION_FAILED', messageOf(source, field, items, error.keyword, failed), {
          field,
        });
      }
      throw new AppError(
        'VALIDATION_FAILED',
        messageOf(source, name, property, error.keyword, String(failed)),
        { field: name },
      );
    }
    const first = errors[0];
    throw new AppError(
      'VALIDATION_FAILED',
      `${source} ${first?.instancePath ?? ''} ${first?.message ?? 'is not valid'}`,
      {
        field: source,
      },
    );
  };
}

const paramNames = (pattern: string): string[] =>
  pattern
    .split('/')
    .filter((part) => part.startsWith(':'))
    .map((part) => part.slice(1));

type Reader = (ctx: RequestContext) => Record<string, unknown> | undefined;
const absent: Reader = () => undefined;

function paramsReader(pattern: string, schema: TObject): Reader {
  const check = compileObject('params', schema);
  const properties = propertiesOf(schema);
  const names = paramNames(pattern);
  const convert = names.map((name) => converter(properties[name]));
  return (ctx) => {
    const values: Record<string, unknown> = {};
    for (let i = 0; i < names.length; i += 1) {
      const value = convert[i]!(ctx.params[i] ?? '');
      if (value !== undefined) values[names[i]!] = value;
    }
    check(values);
    return values;
  };
}

/** The name-value pairs of a query string; without escapes (`%`, `+`) split here, else as a URL would. */
function queryPairs(query: string): Iterable<[string, string]> {
  if (query.includes('%') || query.includes('+')) return new URLSearchParams(query);
  const pairs: [string, string][] = [];
  for (let start = 0; start <= query.length;) {
    let end = query.indexOf('&', start);
    if (end === -1) end = query.length;
    if (end > start) {
      const equals = query.indexOf('=', start);
      pairs.push(
        equals === -1 || equals > end
          ? [query.slice(start, end), '']
          : [query.slice(start, equals), query.slice(equals + 1, end)],
      );
    }
    start = end + 1;
  }
  return pairs;
}

function queryReader(schema: TObject): Reader {
  const check = compileObject('query', schema);
  const convert = new Map(Object.entries(propertiesOf(schema)).map(([name, s]) => [name, converter(s)]));
  const asText = converter(undefined);
  // No query at all: checked once here, not per request.
  const noneIsValid = (() => {
    try {
      check({});
      return true;
    } catch {
      return false;
    }
  })();
  return (ctx) => {
    if (ctx.query === '' && noneIsValid) return {};
    const values: Record<string, unknown> = {};
    for (const [name, raw] of queryPairs(ctx.query)) {
      if (Object.hasOwn(values, name)) continue; // the first of each name
      const value = (convert.get(name) ?? asText)(raw);
      if (value === undefined) continue;
      // `__proto__` is a parameter like any other (refused as unknown), not the object's prototype.
      if (name === '__proto__') Object.defineProperty(values, name, { value, enumerable: true });
      else values[name] = value;
    }
    check(values);
    return values;
  };
}

/** Only the headers the contract names, by their canonical names; an empty one is absent. */
function headersReader(schema: TObject): Reader {
  const check = compileObject('headers', schema);
  const names = Object.keys(propertiesOf(schema)).map((name) => [name, name.toLowerCase()] as const);
  return (ctx) => {
    const values: Record<string, unknown> = {};
    for (const [name, lower] of names) {
      const raw = ctx.headers[lower];
      if (raw !== undefined && raw !== '') values[name] = raw;
    }
    check(values);
    return values;
  };
}

function bodyReader(schema: TObject): Reader {
  const check = compileObject('body', schema);
  return (ctx) => {
    const value = parseJsonObject(ctx.body);
    check(value);
    return value;
  };
}

/** Reads and checks a request's input by the contract: parameters, query, headers, then the body. */
export function compileInput<C extends RouteContract>(contract: C): (ctx: RequestContext) => Input<C> {
  const params = contract.params ? paramsReader(contract.pattern, contract.params) : absent;
  const query = contract.query ? queryReader(contract.query) : absent;
  const headers = contract.headers ? headersReader(contract.headers) : absent;
  const body = contract.body ? bodyReader(contract.body) : absent;
  // Evaluated in this order: the first failure is the one answered.
  return (ctx) =>
    ({
      params: params(ctx),
      query: query(ctx),
      headers: headers(ctx),
      body: body(ctx),
    }) as unknown as Input<C>;
}

/** A route made from its contract: the handler runs with the checked input. */
export function apiRoute<C extends RouteContract>(contract: C, handler: ApiHandler<C>): ApiRoute {
  const read = compileInput(contract);
  return {
    method: contract.method,
    pattern: contract.pattern,
    ...(contract.roles === undefined ? {} : { roles: contract.roles }),
    ...(contract.internal === true ? { internal: true } : {}),
    handler: (ctx) => handler(ctx, read(ctx)),
    contract,
  };
}
