DROP TABLE idempotency_keys;
ALTER TABLE inventory DROP COLUMN version;
