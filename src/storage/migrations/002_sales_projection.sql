-- The sales projection (consumer group flashsale-sales-projection), fed by the orders topic.
-- Event ids it has applied: a redelivered event finds its id here and changes nothing. Written in the
-- same transaction as the effects below. Event ids are UUIDv7, so a future cleanup can delete by id range.
CREATE TABLE projection_events (
  event_id CHAR(36) CHARACTER SET ascii NOT NULL,
  event_type VARCHAR(64) CHARACTER SET ascii NOT NULL,
  product_id BIGINT UNSIGNED NOT NULL,
  order_id CHAR(36) CHARACTER SET ascii NULL,
  occurred_at DATETIME(3) NOT NULL,
  applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (event_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Per-product totals, counted once per order when its status first becomes CONFIRMED or CANCELLED.
CREATE TABLE product_sales (
  product_id BIGINT UNSIGNED NOT NULL,
  confirmed_orders BIGINT UNSIGNED NOT NULL DEFAULT 0,
  confirmed_quantity BIGINT UNSIGNED NOT NULL DEFAULT 0,
  revenue_cents BIGINT UNSIGNED NOT NULL DEFAULT 0,
  cancelled_orders BIGINT UNSIGNED NOT NULL DEFAULT 0,
  cancelled_quantity BIGINT UNSIGNED NOT NULL DEFAULT 0,
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (product_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- One row per order. Status only moves forward (PENDING -> CONFIRMED | CANCELLED), whatever order the
-- events arrive in; user_id is NULL until order.created arrives (it may come after order.confirmed).
CREATE TABLE order_history (
  order_id CHAR(36) CHARACTER SET ascii NOT NULL,
  product_id BIGINT UNSIGNED NOT NULL,
  user_id VARCHAR(64) NULL,
  status VARCHAR(16) CHARACTER SET ascii NOT NULL,
  quantity INT UNSIGNED NOT NULL,
  unit_price_cents BIGINT UNSIGNED NOT NULL,
  created_at DATETIME(3) NOT NULL,
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (order_id),
  KEY idx_order_history_product (product_id, status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
