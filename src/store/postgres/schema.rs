//! Diesel table definitions for the PostgreSQL schema in `migrations/postgres/`.
//! The generated `available_quantity` column is left out: it is derived.

/// The schema's ENUM types, as diesel SQL types. Their OIDs are looked up by
/// name on first use and cached by the connection.
pub mod sql_types {
    /// `reservation_status`: `'active'`, `'released'`, `'expired'`, `'committed'`.
    #[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
    #[diesel(postgres_type(name = "reservation_status"))]
    pub struct ReservationStatus;

    /// `inventory_operation`: `'check'`, `'reserve'`, `'release'`, `'update'`, `'commit'`.
    #[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
    #[diesel(postgres_type(name = "inventory_operation"))]
    pub struct InventoryOperation;
}

diesel::table! {
    product_alternatives (product_id, rank) {
        product_id -> Varchar,
        rank -> Int4,
        alternative_id -> Varchar,
    }
}

diesel::table! {
    inventory (product_id) {
        product_id -> Varchar,
        total_quantity -> Int4,
        reserved_quantity -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        version -> Int8,
        low_stock_threshold -> Nullable<Int4>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::ReservationStatus;

    inventory_reservations (id) {
        id -> Varchar,
        product_id -> Varchar,
        order_id -> Varchar,
        quantity -> Int4,
        released_quantity -> Int4,
        committed_quantity -> Int4,
        status -> ReservationStatus,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::InventoryOperation;

    inventory_history (id) {
        id -> Varchar,
        product_id -> Varchar,
        operation_type -> InventoryOperation,
        quantity_change -> Int4,
        order_id -> Nullable<Varchar>,
        created_at -> Timestamptz,
        metadata -> Nullable<Jsonb>,
    }
}

diesel::table! {
    idempotency_keys (request_id) {
        request_id -> Varchar,
        method -> Varchar,
        request -> Jsonb,
        response -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(inventory_reservations -> inventory (product_id));
diesel::allow_tables_to_appear_in_same_query!(
    inventory,
    inventory_reservations,
    inventory_history,
    product_alternatives
);
