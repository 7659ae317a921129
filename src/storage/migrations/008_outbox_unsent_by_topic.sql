-- The relay reads the oldest unsent rows of its own topics (`OutboxRelay.readUnsent`, every round: every 2 s
-- idle, every ~100 ms under load) and `outbox_oldest_age_seconds` the oldest of them. On idx_outbox_unsent
-- (sent_at, id) both examined every unsent row of any topic to find them: rows of topics no relay publishes
-- (left by tests with topics of their own on a shared database, or by a renamed topic) were read again each
-- round (44,776 rows, ~40 ms of the primary's time per round on this project's stack; bench/RESULTS.md).
-- With the topic in the key, each topic's unsent rows are one ordered range. Built online.
ALTER TABLE outbox ADD INDEX idx_outbox_unsent_topic (sent_at, topic, id), ALGORITHM = INPLACE, LOCK = NONE;
