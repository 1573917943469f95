//! What makes a client's retry safe, over real gRPC on SQLite and on
//! PostgreSQL: the all-or-nothing order reservation (keyed by its order id),
//! `request_id` idempotency keys on the other writes, and the optimistic
//! lock's `version` with `expected_version` compare-and-set.

mod common;

use std::time::Duration;

use common::{Backend, TestServer, backend_tests, reason};
use inventory_service::pb::{
    self, CheckInventoryRequest, CommitReservationRequest, ListReservationsRequest, OrderItem,
    ReleaseInventoryRequest, ReleaseOrderRequest, ReserveInventoryRequest, ReserveOrderRequest,
    UpdateInventoryRequest,
};
use tonic::Code;
use tonic_types::StatusExt as _;

type Client = pb::inventory_service_client::InventoryServiceClient<tonic::transport::Channel>;

backend_tests!(
    an_order_reserves_every_product_at_once_and_retries_return_it,
    an_order_short_of_anything_reserves_nothing_and_lists_every_shortfall,
    an_order_gets_stock_held_by_expired_reservations,
    invalid_orders_name_the_item,
    a_retried_release_or_commit_with_a_request_id_applies_once,
    a_retried_update_or_order_release_with_a_request_id_applies_once,
    a_request_id_reused_for_another_request_is_already_exists,
    concurrent_retries_with_one_request_id_apply_once,
    versions_count_changes_of_stock_on_hand,
    expected_version_makes_an_update_compare_and_set,
);

async fn update(
    client: &mut Client,
    product: &str,
    operation: &str,
    quantity: i32,
) -> pb::UpdateInventoryResponse {
    client
        .update_inventory(UpdateInventoryRequest {
            product_id: product.into(),
            quantity,
            operation: operation.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{operation} {product}: {e:?}"))
        .into_inner()
}

async fn check(client: &mut Client, product: &str) -> pb::CheckInventoryResponse {
    client
        .check_inventory(CheckInventoryRequest {
            product_id: product.into(),
            required_quantity: 0,
        })
        .await
        .expect("check")
        .into_inner()
}

/// (total, reserved) of a product.
async fn levels(client: &mut Client, product: &str) -> (i32, i32) {
    let stock = check(client, product).await;
    (stock.current_quantity, stock.reserved_quantity)
}

fn order(order_id: &str, items: &[(&str, i32)]) -> ReserveOrderRequest {
    ReserveOrderRequest {
        order_id: order_id.into(),
        items: items
            .iter()
            .map(|(product, quantity)| OrderItem {
                product_id: (*product).into(),
                quantity: *quantity,
            })
            .collect(),
        reservation_timeout: 0,
    }
}

async fn reserve(client: &mut Client, product: &str, order_id: &str, quantity: i32) {
    client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: product.into(),
            quantity,
            order_id: order_id.into(),
            reservation_timeout: 0,
        })
        .await
        .expect("reserve");
}

