-- The seed's three tables in PostgreSQL, the same columns and constraints as
-- migrations/sqlite. Differences from the MySQL-flavoured seed:
-- * the ENUM columns are PostgreSQL ENUM types;
-- * `ON UPDATE CURRENT_TIMESTAMP` is a BEFORE UPDATE trigger;
-- * JSON is JSONB;
-- * timestamps are TIMESTAMPTZ (microseconds, as the service truncates them).
-- Ids compare byte-wise (COLLATE "C"): history pages are ordered by id, and
-- UUIDv7 text sorts by creation time only under a byte-wise collation.
-- The CHECK constraints make overselling impossible whatever the code does.

CREATE TYPE reservation_status AS ENUM ('active', 'released', 'expired');
CREATE TYPE inventory_operation AS ENUM ('check', 'reserve', 'release', 'update');

CREATE TABLE inventory (
    product_id VARCHAR(255) COLLATE "C" NOT NULL PRIMARY KEY,
    total_quantity INT NOT NULL DEFAULT 0,
    reserved_quantity INT NOT NULL DEFAULT 0,
    available_quantity INT GENERATED ALWAYS AS (total_quantity - reserved_quantity) STORED,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT inventory_product_id_length CHECK (length(product_id) BETWEEN 1 AND 255),
    CONSTRAINT inventory_total_non_negative CHECK (total_quantity >= 0),
    CONSTRAINT inventory_reserved_non_negative CHECK (reserved_quantity >= 0),
    CONSTRAINT inventory_reserved_within_total CHECK (reserved_quantity <= total_quantity)
);

-- ON UPDATE CURRENT_TIMESTAMP: stamp rows whose update did not change updated_at.
CREATE FUNCTION inventory_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER inventory_touch_updated_at
BEFORE UPDATE ON inventory
FOR EACH ROW EXECUTE FUNCTION inventory_touch_updated_at();

CREATE TABLE inventory_reservations (
    id VARCHAR(255) COLLATE "C" NOT NULL PRIMARY KEY,
    product_id VARCHAR(255) COLLATE "C" NOT NULL REFERENCES inventory (product_id),
    order_id VARCHAR(255) COLLATE "C" NOT NULL,
    quantity INT NOT NULL,
    -- How much of `quantity` callers released; the reservation holds the rest while active.
    released_quantity INT NOT NULL DEFAULT 0,
    status reservation_status NOT NULL DEFAULT 'active',
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT reservations_quantity_positive CHECK (quantity > 0),
    CONSTRAINT reservations_released_within_quantity
        CHECK (released_quantity >= 0 AND released_quantity <= quantity)
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
    id VARCHAR(255) COLLATE "C" NOT NULL PRIMARY KEY,
    product_id VARCHAR(255) COLLATE "C" NOT NULL,
    operation_type inventory_operation NOT NULL,
    quantity_change INT NOT NULL,
    order_id VARCHAR(255) COLLATE "C",
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    metadata JSONB
);

-- History pages: one product, newest first.
CREATE INDEX inventory_history_product_created
    ON inventory_history (product_id, created_at DESC, id DESC);
