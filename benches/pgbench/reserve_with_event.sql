-- benches/pgbench/reserve.sql plus what the service writes for WatchInventory
-- since its events outbox: the stock event of the reservation, numbered under
-- the outbox's transaction-level advisory lock as the last statement before
-- COMMIT (see migrations/postgres/2026-12-05-000001_stock_events), one per
-- transaction as the service takes it once per batch:
--   pgbench -n -f benches/pgbench/reserve_with_event.sql -D products=1000 -c 16 -j 2 -T 10 <db>
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
SELECT pg_advisory_xact_lock(7597139773516838003);
INSERT INTO inventory_events
  (position, product_id, kind, order_id, quantity_change, total_quantity, reserved_quantity,
   version, updated_at, created_at)
  VALUES (nextval('inventory_events_position'), 'bench-' || :pid, 'reserve',
          'pgb-' || :client_id || '-' || :order, -1, 1000000000, 1, 1, now(), now());
SELECT pg_notify('inventory_events', '');
COMMIT;
