-- The recovery sweep (every 5 s on every node) and `saga_oldest_open_age_seconds` read the open sagas of all
-- products, oldest first (`SagaStore.pending` without products). idx_sagas_open (product_id, state) cannot
-- serve that: each read scanned every saga ever made. On the local stack after the test suite and a few
-- benches (316,991 sagas) that was 45-65 ms of the primary's time per read, and an idle node kept the primary
-- at ~30% of a core (bench/RESULTS.md). This index reads the PAYMENT_PENDING range only, already in order.
-- Built online (no lock on the table while it builds).
ALTER TABLE sagas ADD INDEX idx_sagas_state_age (state, created_at), ALGORITHM = INPLACE, LOCK = NONE;
