-- The seed's three tables in SQLite. Differences from the MySQL-flavoured seed:
-- * ENUM columns are TEXT with a CHECK on the allowed values;
-- * `ON UPDATE CURRENT_TIMESTAMP` is a trigger;
-- * JSON is TEXT checked with json_valid();
-- * timestamps are UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]', which sorts in time order.
-- The CHECK constraints make overselling impossible whatever the code does.

CREATE TABLE inventory (
    product_id VARCHAR(255) NOT NULL PRIMARY KEY,
    total_quantity INTEGER NOT NULL DEFAULT 0,
    reserved_quantity INTEGER NOT NULL DEFAULT 0,
    available_quantity INTEGER GENERATED ALWAYS AS (total_quantity - reserved_quantity) VIRTUAL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT inventory_product_id_length CHECK (length(product_id) BETWEEN 1 AND 255),
    CONSTRAINT inventory_total_non_negative CHECK (total_quantity >= 0),
    CONSTRAINT inventory_reserved_non_negative CHECK (reserved_quantity >= 0),
    CONSTRAINT inventory_reserved_within_total CHECK (reserved_quantity <= total_quantity)
);

-- ON UPDATE CURRENT_TIMESTAMP: stamp rows whose update did not set updated_at.
CREATE TRIGGER inventory_touch_updated_at
AFTER UPDATE ON inventory
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE inventory
    SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
    WHERE product_id = NEW.product_id;
END;

CREATE TABLE inventory_reservations (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    product_id VARCHAR(255) NOT NULL REFERENCES inventory (product_id),
    order_id VARCHAR(255) NOT NULL,
    quantity INTEGER NOT NULL,
    -- How much of `quantity` callers released; the reservation holds the rest while active.
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

-- One reservation per order and product: what makes a retried reserve idempotent.
CREATE UNIQUE INDEX inventory_reservations_order_product
    ON inventory_reservations (order_id, product_id);
-- The expiry sweeper's scan: active reservations by expiry time.
CREATE INDEX inventory_reservations_active_expiry
    ON inventory_reservations (expires_at) WHERE status = 'active';
-- The foreign key's lookups from inventory.
CREATE INDEX inventory_reservations_product ON inventory_reservations (product_id);

CREATE TABLE inventory_history (
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

-- History pages: one product, newest first.
CREATE INDEX inventory_history_product_created
    ON inventory_history (product_id, created_at DESC, id DESC);
