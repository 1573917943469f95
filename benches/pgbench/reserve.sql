-- One reservation as one transaction, the least SQL that makes it: look for
-- the order's reservation, hold the stock with a conditional UPDATE, insert
-- the reservation and its history entry. The service made each reservation
-- this way before group commit; benches/reserve_vs_pgbench.sh compares the
-- service with pgbench running it:
--   pgbench -n -f benches/pgbench/reserve.sql -D products=1000 -c 16 -j 2 -T 10 <db>
-- Products are bench-1 .. bench-<products>, stocked by benches/reserve_vs_pgbench.sh.
\set pid random(1, :products)
\set order random(1, 1000000000000)
BEGIN;
SELECT id, product_id, order_id, quantity, released_quantity, status, expires_at, created_at
  FROM inventory_reservations
  WHERE order_id = 'pgb-' || :client_id || '-' || :order AND product_id = 'bench-' || :pid
  LIMIT 1;
UPDATE inventory
  SET reserved_quantity = reserved_quantity + 1, updated_at = now()
  WHERE product_id = 'bench-' || :pid AND total_quantity - reserved_quantity >= 1
  RETURNING product_id, total_quantity, reserved_quantity, updated_at;
INSERT INTO inventory_reservations
  (id, product_id, order_id, quantity, released_quantity, status, expires_at, created_at, updated_at)
  VALUES (gen_random_uuid()::text, 'bench-' || :pid, 'pgb-' || :client_id || '-' || :order, 1, 0,
          'active', now() + interval '5 minutes', now(), now());
INSERT INTO inventory_history
  (id, product_id, operation_type, quantity_change, order_id, created_at, metadata)
  VALUES (gen_random_uuid()::text, 'bench-' || :pid, 'reserve', -1, 'pgb-' || :client_id || '-' || :order,
          now(), '{"reservation_id":"x","quantity":1,"expires_at":"2026-01-01T00:00:00+00:00","reserved_quantity":1,"available_quantity":1}');
COMMIT;
