//! Every RPC over a real gRPC connection: success paths, error codes and
//! their ErrorInfo, and that refused requests change nothing; each test runs
//! once on SQLite and once on PostgreSQL.

mod common;

use common::{Backend, TestServer, backend_tests, reason};
use inventory_service::pb::{
    self, CheckInventoryRequest, CommitReservationRequest, GetInventoryHistoryRequest,
    ListInventoryRequest, ListReservationsRequest, ReleaseInventoryRequest, ReleaseOrderRequest,
    ReserveInventoryRequest, UpdateInventoryRequest,
};
use tonic::Code;
use tonic_types::StatusExt as _;

type Client = pb::inventory_service_client::InventoryServiceClient<tonic::transport::Channel>;

backend_tests!(
    check_inventory_reports_stock_and_availability,
    reserve_inventory_holds_stock_and_reports_what_remains,
    insufficient_stock_is_failed_precondition_with_details_and_changes_nothing,
    retried_reservations_are_idempotent_and_conflicts_are_already_exists,
    release_inventory_partial_full_repeated_and_unknown,
    update_inventory_set_add_subtract_and_guards,
    history_is_newest_first_paged_with_metadata,
    invalid_arguments_name_the_field,
    concurrent_reservations_never_oversell,
    concurrent_retries_of_one_reservation_hold_stock_once,
    expired_holds_never_block_a_buyer,
    commit_reservation_full_partial_repeated_and_unknown,
    committing_a_released_or_expired_reservation_is_failed_precondition,
    release_order_releases_every_product_once,
    list_reservations_of_an_order_by_product,
    list_inventory_pages_by_product_id,
);

async fn set_stock(
    client: &mut Client,
    product: &str,
    quantity: i32,
) -> pb::UpdateInventoryResponse {
    client
        .update_inventory(UpdateInventoryRequest {
            product_id: product.into(),
            quantity,
            operation: "set".into(),
            ..Default::default()
        })
        .await
        .expect("set stock")
        .into_inner()
}

async fn check(client: &mut Client, product: &str, required: i32) -> pb::CheckInventoryResponse {
    client
        .check_inventory(CheckInventoryRequest {
            product_id: product.into(),
            required_quantity: required,
        })
        .await
        .expect("check")
        .into_inner()
}

fn reserve_request(product: &str, order: &str, quantity: i32) -> ReserveInventoryRequest {
    ReserveInventoryRequest {
        product_id: product.into(),
        quantity,
        order_id: order.into(),
        reservation_timeout: 0,
    }
}

async fn check_inventory_reports_stock_and_availability(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;

    let missing = client
        .check_inventory(CheckInventoryRequest {
            product_id: "product-123".into(),
            required_quantity: 0,
        })
        .await
        .expect_err("unknown product");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(reason(&missing), "PRODUCT_NOT_FOUND");
    assert!(missing.message().contains("product-123"));

    set_stock(&mut client, "product-123", 10).await;
    client
        .reserve_inventory(reserve_request("product-123", "order-1", 4))
        .await
        .expect("reserve");
    let stock = check(&mut client, "product-123", 6).await;
    assert!(stock.available);
    assert_eq!(stock.current_quantity, 10);
    assert_eq!(stock.reserved_quantity, 4);
    assert_eq!(stock.available_quantity, 6);
    assert_eq!(stock.product_id, "product-123");
    assert!(stock.updated_at.is_some());
    assert!(!check(&mut client, "product-123", 7).await.available);
    // Omitted required quantity means 1.
    assert!(check(&mut client, "product-123", 0).await.available);
}

