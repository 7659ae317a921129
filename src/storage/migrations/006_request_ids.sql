-- Request ids (README "Logs"): the HTTP request that made an order travels with its events and its saga.
-- outbox.request_ids: the ids of the row's events, in their order, comma-separated ('' for an event without
-- one: stock.changed); NULL when none has one. The relay sends each as the Kafka header x-request-id.
-- A row holds at most 500 events of ids of at most 64 characters: MEDIUMTEXT.
ALTER TABLE outbox ADD COLUMN request_ids MEDIUMTEXT CHARACTER SET ascii NULL AFTER event_count;
-- sagas.request_id: a saga resumed after a crash or a takeover logs with its purchase's request id too.
ALTER TABLE sagas ADD COLUMN request_id VARCHAR(64) CHARACTER SET ascii NULL AFTER payment_key;
