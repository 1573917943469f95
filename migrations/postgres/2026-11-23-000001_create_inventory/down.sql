DROP TABLE inventory_history;
DROP TABLE inventory_reservations;
DROP TRIGGER inventory_touch_updated_at ON inventory;
DROP FUNCTION inventory_touch_updated_at();
DROP TABLE inventory;
DROP TYPE inventory_operation;
DROP TYPE reservation_status;
