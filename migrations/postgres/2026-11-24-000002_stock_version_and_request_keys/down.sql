DROP TABLE idempotency_keys;
ALTER TABLE inventory DROP CONSTRAINT inventory_version_positive, DROP COLUMN version;
