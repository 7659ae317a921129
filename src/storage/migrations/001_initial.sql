-- Products: `stock` is what is still for sale; `version` fences every write (the actor's batch and the
-- baseline both update WHERE id = ? AND version = ?). `owner_epoch` records the ownership lease epoch
-- of the last writer, for audit. No index on `stock` (the specification suggests one): it would be
-- rewritten by every purchase of a hot row and no query filters on stock.
CREATE TABLE products (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  name VARCHAR(200) NOT NULL,
  price_cents BIGINT UNSIGNED NOT NULL,
  stock INT UNSIGNED NOT NULL,
  version BIGINT UNSIGNED NOT NULL DEFAULT 0,
  -- 'actor' (one owner per product, group commit) or 'baseline' (the specification's lock per request).
  purchase_strategy VARCHAR(16) CHARACTER SET ascii NOT NULL DEFAULT 'actor',
  owner_epoch BIGINT UNSIGNED NOT NULL DEFAULT 0,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Orders: ids are UUIDv7 made by the app node (time-ordered, so inserts append to the primary key).
-- (user_id, idempotency_key) is unique: a retried purchase can never create a second order, and the
-- order itself is the first answer replayed to a retry (out-of-stock answers live in the actor's memory).
CREATE TABLE orders (
  id CHAR(36) CHARACTER SET ascii NOT NULL,
  product_id BIGINT UNSIGNED NOT NULL,
  user_id VARCHAR(64) NOT NULL,
  idempotency_key VARCHAR(128) NOT NULL,
  quantity INT UNSIGNED NOT NULL,
  unit_price_cents BIGINT UNSIGNED NOT NULL,
  status VARCHAR(16) CHARACTER SET ascii NOT NULL,
  strategy VARCHAR(16) CHARACTER SET ascii NOT NULL,
  owner_epoch BIGINT UNSIGNED NOT NULL DEFAULT 0,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  UNIQUE KEY uq_orders_idempotency (user_id, idempotency_key),
  KEY idx_orders_product (product_id, status),
  KEY idx_orders_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Saga state, one row per order, updated with `WHERE order_id = ? AND version = ?`.
CREATE TABLE sagas (
  order_id CHAR(36) CHARACTER SET ascii NOT NULL,
  product_id BIGINT UNSIGNED NOT NULL,
  state VARCHAR(32) CHARACTER SET ascii NOT NULL,
  version INT UNSIGNED NOT NULL DEFAULT 0,
  payment_key VARCHAR(64) CHARACTER SET ascii NOT NULL,
  attempts INT UNSIGNED NOT NULL DEFAULT 0,
  last_error VARCHAR(255) NULL,
  deadline_at DATETIME(3) NOT NULL,
  owner_epoch BIGINT UNSIGNED NOT NULL DEFAULT 0,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (order_id),
  KEY idx_sagas_open (product_id, state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Every step a saga took, with its outcome and time (GET /orders/:id shows them).
CREATE TABLE saga_steps (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  order_id CHAR(36) CHARACTER SET ascii NOT NULL,
  step VARCHAR(32) CHARACTER SET ascii NOT NULL,
  outcome VARCHAR(16) CHARACTER SET ascii NOT NULL,
  detail VARCHAR(255) NULL,
  owner_epoch BIGINT UNSIGNED NOT NULL DEFAULT 0,
  at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  KEY idx_saga_steps_order (order_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Transactional outbox: written in the same transaction as the state change, published to Kafka in
-- id order per event_key (the product id) by the relay, then stamped sent_at.
CREATE TABLE outbox (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  event_id CHAR(36) CHARACTER SET ascii NOT NULL,
  topic VARCHAR(128) NOT NULL,
  event_key VARCHAR(64) NOT NULL,
  event_type VARCHAR(64) NOT NULL,
  payload BLOB NOT NULL,
  owner_epoch BIGINT UNSIGNED NOT NULL DEFAULT 0,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  sent_at DATETIME(3) NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uq_outbox_event (event_id),
  KEY idx_outbox_unsent (sent_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