async fn an_order_reserves_every_product_at_once_and_retries_return_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    update(&mut client, "a", "set", 5).await;
    update(&mut client, "b", "set", 2).await;

    let request = order("o1", &[("b", 1), ("a", 2), ("a", 1)]);
    let first = client
        .reserve_order(request.clone())
        .await
        .expect("reserve the order")
        .into_inner();
    let items: Vec<(&str, i32, i32, i32, bool)> = first
        .items
        .iter()
        .map(|i| {
            let held = i.reservation.as_ref().map_or(0, |r| r.held_quantity);
            (
                i.product_id.as_str(),
                held,
                i.reserved_quantity,
                i.available_quantity,
                i.created,
            )
        })
        .collect();
    assert_eq!(
        items,
        [("a", 3, 3, 2, true), ("b", 1, 1, 1, true)],
        "one reservation per product, demand summed, by product id"
    );
    assert_eq!(levels(&mut client, "a").await, (5, 3));
    assert_eq!(levels(&mut client, "b").await, (2, 1));

    let again = client
        .reserve_order(request)
        .await
        .expect("a retry")
        .into_inner();
    assert!(again.items.iter().all(|i| !i.created), "{again:?}");
    let ids = |r: &pb::ReserveOrderResponse| -> Vec<String> {
        r.items
            .iter()
            .filter_map(|i| i.reservation.as_ref().map(|r| r.reservation_id.clone()))
            .collect()
    };
    assert_eq!(ids(&again), ids(&first), "the first reservations");
    assert_eq!(levels(&mut client, "a").await, (5, 3), "held once");

    let conflict = client
        .reserve_order(order("o1", &[("a", 4), ("b", 1)]))
        .await
        .expect_err("another quantity");
    assert_eq!(conflict.code(), Code::AlreadyExists);
    assert_eq!(reason(&conflict), "RESERVATION_CONFLICT");
    assert!(
        conflict.message().contains(r#"3 of product "a" (not 4)"#),
        "{conflict:?}"
    );
    assert_eq!(levels(&mut client, "a").await, (5, 3));

    // The order's single reservations and its multi-item ones are the same
    // reservations: a listed product already held in that quantity is kept.
    update(&mut client, "c", "set", 1).await;
    let grown = client
        .reserve_order(order("o1", &[("a", 3), ("c", 1)]))
        .await
        .expect("one more product for the order")
        .into_inner();
    let created: Vec<(&str, bool)> = grown
        .items
        .iter()
        .map(|i| (i.product_id.as_str(), i.created))
        .collect();
    assert_eq!(created, [("a", false), ("c", true)]);
    let listed = client
        .list_reservations(ListReservationsRequest {
            order_id: "o1".into(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.reservations.len(), 3);
}

async fn an_order_short_of_anything_reserves_nothing_and_lists_every_shortfall(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    update(&mut client, "a", "set", 5).await;
    update(&mut client, "b", "set", 2).await;
    update(&mut client, "c", "set", 9).await;
    reserve(&mut client, "a", "other", 3).await;

    let short = client
        .reserve_order(order("o1", &[("a", 3), ("b", 5), ("c", 4)]))
        .await
        .expect_err("a and b are short");
    assert_eq!(short.code(), Code::FailedPrecondition);
    assert_eq!(reason(&short), "INSUFFICIENT_STOCK");
    assert!(
        short.message().contains(
            r#"product "a" requested 3, available 2; product "b" requested 5, available 2"#
        ),
        "{}",
        short.message()
    );
    let failure = short
        .get_details_precondition_failure()
        .expect("PreconditionFailure");
    let violations: Vec<(&str, &str)> = failure
        .violations
        .iter()
        .map(|v| (v.subject.as_str(), v.description.as_str()))
        .collect();
    assert_eq!(
        violations,
        [
            ("a", "requested 3, available 2"),
            ("b", "requested 5, available 2")
        ]
    );
    assert_eq!(levels(&mut client, "a").await, (5, 3), "nothing held");
    assert_eq!(levels(&mut client, "c").await, (9, 0), "not even c");
    let none = client
        .list_reservations(ListReservationsRequest {
            order_id: "o1".into(),
        })
        .await
        .expect_err("no reservation at all");
    assert_eq!(none.code(), Code::NotFound);

    let missing = client
        .reserve_order(order("o1", &[("ghost", 1), ("c", 1), ("phantom", 1)]))
        .await
        .expect_err("unknown products");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(reason(&missing), "PRODUCT_NOT_FOUND");
    assert!(
        missing
            .message()
            .contains(r#"products "ghost", "phantom" not found"#),
        "{}",
        missing.message()
    );
    assert_eq!(levels(&mut client, "c").await, (9, 0));
}

async fn an_order_gets_stock_held_by_expired_reservations(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    update(&mut client, "a", "set", 4).await;
    update(&mut client, "b", "set", 4).await;
    client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "a".into(),
            quantity: 4,
            order_id: "stale".into(),
            reservation_timeout: 1,
        })
        .await
        .expect("hold all of a for a second");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let reserved = client
        .reserve_order(order("fresh", &[("a", 3), ("b", 1)]))
        .await
        .expect("the expired hold gives way")
        .into_inner();
    assert_eq!(reserved.items.len(), 2);
    assert_eq!(levels(&mut client, "a").await, (4, 3));
}

async fn invalid_orders_name_the_item(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    update(&mut client, "a", "set", 5).await;
    for (request, needle) in [
        (order("o", &[]), "must list 1 to 100 items, got 0"),
        (order("o", &[("a", 1), ("a", 0)]), "items[1].quantity"),
        (order("o", &[(" a", 1)]), "items[0].product_id"),
        (
            order("o", &[("a", i32::MAX), ("a", 1)]),
            "add up to 2147483648",
        ),
        (order("", &[("a", 1)]), "order_id"),
        (
            order("o", &vec![("a", 1); 101]),
            "must list 1 to 100 items, got 101",
        ),
    ] {
        let status = client
            .reserve_order(request)
            .await
            .expect_err("invalid order");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(needle), "{}", status.message());
    }
    assert_eq!(levels(&mut client, "a").await, (5, 0));
}

fn release(order_id: &str, quantity: i32, request_id: &str) -> ReleaseInventoryRequest {
    ReleaseInventoryRequest {
        product_id: "p".into(),
        quantity,
        order_id: order_id.into(),
        request_id: request_id.into(),
    }
}

fn commit(order_id: &str, quantity: i32, request_id: &str) -> CommitReservationRequest {
    CommitReservationRequest {
        product_id: "p".into(),
        quantity,
        order_id: order_id.into(),
        request_id: request_id.into(),
    }
}

