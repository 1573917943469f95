//! Diesel table definitions for the SQLite schema in `migrations/sqlite/`.
//! The generated `available_quantity` column is left out: it is derived.

diesel::table! {
    inventory (product_id) {
        product_id -> Text,
        total_quantity -> Integer,
        reserved_quantity -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        version -> BigInt,
        low_stock_threshold -> Nullable<Integer>,
    }
}

diesel::table! {
    inventory_reservations (id) {
        id -> Text,
        product_id -> Text,
        order_id -> Text,
        quantity -> Integer,
        released_quantity -> Integer,
        committed_quantity -> Integer,
        status -> Text,
        expires_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    inventory_history (id) {
        id -> Text,
        product_id -> Text,
        operation_type -> Text,
        quantity_change -> Integer,
        order_id -> Nullable<Text>,
        created_at -> Timestamp,
        metadata -> Nullable<Text>,
    }
}

diesel::table! {
    idempotency_keys (request_id) {
        request_id -> Text,
        method -> Text,
        request -> Text,
        response -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    inventory_events (position) {
        position -> BigInt,
        product_id -> Text,
        kind -> Text,
        order_id -> Nullable<Text>,
        quantity_change -> Integer,
        total_quantity -> Integer,
        reserved_quantity -> Integer,
        version -> BigInt,
        low_stock_threshold -> Nullable<Integer>,
        updated_at -> Timestamp,
        created_at -> Timestamp,
    }
}

diesel::table! {
    inventory_event_log (id) {
        id -> Integer,
        purged_through -> BigInt,
    }
}

diesel::table! {
    product_alternatives (product_id, rank) {
        product_id -> Text,
        rank -> Integer,
        alternative_id -> Text,
    }
}

diesel::joinable!(inventory_reservations -> inventory (product_id));
diesel::allow_tables_to_appear_in_same_query!(
    inventory,
    inventory_reservations,
    inventory_history,
    product_alternatives
);
