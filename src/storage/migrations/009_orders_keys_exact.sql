-- An order's user id and idempotency key are opaque strings and compared byte for byte, as the service
-- compares them: under the server's utf8mb4_unicode_ci, 'Alice' and 'alice' (two users) or the keys 'X' and
-- 'x' (case ignored) were one entry of uq_orders_idempotency, so the second purchase hit a duplicate key that
-- no lookup of its own key found, and was answered 503 (found by test/security/fuzz.test.ts). NO PAD: trailing
-- spaces count too (HTTP strips them from a header, but the column need not know that).
ALTER TABLE orders
  MODIFY user_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
  MODIFY idempotency_key VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL;
