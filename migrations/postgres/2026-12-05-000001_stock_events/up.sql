-- The ordered outbox of stock events (WatchInventory); the same as
-- migrations/sqlite.
--
-- Every change of stock adds one row per change, in the same transaction as
-- the change, with the stock as the change left it. Positions are handed out
-- in commit order across every replica: the last statement before COMMIT
-- takes a transaction-level advisory lock and then its positions from
-- `inventory_events_position`, and the lock is held until the commit. So at
-- most one transaction holds positions it has not committed, and they are
-- above every committed one: an event is visible only once every event
-- before it is. (A sequence alone gives numbers in the order transactions
-- ask for them, and a reader could see position 11 before 10 commits, then
-- skip 10. A counter row would do the same as the lock, but at
-- `repeatable_read` or `serializable` every concurrent writer would fail to
-- serialize on it.) Positions may skip a number where a COMMIT failed after
-- taking them. With group commit on, a replica takes the lock once per batch.
-- A change that takes a product's available stock to or below its low-stock
-- threshold, to zero, or back from zero adds a stock-state event right
-- after its own.
CREATE TYPE inventory_event_kind AS ENUM ('reserve', 'release', 'commit', 'update', 'expire',
    'low_stock', 'out_of_stock', 'back_in_stock');

CREATE TABLE inventory_events (
    position BIGINT NOT NULL PRIMARY KEY,
    product_id VARCHAR(255) COLLATE "C" NOT NULL,
    -- What changed the stock.
    kind inventory_event_kind NOT NULL,
    order_id VARCHAR(255) COLLATE "C",
    -- The signed change of the available quantity, as in inventory_history.
    quantity_change INT NOT NULL,
    -- The stock right after the change.
    total_quantity INT NOT NULL,
    reserved_quantity INT NOT NULL,
    version BIGINT NOT NULL,
    low_stock_threshold INT,
    updated_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT inventory_events_position_positive CHECK (position >= 1),
    CONSTRAINT inventory_events_stock
        CHECK (reserved_quantity >= 0 AND reserved_quantity <= total_quantity)
);

-- Positions: taken from this sequence by the last statement before COMMIT,
-- under a transaction-level advisory lock (see store/postgres/work.rs) held
-- until the commit.
CREATE SEQUENCE inventory_events_position AS BIGINT MINVALUE 1;

-- How far the retention purge has forgotten: every event at or before this
-- position. The purge cuts the outbox only from its start, so the latest
-- position visible is max(position), or this when nothing is kept.
CREATE TABLE inventory_event_log (
    id SMALLINT NOT NULL PRIMARY KEY,
    purged_through BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT inventory_event_log_one_row CHECK (id = 1),
    CONSTRAINT inventory_event_log_purged CHECK (purged_through >= 0)
);

INSERT INTO inventory_event_log (id) VALUES (1);

-- Per product, an optional low-stock threshold: changes that take the
-- available stock from above it to it or below raise a low_stock event.
ALTER TABLE inventory
    ADD COLUMN low_stock_threshold INT,
    ADD CONSTRAINT inventory_low_stock_threshold_non_negative CHECK (low_stock_threshold >= 0);
