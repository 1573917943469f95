DROP TABLE inventory_event_log;
DROP TABLE inventory_events;