async fn reserve_inventory_holds_stock_and_reports_what_remains(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    set_stock(&mut client, "product-456", 10).await;

    let before = chrono::Utc::now().timestamp();
    let reserved = client
        .reserve_inventory(reserve_request("product-456", "order-123", 2))
        .await
        .expect("reserve")
        .into_inner();
    assert!(!reserved.reservation_id.is_empty());
    assert_eq!(reserved.available_quantity, 8);
    assert_eq!(reserved.reserved_quantity, 2);
    assert_eq!(reserved.current_quantity, 10);
    let expires = reserved.expires_at.expect("expires_at").seconds;
    assert!(
        (before + 299..=before + 301).contains(&expires),
        "default 5m timeout"
    );
    let reservation = reserved.reservation.expect("reservation");
    assert_eq!(reservation.reservation_id, reserved.reservation_id);
    assert_eq!(reservation.status(), pb::ReservationStatus::Active);
    assert_eq!(reservation.held_quantity, 2);

    let custom = client
        .reserve_inventory(ReserveInventoryRequest {
            reservation_timeout: 30,
            ..reserve_request("product-456", "order-124", 1)
        })
        .await
        .expect("reserve with timeout")
        .into_inner();
    let reservation = custom.reservation.expect("reservation");
    let lifetime = reservation.expires_at.expect("expires").seconds
        - reservation.created_at.expect("created").seconds;
    assert!((29..=31).contains(&lifetime), "{lifetime}");
}

async fn insufficient_stock_is_failed_precondition_with_details_and_changes_nothing(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    set_stock(&mut client, "p", 3).await;

    let status = client
        .reserve_inventory(reserve_request("p", "o", 5))
        .await
        .expect_err("not enough");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("requested 5, available 3"),
        "{}",
        status.message()
    );
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "INSUFFICIENT_STOCK");
    assert_eq!(info.metadata["requested"], "5");
    assert_eq!(info.metadata["available"], "3");

    let stock = check(&mut client, "p", 1).await;
    assert_eq!((stock.current_quantity, stock.reserved_quantity), (3, 0));
    let history = client
        .get_inventory_history(GetInventoryHistoryRequest {
            product_id: "p".into(),
            ..Default::default()
        })
        .await
        .expect("history")
        .into_inner();
    assert_eq!(history.entries.len(), 1, "only the set");
}

async fn retried_reservations_are_idempotent_and_conflicts_are_already_exists(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    set_stock(&mut client, "p", 10).await;

    let first = client
        .reserve_inventory(reserve_request("p", "o", 2))
        .await
        .expect("first")
        .into_inner();
    let retry = client
        .reserve_inventory(reserve_request("p", "o", 2))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retry.reservation_id, first.reservation_id);
    assert_eq!(retry.expires_at, first.expires_at);
    assert_eq!(check(&mut client, "p", 1).await.reserved_quantity, 2);

    let conflict = client
        .reserve_inventory(reserve_request("p", "o", 3))
        .await
        .expect_err("other quantity");
    assert_eq!(conflict.code(), Code::AlreadyExists);
    assert_eq!(reason(&conflict), "RESERVATION_CONFLICT");
    assert_eq!(check(&mut client, "p", 1).await.reserved_quantity, 2);
}