const REPLAYED: &str = "replayed the first result of this request_id";

async fn a_retried_release_or_commit_with_a_request_id_applies_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    update(&mut client, "p", "set", 10).await;
    reserve(&mut client, "p", "o1", 6).await;

    let first = client
        .release_inventory(release("o1", 2, "rel-1"))
        .await
        .expect("release 2")
        .into_inner();
    // The retry goes to the other port, as it might to another replica.
    let mut other = Client::connect(server.http_url("")).await.expect("connect");
    let again = other
        .release_inventory(release("o1", 2, "rel-1"))
        .await
        .expect("the retry")
        .into_inner();
    assert_eq!(again.released_quantity, 2);
    assert_eq!(again.reservation, first.reservation, "the first result");
    assert!(again.message.ends_with(REPLAYED), "{}", again.message);
    assert_eq!(levels(&mut client, "p").await, (10, 4), "released once");

    let first = client
        .commit_reservation(commit("o1", 1, "com-1"))
        .await
        .expect("commit 1")
        .into_inner();
    assert_eq!(first.committed_quantity, 1);
    for _ in 0..2 {
        let again = client
            .commit_reservation(commit("o1", 1, "com-1"))
            .await
            .expect("the retry")
            .into_inner();
        assert_eq!((again.committed_quantity, again.current_quantity), (1, 9));
        assert!(again.message.ends_with(REPLAYED), "{}", again.message);
    }
    assert_eq!(levels(&mut client, "p").await, (9, 3), "committed once");

    // Without a request_id, a repeated partial release is a new release.
    for _ in 0..2 {
        client
            .release_inventory(release("o1", 1, ""))
            .await
            .expect("release 1");
    }
    assert_eq!(levels(&mut client, "p").await, (9, 1));

    // A release that changed nothing is not kept: its retry runs again.
    let unknown = client
        .release_inventory(release("nobody", 1, "rel-2"))
        .await
        .expect_err("no such reservation");
    assert_eq!(unknown.code(), Code::NotFound);
    reserve(&mut client, "p", "nobody", 1).await;
    let now_found = client
        .release_inventory(release("nobody", 1, "rel-2"))
        .await
        .expect("the reservation exists now")
        .into_inner();
    assert_eq!(now_found.released_quantity, 1);
    assert!(!now_found.message.ends_with(REPLAYED));
}

async fn a_retried_update_or_order_release_with_a_request_id_applies_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    update(&mut client, "p", "set", 10).await;
    let add = UpdateInventoryRequest {
        product_id: "p".into(),
        quantity: 5,
        operation: "add".into(),
        request_id: "upd-1".into(),
        ..Default::default()
    };
    let first = client
        .update_inventory(add.clone())
        .await
        .expect("add")
        .into_inner();
    update(&mut client, "p", "subtract", 1).await;
    let again = client
        .update_inventory(add)
        .await
        .expect("the retry")
        .into_inner();
    assert_eq!(
        (again.current_quantity, again.quantity_change, again.version),
        (first.current_quantity, 5, first.version),
        "the first result, not the stock now"
    );
    assert_eq!(levels(&mut client, "p").await.0, 14, "added once");

    update(&mut client, "q", "set", 10).await;
    reserve(&mut client, "p", "o1", 2).await;
    reserve(&mut client, "q", "o1", 3).await;
    let release_order = ReleaseOrderRequest {
        order_id: "o1".into(),
        request_id: "ro-1".into(),
    };
    let first = client
        .release_order(release_order.clone())
        .await
        .expect("release the order")
        .into_inner();
    assert_eq!(first.released.len(), 2);
    let again = client
        .release_order(release_order)
        .await
        .expect("the retry")
        .into_inner();
    assert_eq!(again.released, first.released, "the first result");
    assert!(again.message.ends_with(REPLAYED), "{}", again.message);
    let plain = client
        .release_order(ReleaseOrderRequest {
            order_id: "o1".into(),
            request_id: String::new(),
        })
        .await
        .expect("without a key")
        .into_inner();
    assert!(plain.released.is_empty(), "nothing left to release");
}

