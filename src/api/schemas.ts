import { Type } from '#typebox';
import type { TSchema } from 'typebox';
import { API_ERROR_CODES, type ErrorCode } from '../errors.js';

/**
 * The JSON Schemas of what crosses the HTTP API, with TypeBox: request fields (validated by compiled
 * checks, src/api/contract.ts) and answers (documented in the OpenAPI document, checked by the tests'
 * helpers). `errorMessage` (the ajv-errors convention: one message, or one per keyword with `_` for the
 * rest) words a failure of that value; `{field}` and `{value}` are filled in. It is left out of the
 * published document.
 */

/** Largest id and version accepted (MySQL BIGINT ids stay far below it). */
export const MAX_ID = Number.MAX_SAFE_INTEGER;
/** Characters of a product name (the column is VARCHAR(200)). */
export const MAX_NAME_LENGTH = 200;
export const MAX_STOCK = 1_000_000_000;
export const MAX_PRICE_CENTS = 100_000_000_00;
/** Most ids one `GET /products?ids=` may ask for. */
export const MAX_IDS_PER_READ = 100;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 128;

/**
 * A display name: no control characters or bidirectional overrides (they can hide or reorder what an
 * operator reads), no leading or trailing white space (the characters `String.prototype.trim` removes,
 * which are `\s`), so not blank either.
 */
export const SAFE_NAME_PATTERN = '^(?!\\s)(?!.*\\s$)[^\\p{Cc}\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$';
/** Header token characters (idempotency keys). */
const TOKEN_PATTERN = '^[A-Za-z0-9._:@-]+$';
const UUID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

/** A positive integer id in a path or query (sent as text: only canonical decimals are taken as numbers). */
export const IdParam = (description: string) =>
  Type.Integer({
    minimum: 1,
    maximum: MAX_ID,
    description,
    errorMessage: '{field} must be a positive integer, got {value}',
  });

/** An integer field of a JSON body, from `min` to `max`. */
export const IntegerField = (min: number, max: number, description: string) =>
  Type.Integer({ minimum: min, maximum: max, description });

export const ProductName = Type.String({
  minLength: 1,
  maxLength: MAX_NAME_LENGTH,
  pattern: SAFE_NAME_PATTERN,
  description: 'Display name: no control characters or bidi overrides, no leading or trailing white space',
  errorMessage: {
    pattern: '{field} must not contain control characters or bidi overrides, nor start or end with spaces',
    _: `{field} must be a non-empty string of at most ${MAX_NAME_LENGTH} characters`,
  },
});

export const Strategy = Type.Enum(['actor', 'baseline'], {
  description: 'How purchases of the product are carried out (README "Purchase strategies")',
});

export const OrderIdParam = Type.String({
  pattern: UUID_PATTERN,
  description: 'The order id (a lower-case UUID)',
  errorMessage: 'order id must be a UUID, got {value}',
});

export const IdempotencyKey = Type.String({
  minLength: 1,
  maxLength: MAX_IDEMPOTENCY_KEY_LENGTH,
  pattern: TOKEN_PATTERN,
  description: 'Unique per user: a retry with the same key gets the same order, never a second one',
  missingCode: 'IDEMPOTENCY_KEY_REQUIRED',
  errorMessage: {
    required: 'the {field} header is required',
    _: `the {field} header must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters of A-Z a-z 0-9 . _ : @ -`,
  },
});

const Timestamp = Type.String({ description: 'ISO-8601 time (UTC)' });
const Count = Type.Integer({ minimum: 0 });

/** The error object of every error answer (README "API"). */
export const ErrorObject = (codes: readonly ErrorCode[] = API_ERROR_CODES) =>
  Type.Object(
    {
      code: Type.Enum([...codes]),
      message: Type.String({ description: 'What went wrong, naming the field' }),
      field: Type.Optional(
        Type.String({ description: 'The offending body field, path or query parameter, or header' }),
      ),
      retryable: Type.Boolean({ description: 'Whether the same request may succeed later' }),
    },
    { additionalProperties: false },
  );

/** `{error: {code, message, field?, retryable}}`. */
export const ErrorBody = (codes?: readonly ErrorCode[]) =>
  Type.Object({ error: ErrorObject(codes) }, { additionalProperties: false });

