//! The specification's business metrics on `/metrics`, on both backends:
//! units on hand and their value at unit cost by currency (unit costs set
//! over gRPC and REST, as whole minor units; a value past what 64 bits of
//! integer hold), units committed, and the most reserved products; and the
//! refusals of a unit cost.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, backend_tests, metrics_text, reason, set_stock};
use inventory_service::pb::{
    CommitReservationRequest, Money, ReserveInventoryRequest, SetUnitCostRequest,
};
use tonic::Code;

backend_tests!(stock_value_turnover_and_hot_products_are_on_metrics);

/// Waits until `/metrics` shows every `(series, value)`, or fails after 10 s
/// showing what it has.
async fn wait_for_metrics(server: &TestServer, expected: &[(&str, f64)]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics_text(server).await;
        let value = |series: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        if expected.iter().all(|(series, v)| value(series) == Some(*v)) {
            return;
        }
        if Instant::now() > deadline {
            let shown: Vec<_> = expected.iter().map(|(s, _)| (s, value(s))).collect();
            panic!("expected {expected:?}, /metrics shows {shown:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stock_value_turnover_and_hot_products_are_on_metrics(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.inventory.stock_value_interval = Duration::from_millis(100);
    })
    .await;
    let mut client = server.client().await;
    set_stock(&mut client, "tea", 10).await;
    set_stock(&mut client, "mug", 4).await;
    let cost = |product: &str, currency: &str, minor_units: i64| SetUnitCostRequest {
        product_id: product.into(),
        unit_cost: Some(Money {
            currency_code: currency.into(),
            minor_units,
        }),
    };
    let set = client
        .set_unit_cost(cost("tea", "EUR", 250))
        .await
        .expect("cost")
        .into_inner();
    assert_eq!(set.unit_cost.map(|m| m.minor_units), Some(250));
    // Over REST, as the proto3 JSON of an int64: a string.
    let response = reqwest::Client::new()
        .put(server.http_url("/api/v1/inventory/mug/unit-cost"))
        .json(&serde_json::json!({"unit_cost": {"currency_code": "USD", "minor_units": "100"}}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["unit_cost"]["minor_units"], "100", "{body}");

    for order in ["o1", "o2"] {
        client
            .reserve_inventory(ReserveInventoryRequest {
                product_id: "tea".into(),
                order_id: order.into(),
                quantity: 3,
                reservation_timeout: 0,
            })
            .await
            .expect("reserve");
    }
    client
        .commit_reservation(CommitReservationRequest {
            product_id: "tea".into(),
            order_id: "o1".into(),
            ..Default::default()
        })
        .await
        .expect("commit");
    // tea: 10 - 3 committed = 7 on hand at 2.50 EUR; mug: 4 at 1.00 USD.
    wait_for_metrics(
        &server,
        &[
            ("inventory_stock_units", 11.0),
            (
                r#"inventory_stock_value_minor_units{currency="EUR"}"#,
                1750.0,
            ),
            (
                r#"inventory_stock_value_minor_units{currency="USD"}"#,
                400.0,
            ),
            ("inventory_committed_units_total", 3.0),
            (
                r#"inventory_hot_product_reservations{product_id="tea"}"#,
                2.0,
            ),
        ],
    )
    .await;

    // Refusals change nothing.
    for (request, code) in [
        (cost("tea", "eur", 1), Code::InvalidArgument),
        (cost("tea", "EUR", -1), Code::InvalidArgument),
        (cost("tea", "EUR", 1_000_000_000_001), Code::InvalidArgument),
        (cost("nope", "EUR", 1), Code::NotFound),
    ] {
        let refused = client.set_unit_cost(request).await.expect_err("refused");
        assert_eq!(refused.code(), code, "{refused:?}");
        if code == Code::NotFound {
            assert_eq!(reason(&refused), "PRODUCT_NOT_FOUND");
        }
    }
    // Cleared: the product no longer counts in the value, still in units.
    let cleared = client
        .set_unit_cost(SetUnitCostRequest {
            product_id: "mug".into(),
            unit_cost: None,
        })
        .await
        .expect("clear")
        .into_inner();
    assert_eq!(cleared.unit_cost, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics_text(&server).await;
        if !text.contains(r#"currency="USD""#) {
            assert!(
                text.contains(r#"inventory_stock_value_minor_units{currency="EUR"} 1750"#),
                "{text}"
            );
            assert!(text.contains("inventory_stock_units 11"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "USD still shown: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The largest stock at the largest cost: 2 x 10^21 minor units, past
    // what a 64-bit integer holds. The gauge shows it and the others keep
    // refreshing (in BIGINT, PostgreSQL failed the whole reading).
    set_stock(&mut client, "vault", i32::MAX).await;
    client
        .set_unit_cost(cost("vault", "GBP", 1_000_000_000_000))
        .await
        .expect("cost");
    wait_for_metrics(
        &server,
        &[
            ("inventory_stock_units", 11.0 + f64::from(i32::MAX)),
            (
                r#"inventory_stock_value_minor_units{currency="GBP"}"#,
                f64::from(i32::MAX) * 1e12,
            ),
            (
                r#"inventory_stock_value_minor_units{currency="EUR"}"#,
                1750.0,
            ),
        ],
    )
    .await;
}
