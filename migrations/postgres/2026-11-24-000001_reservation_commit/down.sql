-- Back to the first schema. PostgreSQL cannot drop an ENUM value, so
-- 'committed' and 'commit' stay in their types, unused: committed
-- reservations and commit history entries are deleted (their stock already
-- left the stock on hand, so the counters stay consistent), and what a
-- partial commit took counts as released.
DELETE FROM inventory_reservations WHERE status = 'committed';
DELETE FROM inventory_history WHERE operation_type = 'commit';
UPDATE inventory_reservations SET released_quantity = released_quantity + committed_quantity;
ALTER TABLE inventory_reservations
    DROP CONSTRAINT reservations_committed_within_quantity,
    DROP COLUMN committed_quantity;