export const ProductView = Type.Object(
  {
    id: Type.Integer({ minimum: 1 }),
    name: Type.String(),
    priceCents: Count,
    stock: Count,
    version: Count,
    strategy: Strategy,
    createdAt: Timestamp,
  },
  { additionalProperties: false },
);

export const ProductList = Type.Object(
  {
    products: Type.Array(ProductView),
    missing: Type.Array(Type.Integer({ minimum: 1 }), { description: 'Asked for, but no such product' }),
  },
  { additionalProperties: false },
);

export const Restocked = Type.Object(
  { id: Type.Integer({ minimum: 1 }), stock: Count, version: Count },
  { additionalProperties: false },
);

const OrderStatus = Type.Enum(['PENDING', 'CONFIRMED', 'CANCELLED']);

const orderFields = {
  orderId: Type.String({ format: 'uuid' }),
  status: OrderStatus,
  productId: Type.Integer({ minimum: 1 }),
  quantity: Type.Integer({ minimum: 1 }),
  unitPriceCents: Count,
  totalCents: Count,
  createdAt: Timestamp,
};

/** A purchase's order (201 confirmed, 202 pending). */
export const PurchaseOrder = Type.Object(
  {
    ...orderFields,
    stockVersion: Type.Optional(
      Type.Integer({
        minimum: 0,
        description: 'The product version right after the reservation: read it with ?minVersion=',
      }),
    ),
  },
  { additionalProperties: false },
);

/** 402: the payment failed, the order was cancelled and the stock released. */
export const PaymentDeclined = Type.Object(
  {
    error: ErrorObject(['PAYMENT_DECLINED']),
    ...orderFields,
    reason: Type.Union([Type.String(), Type.Null()]),
  },
  { additionalProperties: false },
);

/** 409: not enough stock. */
export const OutOfStock = Type.Object(
  { error: ErrorObject(['OUT_OF_STOCK']), available: Count },
  { additionalProperties: false },
);

export const OrderDetails = Type.Object(
  {
    orderId: Type.String({ format: 'uuid' }),
    productId: Type.Integer({ minimum: 1 }),
    userId: Type.String(),
    quantity: Type.Integer({ minimum: 1 }),
    unitPriceCents: Count,
    status: OrderStatus,
    strategy: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
    saga: Type.Union([
      Type.Object(
        {
          state: Type.String(),
          version: Count,
          paymentKey: Type.String(),
          deadlineAt: Timestamp,
          reason: Type.Union([Type.String(), Type.Null()]),
          steps: Type.Array(
            Type.Object(
              {
                step: Type.String(),
                outcome: Type.String(),
                detail: Type.Union([Type.String(), Type.Null()]),
                at: Timestamp,
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false },
      ),
      Type.Null(),
    ]),
  },
  { additionalProperties: false },
);

export const ProductSales = Type.Object(
  {
    productId: Type.Integer({ minimum: 1 }),
    confirmedOrders: Count,
    soldQuantity: Count,
    revenueCents: Count,
    cancelledOrders: Count,
    cancelledQuantity: Count,
    updatedAt: Type.Union([Timestamp, Type.Null()]),
  },
  { additionalProperties: false },
);

export const Health = Type.Object(
  {
    status: Type.Literal('ok'),
    node: Type.String(),
    uptimeSeconds: Count,
  },
  { additionalProperties: true, description: 'More facts of the node: its shards (`cluster`), `ws`' },
);

const DependencyState = Type.Object(
  {
    status: Type.Enum(['up', 'down']),
    latencyMs: Count,
    error: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
const Dependencies = Type.Record(Type.String(), DependencyState);

export const Ready = Type.Object(
  { status: Type.Literal('ready'), node: Type.String(), dependencies: Dependencies },
  { additionalProperties: false },
);

export const NotReady = Type.Object(
  {
    error: ErrorObject(['DEPENDENCY_UNAVAILABLE']),
    status: Type.Literal('not_ready'),
    node: Type.String(),
    down: Type.Array(Type.String()),
    dependencies: Dependencies,
  },
  { additionalProperties: false },
);

/** Marks a schema as the body of answers that are not JSON (text). */
export const Text = (description: string): TSchema => Type.String({ description });
