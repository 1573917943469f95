-- Committing reservations (CommitReservation): a `committed` reservation
-- status, a `committed_quantity` column, and a `commit` history operation.
--
-- SQLite cannot change a CHECK constraint in place, so both tables are
-- rebuilt: create the new table, copy, drop the old one, rename, recreate the
-- indexes. diesel runs this file in a transaction, where PRAGMA foreign_keys
-- cannot be switched off; none is needed: no table references these two
-- (dropping a child table is allowed with foreign keys on), and the new
-- reservations table references `inventory` as the old one did, so every
-- copied row satisfies its foreign key as it is inserted.

CREATE TABLE inventory_reservations_new (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    product_id VARCHAR(255) NOT NULL REFERENCES inventory (product_id),
    order_id VARCHAR(255) NOT NULL,
    quantity INTEGER NOT NULL,
    -- How much of `quantity` callers released.
    released_quantity INTEGER NOT NULL DEFAULT 0,
    -- How much of `quantity` was committed (left the stock on hand). While
    -- active the reservation holds quantity - released - committed.
    committed_quantity INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active',
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT reservations_quantity_positive CHECK (quantity > 0),
    CONSTRAINT reservations_released_within_quantity
        CHECK (released_quantity >= 0 AND released_quantity <= quantity),
    CONSTRAINT reservations_committed_within_quantity
        CHECK (committed_quantity >= 0 AND released_quantity + committed_quantity <= quantity),
    CONSTRAINT reservations_status_known
        CHECK (status IN ('active', 'released', 'expired', 'committed'))
);

INSERT INTO inventory_reservations_new
    (id, product_id, order_id, quantity, released_quantity, committed_quantity,
     status, expires_at, created_at, updated_at)
SELECT id, product_id, order_id, quantity, released_quantity, 0,
       status, expires_at, created_at, updated_at
FROM inventory_reservations;

DROP TABLE inventory_reservations;
ALTER TABLE inventory_reservations_new RENAME TO inventory_reservations;

-- One reservation per order and product: what makes a retried reserve idempotent
-- (and lists an order's reservations).
CREATE UNIQUE INDEX inventory_reservations_order_product
    ON inventory_reservations (order_id, product_id);
-- The expiry sweeper's scan: active reservations by expiry time.
CREATE INDEX inventory_reservations_active_expiry
    ON inventory_reservations (expires_at) WHERE status = 'active';
-- The foreign key's lookups from inventory.
CREATE INDEX inventory_reservations_product ON inventory_reservations (product_id);

CREATE TABLE inventory_history_new (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    product_id VARCHAR(255) NOT NULL,
    operation_type TEXT NOT NULL,
    quantity_change INTEGER NOT NULL,
    order_id VARCHAR(255),
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    metadata TEXT,
    CONSTRAINT history_operation_known
        CHECK (operation_type IN ('check', 'reserve', 'release', 'update', 'commit')),
    CONSTRAINT history_metadata_json CHECK (metadata IS NULL OR json_valid(metadata))
);

INSERT INTO inventory_history_new
    (id, product_id, operation_type, quantity_change, order_id, created_at, metadata)
SELECT id, product_id, operation_type, quantity_change, order_id, created_at, metadata
FROM inventory_history;

DROP TABLE inventory_history;
ALTER TABLE inventory_history_new RENAME TO inventory_history;

-- History pages: one product, newest first.
CREATE INDEX inventory_history_product_created
    ON inventory_history (product_id, created_at DESC, id DESC);
