-- A product's batch writes its events packed: one outbox row per (topic, product) holding a msgpack array
-- of the encoded events, in order, instead of one row per event. The per-row costs (three index entries,
-- the relay's sent mark, the retention delete, their binlog and replication) are then paid per batch.
-- event_count = 1: `payload` is one encoded event (as before); > 1: a msgpack array of that many.
-- `event_id` is the row's first event's id.
ALTER TABLE outbox ADD COLUMN event_count INT UNSIGNED NOT NULL DEFAULT 1 AFTER payload;
