ALTER TABLE inventory DROP COLUMN low_stock_threshold;
DROP TABLE inventory_event_log;
DROP SEQUENCE inventory_events_position;
DROP TABLE inventory_events;
DROP TYPE inventory_event_kind;
