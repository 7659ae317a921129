import { Type } from '#typebox';
import type { Static } from 'typebox';
import { ErrorObject, MAX_ID } from './schemas.js';

/**
 * The WebSocket stock protocol (`/ws`, README "WebSocket stock subscribers") as schemas: what a client
 * may send (checked by src/ws/frames.ts with the compiled schema) and what the server sends. They are
 * published in the OpenAPI document's components.
 */

export const MAX_REF_LENGTH = 64;

const Ref = Type.Union([Type.String({ maxLength: MAX_REF_LENGTH }), Type.Number()], {
  description: 'Echoed in the answer to this request',
});

const ProductIds = Type.Array(
  Type.Integer({
    minimum: 1,
    maximum: MAX_ID,
    errorMessage: '{field} must be a positive integer product id',
  }),
  { minItems: 1, errorMessage: '`ids` must be a non-empty array of product ids' },
);

export const SubscribeFrame = Type.Object(
  { op: Type.Literal('subscribe'), ids: ProductIds, ref: Type.Optional(Ref) },
  { additionalProperties: false },
);
export const UnsubscribeFrame = Type.Object(
  { op: Type.Literal('unsubscribe'), ids: ProductIds, ref: Type.Optional(Ref) },
  { additionalProperties: false },
);
export const PingFrame = Type.Object(
  {
    op: Type.Literal('ping'),
    ids: Type.Optional(Type.Unknown({ description: 'Ignored' })),
    ref: Type.Optional(Ref),
  },
  { additionalProperties: false },
);

/** What a client may send. */
export const ClientFrame = Type.Union([SubscribeFrame, UnsubscribeFrame, PingFrame]);
export type ClientFrame = Static<typeof ClientFrame>;

const ProductId = Type.Integer({ minimum: 1 });

export const StockFrame = Type.Object(
  {
    type: Type.Literal('stock'),
    productId: ProductId,
    stock: Type.Integer({ minimum: 0 }),
    version: Type.Integer({ minimum: 0 }),
    at: Type.Optional(
      Type.Number({ description: 'When the owner published the change (epoch ms); absent in snapshots' }),
    ),
  },
  {
    additionalProperties: false,
    description: 'A snapshot or a live change: keep the highest version per product',
  },
);

const Acknowledged = (type: 'subscribed' | 'unsubscribed') =>
  Type.Object(
    { type: Type.Literal(type), ids: Type.Array(ProductId), ref: Type.Optional(Ref) },
    { additionalProperties: false },
  );

export const PongFrame = Type.Object(
  { type: Type.Literal('pong'), ref: Type.Optional(Ref) },
  { additionalProperties: false },
);

export const ErrorFrame = Type.Object(
  {
    type: Type.Literal('error'),
    error: ErrorObject([
      'MALFORMED_FRAME',
      'VALIDATION_FAILED',
      'TOO_MANY_SUBSCRIPTIONS',
      'PRODUCT_NOT_FOUND',
      'DEPENDENCY_UNAVAILABLE',
    ]),
    productIds: Type.Optional(Type.Array(ProductId)),
    ref: Type.Optional(Ref),
  },
  { additionalProperties: false },
);

/** What the server sends. */
export const ServerFrame = Type.Union([
  StockFrame,
  Acknowledged('subscribed'),
  Acknowledged('unsubscribed'),
  PongFrame,
  ErrorFrame,
]);

/** The frames by name, for the document's components. */
export const wsSchemas = {
  WsClientFrame: ClientFrame,
  WsServerFrame: ServerFrame,
};
