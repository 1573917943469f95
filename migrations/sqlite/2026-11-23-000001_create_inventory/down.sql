DROP TABLE inventory_history;
DROP TABLE inventory_reservations;
DROP TRIGGER inventory_touch_updated_at;
DROP TABLE inventory;
