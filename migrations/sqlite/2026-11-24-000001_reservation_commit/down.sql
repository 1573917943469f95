-- Back to the first schema. Committed reservations and commit history entries
-- have no place in it and are deleted (their stock already left the stock on
-- hand, so the counters stay consistent).

DELETE FROM inventory_reservations WHERE status = 'committed';
DELETE FROM inventory_history WHERE operation_type = 'commit';

CREATE TABLE inventory_reservations_old (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    product_id VARCHAR(255) NOT NULL REFERENCES inventory (product_id),
    order_id VARCHAR(255) NOT NULL,
    quantity INTEGER NOT NULL,
    released_quantity INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active',
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT reservations_quantity_positive CHECK (quantity > 0),
    CONSTRAINT reservations_released_within_quantity
        CHECK (released_quantity >= 0 AND released_quantity <= quantity),
    CONSTRAINT reservations_status_known CHECK (status IN ('active', 'released', 'expired'))
);
-- What a partial commit took counts as released in the old schema.
INSERT INTO inventory_reservations_old
    (id, product_id, order_id, quantity, released_quantity, status, expires_at, created_at, updated_at)
SELECT id, product_id, order_id, quantity, released_quantity + committed_quantity,
       status, expires_at, created_at, updated_at
FROM inventory_reservations;
DROP TABLE inventory_reservations;
ALTER TABLE inventory_reservations_old RENAME TO inventory_reservations;
CREATE UNIQUE INDEX inventory_reservations_order_product
    ON inventory_reservations (order_id, product_id);
CREATE INDEX inventory_reservations_active_expiry
    ON inventory_reservations (expires_at) WHERE status = 'active';
CREATE INDEX inventory_reservations_product ON inventory_reservations (product_id);

CREATE TABLE inventory_history_old (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    product_id VARCHAR(255) NOT NULL,
    operation_type TEXT NOT NULL,
    quantity_change INTEGER NOT NULL,
    order_id VARCHAR(255),
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    metadata TEXT,
    CONSTRAINT history_operation_known
        CHECK (operation_type IN ('check', 'reserve', 'release', 'update')),
    CONSTRAINT history_metadata_json CHECK (metadata IS NULL OR json_valid(metadata))
);
INSERT INTO inventory_history_old SELECT * FROM inventory_history;
DROP TABLE inventory_history;
ALTER TABLE inventory_history_old RENAME TO inventory_history;
CREATE INDEX inventory_history_product_created
    ON inventory_history (product_id, created_at DESC, id DESC);
