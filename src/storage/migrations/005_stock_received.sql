-- The ledger the consistency monitor checks (src/observability/): units ever put on sale per product, the
-- initial stock plus every restock, so that stock_received - confirmed - reserved (PENDING) = stock. A new
-- row starts at its stock (DEFAULT (stock)); every batch that restocks adds what it restocked
-- (src/storage/batch-writer.ts). Existing rows are back-filled so the ledger holds for them as they stand.
ALTER TABLE products ADD COLUMN stock_received BIGINT UNSIGNED NOT NULL DEFAULT (stock) AFTER stock;
UPDATE products p
   SET p.stock_received = p.stock + (SELECT COALESCE(SUM(o.quantity), 0) FROM orders o
                                      WHERE o.product_id = p.id AND o.status <> 'CANCELLED');
