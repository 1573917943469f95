-- The ordered outbox of stock events (WatchInventory); the same as
-- migrations/postgres.
--
-- Every change of stock adds one row per change, in the same transaction as
-- the change, with the stock as the change left it. SQLite has one writer at
-- a time: a transaction numbers its events on from the latest position under
-- the write lock, so positions follow commit order. A watch resumes from the
-- last position it saw. A change that takes a product's available stock
-- to or below its low-stock threshold, to zero, or back from zero adds a
-- stock-state event right after its own.
CREATE TABLE inventory_events (
    position INTEGER NOT NULL PRIMARY KEY,
    product_id VARCHAR(255) NOT NULL,
    -- What changed the stock.
    kind VARCHAR(16) NOT NULL,
    order_id VARCHAR(255),
    -- The signed change of the available quantity, as in inventory_history.
    quantity_change INTEGER NOT NULL,
    -- The stock right after the change.
    total_quantity INTEGER NOT NULL,
    reserved_quantity INTEGER NOT NULL,
    version BIGINT NOT NULL,
    low_stock_threshold INTEGER,
    updated_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT inventory_events_position_positive CHECK (position >= 1),
    CONSTRAINT inventory_events_kind
        CHECK (kind IN ('reserve', 'release', 'commit', 'update', 'expire', 'low_stock',
                        'out_of_stock', 'back_in_stock')),
    CONSTRAINT inventory_events_stock
        CHECK (reserved_quantity >= 0 AND reserved_quantity <= total_quantity)
);

-- How far the retention purge has forgotten: every event at or before this
-- position. The purge cuts the outbox only from its start, so the latest
-- position handed out is max(position), or this when nothing is kept.
CREATE TABLE inventory_event_log (
    id INTEGER NOT NULL PRIMARY KEY,
    purged_through BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT inventory_event_log_one_row CHECK (id = 1),
    CONSTRAINT inventory_event_log_purged CHECK (purged_through >= 0)
);

INSERT INTO inventory_event_log (id) VALUES (1);

-- Per product, an optional low-stock threshold: changes that take the
-- available stock from above it to it or below raise a low_stock event.
ALTER TABLE inventory
    ADD COLUMN low_stock_threshold INTEGER
    CONSTRAINT inventory_low_stock_threshold_non_negative CHECK (low_stock_threshold >= 0);