async fn release_inventory_partial_full_repeated_and_unknown(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    set_stock(&mut client, "p", 10).await;
    client
        .reserve_inventory(reserve_request("p", "o", 5))
        .await
        .expect("reserve");
    let release = |quantity| ReleaseInventoryRequest {
        product_id: "p".into(),
        quantity,
        order_id: "o".into(),
        ..Default::default()
    };

    let part = client
        .release_inventory(release(2))
        .await
        .expect("partial")
        .into_inner();
    assert_eq!(part.released_quantity, 2);
    assert_eq!(part.reserved_quantity, 3);
    assert_eq!(part.available_quantity, 7);
    assert_eq!(part.reservation.as_ref().map(|r| r.held_quantity), Some(3));

    let too_much = client
        .release_inventory(release(4))
        .await
        .expect_err("exceeds");
    assert_eq!(too_much.code(), Code::FailedPrecondition);
    assert_eq!(reason(&too_much), "RELEASE_EXCEEDS_HELD");

    let rest = client
        .release_inventory(release(0))
        .await
        .expect("all")
        .into_inner();
    assert_eq!(rest.released_quantity, 3);
    assert_eq!(rest.reserved_quantity, 0);
    let reservation = rest.reservation.expect("reservation");
    assert_eq!(reservation.status(), pb::ReservationStatus::Released);

    let again = client
        .release_inventory(release(0))
        .await
        .expect("again")
        .into_inner();
    assert_eq!(again.released_quantity, 0);
    assert_eq!(again.available_quantity, 10);

    let unknown = client
        .release_inventory(ReleaseInventoryRequest {
            order_id: "someone-else".into(),
            ..release(1)
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(reason(&unknown), "RESERVATION_NOT_FOUND");
}

async fn update_inventory_set_add_subtract_and_guards(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    let updater = client.clone();
    let update = |operation: &str, quantity| {
        let request = UpdateInventoryRequest {
            product_id: "p".into(),
            quantity,
            operation: operation.into(),
            ..Default::default()
        };
        let mut client = updater.clone();
        async move { client.update_inventory(request).await }
    };

    let created = update("set", 100).await.expect("set").into_inner();
    assert!(created.created);
    assert_eq!(
        (created.previous_quantity, created.current_quantity),
        (0, 100)
    );
    let added = update("add", 5).await.expect("add").into_inner();
    assert_eq!(
        (added.previous_quantity, added.current_quantity),
        (100, 105)
    );
    assert_eq!(added.quantity_change, 5);
    let taken = update("SUBTRACT", 15).await.expect("subtract").into_inner();
    assert_eq!(taken.current_quantity, 90);
    assert_eq!(taken.quantity_change, -15);

    client
        .reserve_inventory(reserve_request("p", "o", 80))
        .await
        .expect("reserve");
    let below = update("set", 79).await.expect_err("below reserved");
    assert_eq!(below.code(), Code::FailedPrecondition);
    assert_eq!(reason(&below), "STOCK_BELOW_RESERVED");
    let negative = update("subtract", 91).await.expect_err("negative");
    assert_eq!(negative.code(), Code::FailedPrecondition);
    let overflow = update("add", i32::MAX).await.expect_err("overflow");
    assert_eq!(overflow.code(), Code::InvalidArgument);
    assert!(overflow.message().starts_with("quantity:"));
    let unknown_op = update("multiply", 2).await.expect_err("unknown op");
    assert_eq!(unknown_op.code(), Code::InvalidArgument);
    assert!(unknown_op.message().starts_with("operation:"));

    let missing = client
        .update_inventory(UpdateInventoryRequest {
            product_id: "ghost".into(),
            quantity: 1,
            operation: "subtract".into(),
            ..Default::default()
        })
        .await
        .expect_err("subtract from nothing");
    assert_eq!(missing.code(), Code::NotFound);

    let stock = check(&mut client, "p", 1).await;
    assert_eq!((stock.current_quantity, stock.reserved_quantity), (90, 80));
}

async fn history_is_newest_first_paged_with_metadata(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    set_stock(&mut client, "p", 50).await;
    for i in 0..4 {
        client
            .reserve_inventory(reserve_request("p", &format!("o{i}"), 1))
            .await
            .expect("reserve");
    }
    client
        .release_inventory(ReleaseInventoryRequest {
            product_id: "p".into(),
            quantity: 0,
            order_id: "o0".into(),
            ..Default::default()
        })
        .await
        .expect("release");

    let first = client
        .get_inventory_history(GetInventoryHistoryRequest {
            product_id: "p".into(),
            page_size: 4,
            page_token: String::new(),
        })
        .await
        .expect("page 1")
        .into_inner();
    assert_eq!(first.entries.len(), 4);
    assert!(!first.next_page_token.is_empty());
    let newest = &first.entries[0];
    assert_eq!(newest.operation_type, "release");
    assert_eq!(newest.quantity_change, 1);
    assert_eq!(newest.order_id, "o0");
    assert!(newest.created_at.is_some());
    let metadata = newest.metadata.as_ref().expect("metadata");
    assert!(metadata.fields.contains_key("reservation_id"));
    assert_eq!(first.entries[1].operation_type, "reserve");
    assert_eq!(first.entries[1].quantity_change, -1);

    let second = client
        .get_inventory_history(GetInventoryHistoryRequest {
            product_id: "p".into(),
            page_size: 4,
            page_token: first.next_page_token.clone(),
        })
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(second.entries.len(), 2);
    assert!(second.next_page_token.is_empty());
    assert_eq!(second.entries[1].operation_type, "update");
    assert_eq!(second.entries[1].quantity_change, 50);

    let bad_token = client
        .get_inventory_history(GetInventoryHistoryRequest {
            product_id: "p".into(),
            page_size: 0,
            page_token: "forged".into(),
        })
        .await
        .expect_err("bad token");
    assert_eq!(bad_token.code(), Code::InvalidArgument);
    let missing = client
        .get_inventory_history(GetInventoryHistoryRequest {
            product_id: "ghost".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown product");
    assert_eq!(missing.code(), Code::NotFound);
}

async fn invalid_arguments_name_the_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    set_stock(&mut client, "p", 5).await;

    let long_id = "x".repeat(256);
    let cases: Vec<(tonic::Status, &str)> = vec![
        (
            client
                .reserve_inventory(reserve_request("", "o", 1))
                .await
                .expect_err("empty product"),
            "product_id",
        ),
        (
            client
                .reserve_inventory(reserve_request("p", &long_id, 1))
                .await
                .expect_err("long order"),
            "order_id",
        ),
        (
            client
                .reserve_inventory(reserve_request("p", "o", -2))
                .await
                .expect_err("negative"),
            "quantity",
        ),
        (
            client
                .reserve_inventory(ReserveInventoryRequest {
                    reservation_timeout: -1,
                    ..reserve_request("p", "o", 1)
                })
                .await
                .expect_err("negative timeout"),
            "reservation_timeout",
        ),
        (
            client
                .check_inventory(CheckInventoryRequest {
                    product_id: "p".into(),
                    required_quantity: -1,
                })
                .await
                .expect_err("negative required"),
            "required_quantity",
        ),
    ];
    for (status, field) in cases {
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(
            status.message().starts_with(&format!("{field}:")),
            "{}",
            status.message()
        );
        let details = status.get_error_details();
        let violations = &details.bad_request().expect("BadRequest").field_violations;
        assert_eq!(violations[0].field, field);
    }
    let stock = check(&mut client, "p", 1).await;
    assert_eq!((stock.current_quantity, stock.reserved_quantity), (5, 0));
}

async fn concurrent_reservations_never_oversell(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    set_stock(&mut client, "hot", 50).await;

    let attempts = 120;
    let mut tasks = Vec::new();
    for i in 0..attempts {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .reserve_inventory(reserve_request("hot", &format!("order-{i}"), 1))
                .await
                .map(|_| ())
                .map_err(|status| status.code())
        }));
    }
    let mut granted = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => granted += 1,
            Err(code) => assert_eq!(code, Code::FailedPrecondition),
        }
    }
    assert_eq!(granted, 50);
    let stock = check(&mut client, "hot", 1).await;
    assert_eq!((stock.current_quantity, stock.reserved_quantity), (50, 50));
    assert!(!stock.available);
}

