-- Committing reservations (CommitReservation): a `committed` reservation
-- status, a `committed_quantity` column, and a `commit` history operation;
-- the same as migrations/sqlite.
--
-- ALTER TYPE ... ADD VALUE runs inside diesel's per-migration transaction
-- (allowed since PostgreSQL 12); the new values are not used before this
-- transaction commits, as PostgreSQL requires.

ALTER TYPE reservation_status ADD VALUE IF NOT EXISTS 'committed';
ALTER TYPE inventory_operation ADD VALUE IF NOT EXISTS 'commit';

-- How much of `quantity` was committed (left the stock on hand). While active
-- the reservation holds quantity - released - committed.
ALTER TABLE inventory_reservations
    ADD COLUMN committed_quantity INT NOT NULL DEFAULT 0,
    ADD CONSTRAINT reservations_committed_within_quantity
        CHECK (committed_quantity >= 0 AND released_quantity + committed_quantity <= quantity);
