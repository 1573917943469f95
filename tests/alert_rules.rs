//! The alerting rules in `deploy/prometheus/alerts.yml` name metrics the
//! service exports: every `inventory_*` name in them is on `/metrics` once
//! the service has seen some traffic (reservations, one that expires, one
//! refused) with tracing on, so a renamed metric cannot leave an alert that
//! never fires.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Backend, TestServer, closed_port};
use inventory_service::pb::{
    CommitReservationRequest, Money, ReserveInventoryRequest, SetUnitCostRequest,
    UpdateInventoryRequest,
};

/// The `inventory_*` metric names in the rules (expressions and
/// descriptions; comments aside).
fn names_in_rules() -> BTreeSet<String> {
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/alerts.yml"
    ))
    .expect("deploy/prometheus/alerts.yml");
    let mut names = BTreeSet::new();
    for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("inventory_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_alerts_name_is_exported() {
    let names = names_in_rules();
    assert!(
        names.len() >= 6,
        "the rules name too few metrics: {names:?}"
    );
    // Tracing on, towards a port nothing listens on: the span counters
    // exist only while spans are exported.
    let down = closed_port();
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.inventory.cleanup_interval = Duration::from_millis(100);
        config.inventory.stock_value_interval = Duration::from_millis(100);
        config.tracing.enabled = true;
        config.tracing.endpoint = Some(format!("http://{down}"));
    })
    .await;
    let mut client = server.client().await;
    client
        .update_inventory(UpdateInventoryRequest {
            product_id: "p".into(),
            quantity: 5,
            operation: "set".into(),
            ..Default::default()
        })
        .await
        .expect("stock");
    client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "p".into(),
            quantity: 1,
            order_id: "expires".into(),
            reservation_timeout: 1,
        })
        .await
        .expect("reserve");
    client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "p".into(),
            quantity: 1,
            order_id: "paid".into(),
            reservation_timeout: 0,
        })
        .await
        .expect("reserve");
    client
        .commit_reservation(CommitReservationRequest {
            product_id: "p".into(),
            order_id: "paid".into(),
            ..Default::default()
        })
        .await
        .expect("commit");
    client
        .set_unit_cost(SetUnitCostRequest {
            product_id: "p".into(),
            unit_cost: Some(Money {
                currency_code: "EUR".into(),
                minor_units: 250,
            }),
        })
        .await
        .expect("unit cost");
    client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "p".into(),
            quantity: 100,
            order_id: "refused".into(),
            reservation_timeout: 0,
        })
        .await
        .expect_err("insufficient stock");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = reqwest::get(server.http_url("/metrics"))
            .await
            .expect("/metrics")
            .text()
            .await
            .expect("body");
        let exported: BTreeSet<&str> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split(['{', ' ']).next())
            .collect();
        // A histogram is exported as its _bucket, _sum and _count series.
        let missing: Vec<_> = names
            .iter()
            .filter(|name| {
                !exported.contains(name.as_str())
                    && !exported.contains(format!("{name}_count").as_str())
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the alerting rules name metrics /metrics does not export: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
