-- The seed's optimistic lock, and client idempotency keys; the same as
-- migrations/postgres.
--
-- `version` counts the changes of a product's stock on hand (updates and
-- commits): UpdateInventory compares and sets it (`expected_version`), and an
-- update planned against a row that changed meanwhile writes nothing and is
-- planned again. Reservations and releases move only `reserved_quantity` and
-- leave it alone. A product that does not exist has version 0.
-- (ALTER TABLE ADD COLUMN may carry a CHECK constraint in SQLite.)
ALTER TABLE inventory
    ADD COLUMN version INTEGER NOT NULL DEFAULT 1
    CONSTRAINT inventory_version_positive CHECK (version >= 1);

-- The first result of every write made with a client's `request_id`: a retry
-- with the same key and the same fields gets it back instead of applying the
-- write again. Written in the same transaction as the write it remembers;
-- purged after `inventory.request_id_ttl`.
CREATE TABLE idempotency_keys (
    request_id VARCHAR(255) NOT NULL PRIMARY KEY,
    -- The RPC the key was first used with, such as 'ReleaseInventory'.
    method VARCHAR(255) NOT NULL,
    -- The fields of that first request, compared with those of a retry.
    request TEXT NOT NULL,
    -- Its result.
    response TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT idempotency_keys_request_id_length CHECK (length(request_id) BETWEEN 1 AND 255),
    CONSTRAINT idempotency_keys_request_json CHECK (json_valid(request)),
    CONSTRAINT idempotency_keys_response_json CHECK (json_valid(response))
);

-- The purge's scan, oldest first.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
