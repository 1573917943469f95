//! The baseline of `benches/reserve_vs_sqlite.sh`: SQLite on its own, one
//! writer, making reservations with the same durability as the service
//! (WAL, `synchronous` as given) and the same statements per reservation as
//! one transaction: the existing-reservation lookup, the conditional UPDATE
//! of the stock, the reservation and history INSERTs, with `events` the
//! outbox row the service writes for WatchInventory too (numbered from the
//! latest position, as the service's writer does), COMMIT. It gets the
//! same page cache and checkpoint interval as the service's writer, so the
//! comparison is of the two ways of writing, not of their settings.
//!
//! ```text
//! cargo run --release --example sqlite_writer -- <database file> <products> <seconds> [full|normal] [events]
//! ```
//! The products `bench-1` .. `bench-<products>` must exist (the bench script
//! creates the schema by starting the service once, then stocks them).

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, products, seconds, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: sqlite_writer <database file> <products> <seconds> [full|normal] [events]"
                .into(),
        );
    };
    let products: u64 = products.parse()?;
    let seconds: u64 = seconds.parse()?;
    let synchronous = rest.first().map_or("full", String::as_str);
    let events = rest.get(1).is_some_and(|a| a == "events");

    let mut conn = SqliteConnection::establish(path)?;
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
         PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
         PRAGMA cache_size = -512; PRAGMA wal_autocheckpoint = 10000; \
         PRAGMA temp_store = MEMORY;"
    ))?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut done: u64 = 0;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    while Instant::now() < deadline {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let product = format!("bench-{}", seed % products + 1);
        let order = format!("raw-{done}");
        let id = format!("raw-r-{done}");
        conn.immediate_transaction::<_, diesel::result::Error, _>(|c| {
            diesel::sql_query(
                "SELECT id FROM inventory_reservations WHERE order_id = ? AND product_id = ? LIMIT 1",
            )
            .bind::<Text, _>(&order)
            .bind::<Text, _>(&product)
            .execute(c)?;
            let held = diesel::sql_query(
                "UPDATE inventory SET reserved_quantity = reserved_quantity + ?, \
                 updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') \
                 WHERE product_id = ? AND total_quantity - reserved_quantity >= ?",
            )
            .bind::<Integer, _>(1)
            .bind::<Text, _>(&product)
            .bind::<Integer, _>(1)
            .execute(c)?;
            if held == 1 {
                diesel::sql_query(
                    "INSERT INTO inventory_reservations \
                     (id, product_id, order_id, quantity, released_quantity, committed_quantity, \
                      status, expires_at, created_at) \
                     VALUES (?, ?, ?, 1, 0, 0, 'active', datetime('now', '+5 minutes'), datetime('now'))",
                )
                .bind::<Text, _>(&id)
                .bind::<Text, _>(&product)
                .bind::<Text, _>(&order)
                .execute(c)?;
                diesel::sql_query(
                    "INSERT INTO inventory_history \
                     (id, product_id, operation_type, quantity_change, order_id, created_at, metadata) \
                     VALUES (?, ?, 'reserve', -1, ?, datetime('now'), \
                     '{\"reservation_id\":\"x\",\"quantity\":1,\"reserved_quantity\":1,\"available_quantity\":1}')",
                )
                .bind::<Text, _>(format!("raw-h-{done}"))
                .bind::<Text, _>(&product)
                .bind::<Text, _>(&order)
                .execute(c)?;
                if events {
                    diesel::sql_query(
                        "INSERT INTO inventory_events \
                         (position, product_id, kind, order_id, quantity_change, total_quantity, \
                          reserved_quantity, version, low_stock_threshold, updated_at, created_at) \
                         SELECT max(coalesce((SELECT max(position) FROM inventory_events), 0), \
                                    (SELECT purged_through FROM inventory_event_log WHERE id = 1)) + 1, \
                                product_id, 'reserve', ?, -1, total_quantity, reserved_quantity, \
                                version, low_stock_threshold, updated_at, datetime('now') \
                         FROM inventory WHERE product_id = ?",
                    )
                    .bind::<Text, _>(&order)
                    .bind::<Text, _>(&product)
                    .execute(c)?;
                }
            }
            Ok(())
        })?;
        done += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{done} reservations in {elapsed:.1} s = {:.0} tx/s (one writer, synchronous={synchronous}{})",
        done as f64 / elapsed,
        if events { ", with the event" } else { "" }
    );
    Ok(())
}
