-- A packed outbox row holds a whole batch's events of one topic: a hot product's batch of a few hundred
-- orders overflowed BLOB's 64 KiB ("Data too long for column 'payload'"). MEDIUMBLOB takes 16 MiB; the
-- writer also splits a row every 500 events (src/events/envelope.ts), so rows stay far below that.
ALTER TABLE outbox MODIFY payload MEDIUMBLOB NOT NULL;
