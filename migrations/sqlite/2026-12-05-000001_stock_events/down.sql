ALTER TABLE inventory DROP COLUMN low_stock_threshold;
DROP TABLE inventory_event_log;
DROP TABLE inventory_events;