/// A client retrying before its first attempt answered: every attempt gets
/// the one reservation, and the stock is held once. On PostgreSQL the losers
/// hit the unique index and answer from the winner's row.
async fn concurrent_retries_of_one_reservation_hold_stock_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    set_stock(&mut client, "p", 10).await;

    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .reserve_inventory(reserve_request("p", "the-order", 3))
                .await
                .map(|response| response.into_inner().reservation_id)
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("task").expect("every attempt succeeds"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one reservation: {ids:?}");
    let stock = check(&mut client, "p", 1).await;
    assert_eq!((stock.current_quantity, stock.reserved_quantity), (10, 3));
    let history = client
        .get_inventory_history(GetInventoryHistoryRequest {
            product_id: "p".into(),
            ..Default::default()
        })
        .await
        .expect("history")
        .into_inner();
    assert_eq!(history.entries.len(), 2, "the set and one reserve");
}

async fn expired_holds_never_block_a_buyer(backend: Backend) {
    // The sweeper runs once a minute: too late for this buyer.
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    set_stock(&mut client, "p", 5).await;
    client
        .reserve_inventory(ReserveInventoryRequest {
            reservation_timeout: 1,
            ..reserve_request("p", "stale", 5)
        })
        .await
        .expect("hold everything for a second");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let fresh = client
        .reserve_inventory(reserve_request("p", "fresh", 3))
        .await
        .expect("the expired hold gives way")
        .into_inner();
    assert_eq!((fresh.reserved_quantity, fresh.available_quantity), (3, 2));
    let stale = client
        .release_inventory(ReleaseInventoryRequest {
            product_id: "p".into(),
            quantity: 0,
            order_id: "stale".into(),
            ..Default::default()
        })
        .await
        .expect("releasing an expired reservation is OK")
        .into_inner();
    assert_eq!(stale.released_quantity, 0);
    assert_eq!(
        stale.reservation.map(|r| r.status()),
        Some(pb::ReservationStatus::Expired)
    );
    let history = client
        .get_inventory_history(GetInventoryHistoryRequest {
            product_id: "p".into(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .expect("history")
        .into_inner();
    let kinds: Vec<(&str, i32)> = history
        .entries
        .iter()
        .map(|e| (e.operation_type.as_str(), e.quantity_change))
        .collect();
    assert_eq!(kinds, [("reserve", -3), ("release", 5)]);
}

fn commit_request(product: &str, order: &str, quantity: i32) -> CommitReservationRequest {
    CommitReservationRequest {
        product_id: product.into(),
        quantity,
        order_id: order.into(),
        ..Default::default()
    }
}

async fn commit_reservation_full_partial_repeated_and_unknown(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    set_stock(&mut client, "p", 10).await;
    client
        .reserve_inventory(reserve_request("p", "o", 5))
        .await
        .expect("reserve");

    let part = client
        .commit_reservation(commit_request("p", "o", 2))
        .await
        .expect("partial")
        .into_inner();
    assert_eq!(part.committed_quantity, 2);
    assert_eq!(
        (
            part.current_quantity,
            part.reserved_quantity,
            part.available_quantity
        ),
        (8, 3, 5)
    );
    let reservation = part.reservation.expect("reservation");
    assert_eq!(reservation.status(), pb::ReservationStatus::Active);
    assert_eq!(
        (reservation.held_quantity, reservation.committed_quantity),
        (3, 2)
    );

    let too_much = client
        .commit_reservation(commit_request("p", "o", 4))
        .await
        .expect_err("exceeds");
    assert_eq!(too_much.code(), Code::FailedPrecondition);
    assert_eq!(reason(&too_much), "COMMIT_EXCEEDS_HELD");

    let rest = client
        .commit_reservation(commit_request("p", "o", 0))
        .await
        .expect("the rest")
        .into_inner();
    assert_eq!(rest.committed_quantity, 3);
    assert_eq!((rest.current_quantity, rest.reserved_quantity), (5, 0));
    let reservation = rest.reservation.expect("reservation");
    assert_eq!(reservation.status(), pb::ReservationStatus::Committed);
    assert_eq!(
        (reservation.held_quantity, reservation.committed_quantity),
        (0, 5)
    );

    let again = client
        .commit_reservation(commit_request("p", "o", 0))
        .await
        .expect("repeated commit is OK")
        .into_inner();
    assert_eq!(again.committed_quantity, 0);
    assert_eq!((again.current_quantity, again.reserved_quantity), (5, 0));

    let stock = check(&mut client, "p", 1).await;
    assert_eq!((stock.current_quantity, stock.reserved_quantity), (5, 0));

    let history = client
        .get_inventory_history(GetInventoryHistoryRequest {
            product_id: "p".into(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .expect("history")
        .into_inner();
    let newest = &history.entries[0];
    assert_eq!(newest.operation_type, "commit");
    assert_eq!(newest.quantity_change, 0);
    assert_eq!(newest.order_id, "o");
    let metadata = newest.metadata.as_ref().expect("metadata");
    let field = |name: &str| metadata.fields.get(name).and_then(|v| v.kind.clone());
    assert_eq!(
        field("reason"),
        Some(pbjson_types::value::Kind::StringValue("committed".into()))
    );
    assert_eq!(
        field("quantity"),
        Some(pbjson_types::value::Kind::NumberValue(3.0))
    );

    let unknown = client
        .commit_reservation(commit_request("p", "someone-else", 0))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(reason(&unknown), "RESERVATION_NOT_FOUND");

    let invalid = client
        .commit_reservation(commit_request("p", "o", -1))
        .await
        .expect_err("negative");
    assert_eq!(invalid.code(), Code::InvalidArgument);
}

async fn committing_a_released_or_expired_reservation_is_failed_precondition(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    set_stock(&mut client, "p", 10).await;
    client
        .reserve_inventory(reserve_request("p", "released", 3))
        .await
        .expect("reserve");
    client
        .release_inventory(ReleaseInventoryRequest {
            product_id: "p".into(),
            quantity: 0,
            order_id: "released".into(),
            ..Default::default()
        })
        .await
        .expect("release");
    let refused = client
        .commit_reservation(commit_request("p", "released", 0))
        .await
        .expect_err("released");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "RESERVATION_NOT_ACTIVE");
    let info = refused.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.metadata["status"], "released");

    client
        .reserve_inventory(ReserveInventoryRequest {
            reservation_timeout: 1,
            ..reserve_request("p", "expired", 2)
        })
        .await
        .expect("short reservation");
    // Wait out the timeout; a reservation of all that is available expires
    // the stale one in its own transaction.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    client
        .reserve_inventory(reserve_request("p", "buyer", 10))
        .await
        .expect("the expired hold gives way");
    let refused = client
        .commit_reservation(commit_request("p", "expired", 0))
        .await
        .expect_err("expired");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "RESERVATION_NOT_ACTIVE");
    let info = refused.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.metadata["status"], "expired");

    let stock = check(&mut client, "p", 1).await;
    assert_eq!((stock.current_quantity, stock.reserved_quantity), (10, 10));
}

async fn release_order_releases_every_product_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    for product in ["b", "a", "c"] {
        set_stock(&mut client, product, 10).await;
    }
    for (product, quantity) in [("b", 2), ("a", 3), ("c", 4)] {
        client
            .reserve_inventory(reserve_request(product, "o", quantity))
            .await
            .expect("reserve");
    }
    client
        .reserve_inventory(reserve_request("a", "other", 1))
        .await
        .expect("another order");
    client
        .commit_reservation(commit_request("c", "o", 0))
        .await
        .expect("commit c");
    client
        .commit_reservation(commit_request("b", "o", 1))
        .await
        .expect("commit part of b");

    let released = client
        .release_order(ReleaseOrderRequest {
            order_id: "o".into(),
            ..Default::default()
        })
        .await
        .expect("release order")
        .into_inner();
    let items: Vec<(String, i32, i32)> = released
        .released
        .iter()
        .map(|r| {
            (
                r.product_id.clone(),
                r.released_quantity,
                r.reserved_quantity,
            )
        })
        .collect();
    assert_eq!(items, vec![("a".into(), 3, 1), ("b".into(), 1, 0)]);
    assert!(released.released.iter().all(|r| {
        r.reservation.as_ref().map(pb::Reservation::status) == Some(pb::ReservationStatus::Released)
    }));
    assert_eq!(check(&mut client, "a", 1).await.reserved_quantity, 1);
    assert_eq!(check(&mut client, "b", 1).await.current_quantity, 9);
    assert_eq!(check(&mut client, "c", 1).await.current_quantity, 6);

    let again = client
        .release_order(ReleaseOrderRequest {
            order_id: "o".into(),
            ..Default::default()
        })
        .await
        .expect("idempotent")
        .into_inner();
    assert!(again.released.is_empty());

    let unknown = client
        .release_order(ReleaseOrderRequest {
            order_id: "never-seen".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown order");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(reason(&unknown), "ORDER_NOT_FOUND");

    let invalid = client
        .release_order(ReleaseOrderRequest {
            order_id: String::new(),
            ..Default::default()
        })
        .await
        .expect_err("empty order");
    assert_eq!(invalid.code(), Code::InvalidArgument);
}

async fn list_reservations_of_an_order_by_product(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    for product in ["z", "m", "a"] {
        set_stock(&mut client, product, 10).await;
        client
            .reserve_inventory(reserve_request(product, "o", 2))
            .await
            .expect("reserve");
    }
    client
        .reserve_inventory(reserve_request("a", "other", 1))
        .await
        .expect("another order");
    client
        .commit_reservation(commit_request("m", "o", 0))
        .await
        .expect("commit");
    client
        .release_inventory(ReleaseInventoryRequest {
            product_id: "z".into(),
            quantity: 0,
            order_id: "o".into(),
            ..Default::default()
        })
        .await
        .expect("release");

    let listed = client
        .list_reservations(ListReservationsRequest {
            order_id: "o".into(),
        })
        .await
        .expect("list")
        .into_inner()
        .reservations;
    let rows: Vec<(String, pb::ReservationStatus, i32)> = listed
        .iter()
        .map(|r| (r.product_id.clone(), r.status(), r.held_quantity))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("a".into(), pb::ReservationStatus::Active, 2),
            ("m".into(), pb::ReservationStatus::Committed, 0),
            ("z".into(), pb::ReservationStatus::Released, 0),
        ]
    );
    assert!(listed.iter().all(|r| r.order_id == "o"));

    let unknown = client
        .list_reservations(ListReservationsRequest {
            order_id: "never-seen".into(),
        })
        .await
        .expect_err("unknown order");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(reason(&unknown), "ORDER_NOT_FOUND");
}

async fn list_inventory_pages_by_product_id(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    let empty = client
        .list_inventory(ListInventoryRequest::default())
        .await
        .expect("empty list")
        .into_inner();
    assert!(empty.items.is_empty() && empty.next_page_token.is_empty());

    let products: Vec<String> = (0..25).map(|i| format!("p-{i:02}")).collect();
    for product in products.iter().rev() {
        set_stock(&mut client, product, 10).await;
    }
    client
        .reserve_inventory(reserve_request("p-03", "o", 4))
        .await
        .expect("reserve");

    let first = client
        .list_inventory(ListInventoryRequest::default())
        .await
        .expect("default page")
        .into_inner();
    assert_eq!(first.items.len(), 20, "default page size");
    assert!(!first.next_page_token.is_empty());
    let p03 = &first.items[3];
    assert_eq!(
        (
            p03.product_id.as_str(),
            p03.current_quantity,
            p03.reserved_quantity,
            p03.available_quantity
        ),
        ("p-03", 10, 4, 6)
    );
    assert!(p03.updated_at.is_some());

    let mut token = String::new();
    let mut seen = Vec::new();
    loop {
        let page = client
            .list_inventory(ListInventoryRequest {
                page_size: 7,
                page_token: token.clone(),
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.items.len() <= 7);
        seen.extend(page.items.into_iter().map(|s| s.product_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, products);

    let bad = client
        .list_inventory(ListInventoryRequest {
            page_size: 0,
            page_token: "not-a-token".into(),
        })
        .await
        .expect_err("forged token");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let negative = client
        .list_inventory(ListInventoryRequest {
            page_size: -1,
            page_token: String::new(),
        })
        .await
        .expect_err("negative page size");
    assert_eq!(negative.code(), Code::InvalidArgument);
}
