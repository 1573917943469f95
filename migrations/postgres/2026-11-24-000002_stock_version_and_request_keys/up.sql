-- The seed's optimistic lock, and client idempotency keys; the same as
-- migrations/sqlite.
--
-- `version` counts the changes of a product's stock on hand (updates and
-- commits): UpdateInventory compares and sets it (`expected_version`), and an
-- update planned against a row that changed meanwhile writes nothing and is
-- planned again. Reservations and releases move only `reserved_quantity` and
-- leave it alone. A product that does not exist has version 0.
ALTER TABLE inventory
    ADD COLUMN version BIGINT NOT NULL DEFAULT 1,
    ADD CONSTRAINT inventory_version_positive CHECK (version >= 1);

-- The first result of every write made with a client's `request_id`: a retry
-- with the same key and the same fields gets it back instead of applying the
-- write again. Written in the same transaction as the write it remembers;
-- purged after `inventory.request_id_ttl`.
CREATE TABLE idempotency_keys (
    request_id VARCHAR(255) COLLATE "C" NOT NULL PRIMARY KEY,
    -- The RPC the key was first used with, such as 'ReleaseInventory'.
    method VARCHAR(255) NOT NULL,
    -- The fields of that first request, compared with those of a retry.
    request JSONB NOT NULL,
    -- Its result.
    response JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_keys_request_id_length CHECK (length(request_id) BETWEEN 1 AND 255)
);

-- The purge's scan, oldest first.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