async fn a_request_id_reused_for_another_request_is_already_exists(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    update(&mut client, "p", "set", 10).await;
    reserve(&mut client, "p", "o1", 6).await;
    client
        .release_inventory(release("o1", 2, "key-1"))
        .await
        .expect("release 2");

    let other_quantity = client
        .release_inventory(release("o1", 3, "key-1"))
        .await
        .expect_err("same key, other quantity");
    assert_eq!(other_quantity.code(), Code::AlreadyExists);
    assert_eq!(reason(&other_quantity), "REQUEST_ID_REUSED");
    assert!(
        other_quantity.message().contains("quantity: 2, now 3"),
        "{}",
        other_quantity.message()
    );
    let info = other_quantity.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.metadata["fields"], "quantity");
    assert_eq!(info.metadata["request_id"], "key-1");

    let other_method = client
        .commit_reservation(commit("o1", 2, "key-1"))
        .await
        .expect_err("same key, another method");
    assert_eq!(reason(&other_method), "REQUEST_ID_REUSED");
    assert!(
        other_method
            .message()
            .contains("method: ReleaseInventory, now CommitReservation"),
        "{}",
        other_method.message()
    );
    assert_eq!(levels(&mut client, "p").await, (10, 4), "nothing changed");

    let invalid = client
        .release_inventory(release("o1", 1, &"k".repeat(256)))
        .await
        .expect_err("too long");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(invalid.message().starts_with("request_id:"));
}

async fn concurrent_retries_with_one_request_id_apply_once(backend: Backend) {
    // A client that gave up waiting retries while its first call still runs:
    // both race for the key, on two connections (two replicas' worth).
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    update(&mut client, "p", "set", 100).await;
    reserve(&mut client, "p", "o1", 50).await;
    let other = Client::connect(server.http_url("")).await.expect("connect");
    let mut calls = Vec::new();
    for i in 0..16 {
        let mut client = if i % 2 == 0 {
            client.clone()
        } else {
            other.clone()
        };
        calls.push(tokio::spawn(async move {
            let released = client
                .release_inventory(release("o1", 3, "same-release"))
                .await
                .map(|r| r.into_inner().released_quantity);
            let added = client
                .update_inventory(UpdateInventoryRequest {
                    product_id: "p".into(),
                    quantity: 7,
                    operation: "add".into(),
                    request_id: "same-add".into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().quantity_change);
            (released, added)
        }));
    }
    for call in calls {
        let (released, added) = call.await.expect("task");
        assert_eq!(released.expect("every retry succeeds"), 3);
        assert_eq!(added.expect("every retry succeeds"), 7);
    }
    assert_eq!(
        levels(&mut client, "p").await,
        (107, 47),
        "each applied once"
    );
}

async fn versions_count_changes_of_stock_on_hand(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    assert_eq!(update(&mut client, "p", "set", 10).await.version, 1);
    assert_eq!(update(&mut client, "p", "add", 2).await.version, 2);
    reserve(&mut client, "p", "o1", 4).await;
    client
        .release_inventory(release("o1", 1, ""))
        .await
        .expect("release");
    assert_eq!(
        check(&mut client, "p").await.version,
        2,
        "holds are not stock"
    );
    let committed = client
        .commit_reservation(commit("o1", 2, ""))
        .await
        .expect("commit")
        .into_inner();
    assert_eq!(committed.current_quantity, 10);
    assert_eq!(check(&mut client, "p").await.version, 3, "a commit is");
    let listed = client
        .list_inventory(pb::ListInventoryRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.items.first().map(|s| s.version), Some(3));
}

async fn expected_version_makes_an_update_compare_and_set(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    let cas = |operation: &str, quantity: i32, version: i64| UpdateInventoryRequest {
        product_id: "p".into(),
        quantity,
        operation: operation.into(),
        expected_version: Some(version),
        request_id: String::new(),
    };

    let stale_create = client
        .update_inventory(cas("set", 10, 3))
        .await
        .expect_err("the product does not exist: version 0");
    assert_eq!(stale_create.code(), Code::Aborted);
    let created = client
        .update_inventory(cas("set", 10, 0))
        .await
        .expect("create if absent")
        .into_inner();
    assert_eq!((created.created, created.version), (true, 1));
    let again = client
        .update_inventory(cas("set", 99, 0))
        .await
        .expect_err("exists now");
    assert_eq!(reason(&again), "VERSION_MISMATCH");

    let read = check(&mut client, "p").await;
    update(&mut client, "p", "add", 1).await;
    let stale = client
        .update_inventory(cas("set", read.current_quantity + 5, read.version))
        .await
        .expect_err("changed since it was read");
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(reason(&stale), "VERSION_MISMATCH");
    let info = stale.get_details_error_info().expect("ErrorInfo");
    assert_eq!(
        (
            info.metadata["expected_version"].as_str(),
            info.metadata["current_version"].as_str()
        ),
        ("1", "2")
    );
    assert_eq!(levels(&mut client, "p").await.0, 11, "nothing changed");

    let fresh = check(&mut client, "p").await;
    let applied = client
        .update_inventory(cas("subtract", 3, fresh.version))
        .await
        .expect("at the version read")
        .into_inner();
    assert_eq!((applied.current_quantity, applied.version), (8, 3));

    let negative = client
        .update_inventory(cas("add", 1, -1))
        .await
        .expect_err("negative version");
    assert_eq!(negative.code(), Code::InvalidArgument);
    assert!(negative.message().starts_with("expected_version:"));
}
