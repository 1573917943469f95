//! REST/JSON and Connect over real sockets: the specification's examples as written,
//! every route, every error case with its status and JSON body, and the
//! OpenAPI document the responses validate against.

mod common;

use common::{Backend, TestServer, backend_tests};
use prost::Message as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

backend_tests!(
    every_rest_route_answers_json,
    reserve_order_is_all_or_nothing_and_safe_to_retry,
    expected_version_makes_an_update_compare_and_set,
    a_request_id_replays_the_first_release,
    the_readme_order_examples_work_with_curl,
);

/// A server with the specification's two example products, as `cargo run` has them.
async fn seeded_server() -> TestServer {
    seeded_server_on(Backend::Sqlite).await
}

/// [`seeded_server`] on `backend`.
async fn seeded_server_on(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |config| {
        config.inventory.initial_stock = [
            ("product-123".to_owned(), 100),
            ("product-456".to_owned(), 100),
        ]
        .into();
    })
    .await
}

async fn send(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, server.http_url(path));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json)
}

#[tokio::test]
async fn the_seed_http_examples_work_as_written() {
    let server = seeded_server().await;
    let (status, body) = send(&server, Method::GET, "/api/v1/inventory/product-123", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["available"], true);
    assert_eq!(body["current_quantity"], 100);
    assert_eq!(body["reserved_quantity"], 0, "zero values are written");

    // The specification's request bodies, byte for byte.
    let reserve = "{\n  \"product_id\": \"product-456\",\n  \"quantity\": 2,\n  \"order_id\": \"order-123\",\n  \"reservation_timeout\": 300\n}";
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/reserve",
        Some(reserve),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["available_quantity"], 98);
    assert!(
        !body["reservation_id"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );

    let release = "{\n  \"product_id\": \"product-456\", \n  \"quantity\": 2,\n  \"order_id\": \"order-123\"\n}";
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/release",
        Some(release),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["released_quantity"], 2);

    // The specification annotates its update body with a comment; the JSON itself:
    let update = "{\n  \"quantity\": 100,\n  \"operation\": \"set\"\n}";
    let (status, body) = send(
        &server,
        Method::PUT,
        "/api/v1/inventory/product-456",
        Some(update),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["current_quantity"], 100);

    let health = reqwest::get(server.http_url("/health"))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn the_seed_curl_commands_work_verbatim() {
    let server = seeded_server().await;
    let host = server.http_addr.to_string();
    // The specification's "API 测试" commands, with only the port made ephemeral.
    let commands = [
        "curl http://localhost:8083/api/v1/inventory/product-123",
        "curl -X POST http://localhost:8083/api/v1/inventory/reserve \\\n  -H \"Content-Type: application/json\" \\\n  -d '{\"product_id\":\"product-123\",\"quantity\":2,\"order_id\":\"order-456\"}'",
    ];
    for command in commands {
        let command = command.replace("localhost:8083", &host);
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{command} --silent --show-error --fail-with-body"))
            .output()
            .await
            .expect("curl runs (install curl to run this test)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{command}: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let body: Value = serde_json::from_str(&stdout).expect("JSON answer");
        assert!(body.get("message").is_some(), "{body}");
    }
    let (_, body) = send(&server, Method::GET, "/api/v1/inventory/product-123", None).await;
    assert_eq!(body["reserved_quantity"], 2);
}

async fn every_rest_route_answers_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = send(
        &server,
        Method::PUT,
        "/api/v1/inventory/p%201",
        Some(r#"{"quantity": 10, "operation": "SET"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["product_id"], "p 1",
        "path variables are percent-decoded"
    );

    let (status, body) = send(
        &server,
        Method::GET,
        "/api/v1/inventory/p%201?required_quantity=11",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["available"], false);
    assert_eq!(body["available_quantity"], 10);

    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/reserve",
        Some(r#"{"productId": "p 1", "quantity": 4, "orderId": "o1"}"#),
    )
    .await;
    assert_eq!(status, 200, "lowerCamelCase input: {body}");
    assert_eq!(body["reservation"]["status"], "RESERVATION_STATUS_ACTIVE");

    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/release",
        Some(r#"{"product_id": "p 1", "order_id": "o1"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["released_quantity"], 4);

    let (status, body) = send(
        &server,
        Method::GET,
        "/api/v1/inventory/p%201/history?page_size=2",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["entries"][0]["operation_type"], "release");
    assert_eq!(body["entries"][0]["metadata"]["quantity"], 4);
    let token = body["next_page_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, body) = send(
        &server,
        Method::GET,
        &format!("/api/v1/inventory/p%201/history?page_size=2&page_token={token}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"][0]["operation_type"], "update");
    assert_eq!(body["next_page_token"], "");

    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/reserve",
        Some(r#"{"product_id": "p 1", "quantity": 3, "order_id": "o 2"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/commit",
        Some(r#"{"productId": "p 1", "orderId": "o 2", "quantity": 1}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["committed_quantity"], 1);
    assert_eq!(body["current_quantity"], 9);
    assert_eq!(body["reservation"]["committed_quantity"], 1);
    assert_eq!(body["reservation"]["status"], "RESERVATION_STATUS_ACTIVE");

    let (status, body) = send(
        &server,
        Method::GET,
        "/api/v1/orders/o%202/reservations",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservations"][0]["held_quantity"], 2);

    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/orders/o%202/release",
        Some("{}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["released"][0]["product_id"], "p 1");
    assert_eq!(body["released"][0]["released_quantity"], 2);
    assert_eq!(
        body["released"][0]["reservation"]["status"],
        "RESERVATION_STATUS_RELEASED"
    );
    let (status, body) = send(&server, Method::POST, "/api/v1/orders/o%202/release", None).await;
    assert_eq!(status, 200, "no body at all: {body}");
    assert_eq!(body["released"], json!([]));
    let (status, body) = send(&server, Method::POST, "/api/v1/orders/nobody/release", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["details"][0]["reason"], "ORDER_NOT_FOUND");

    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/commit",
        Some(r#"{"product_id": "p 1", "order_id": "o 2"}"#),
    )
    .await;
    assert_eq!(status, 409, "commit of a released reservation: {body}");
    assert_eq!(body["details"][0]["reason"], "RESERVATION_NOT_ACTIVE");

    send(
        &server,
        Method::PUT,
        "/api/v1/inventory/p0",
        Some(r#"{"quantity": 1, "operation": "set"}"#),
    )
    .await;
    let (status, body) = send(&server, Method::GET, "/api/v1/inventory?page_size=1", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["items"][0]["product_id"], "p 1",
        "' ' sorts before '0'"
    );
    assert_eq!(body["items"][0]["current_quantity"], 9);
    let token = body["next_page_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, body) = send(
        &server,
        Method::GET,
        &format!("/api/v1/inventory?page_size=1&page_token={token}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["product_id"], "p0");
    assert_eq!(body["items"][0]["available_quantity"], 1);
    assert_eq!(body["next_page_token"], "");
}

/// The detail of a REST error body whose `@type` is `google.rpc.<name>`.
fn detail<'a>(body: &'a Value, name: &str) -> &'a Value {
    let type_url = format!("type.googleapis.com/google.rpc.{name}");
    body["details"]
        .as_array()
        .and_then(|details| details.iter().find(|d| d["@type"] == type_url.as_str()))
        .unwrap_or_else(|| panic!("no {name} detail in {body}"))
}

/// A product's stock through `GET /api/v1/inventory/{product_id}`:
/// (current, reserved, available, version as the JSON string it is).
async fn stock_of(server: &TestServer, product_id: &str) -> (i64, i64, i64, String) {
    let (status, body) = send(
        server,
        Method::GET,
        &format!("/api/v1/inventory/{product_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{product_id}: {body}");
    let number = |field: &str| {
        body[field]
            .as_i64()
            .unwrap_or_else(|| panic!("{field}: {body}"))
    };
    let version = body["version"]
        .as_str()
        .unwrap_or_else(|| panic!("version is an int64, a JSON string: {body}"))
        .to_owned();
    (
        number("current_quantity"),
        number("reserved_quantity"),
        number("available_quantity"),
        version,
    )
}

/// Sets a product's stock on hand (creating it).
async fn set_stock(server: &TestServer, product_id: &str, quantity: i32) {
    let (status, body) = send(
        server,
        Method::PUT,
        &format!("/api/v1/inventory/{product_id}"),
        Some(&json!({"quantity": quantity, "operation": "set"}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{product_id}: {body}");
}

async fn reserve_order_is_all_or_nothing_and_safe_to_retry(backend: Backend) {
    let server = TestServer::start(backend).await;
    set_stock(&server, "a", 10).await;
    set_stock(&server, "b", 5).await;
    set_stock(&server, "c", 1).await;

    // Product "a" listed twice: 2 + 3 are held as one reservation of 5.
    let order = r#"{"items": [{"product_id": "a", "quantity": 2},
                              {"product_id": "b", "quantity": 1},
                              {"product_id": "a", "quantity": 3}],
                    "reservation_timeout": 300}"#;
    let (status, first) = send(
        &server,
        Method::POST,
        "/api/v1/orders/o1/reserve",
        Some(order),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let items = first["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "one entry per product: {first}");
    let per_product: Vec<Value> = items
        .iter()
        .map(|item| {
            json!([
                item["product_id"],
                item["reservation"]["quantity"],
                item["reservation"]["held_quantity"],
                item["current_quantity"],
                item["reserved_quantity"],
                item["available_quantity"],
                item["created"],
            ])
        })
        .collect();
    assert_eq!(
        per_product,
        [
            json!(["a", 5, 5, 10, 5, 5, true]),
            json!(["b", 1, 1, 5, 1, 4, true])
        ],
        "{first}"
    );
    for item in items {
        assert_eq!(item["reservation"]["order_id"], "o1");
        assert_eq!(item["reservation"]["product_id"], item["product_id"]);
        assert_eq!(item["reservation"]["status"], "RESERVATION_STATUS_ACTIVE");
    }
    assert_eq!(first["message"], "reserved 2 product(s) for order o1");
    let ids = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                item["reservation"]["reservation_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    let first_ids = ids(&first);
    assert!(first_ids.iter().all(|id| !id.is_empty()), "{first}");
    assert_ne!(first_ids[0], first_ids[1]);
    assert_eq!(stock_of(&server, "a").await.1, 5);

    // A retry with the same totals, listed differently, holds nothing more.
    let (status, retry) = send(
        &server,
        Method::POST,
        "/api/v1/orders/o1/reserve",
        Some(r#"{"items": [{"product_id": "b", "quantity": 1}, {"product_id": "a", "quantity": 5}]}"#),
    )
    .await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(ids(&retry), first_ids, "the same reservations: {retry}");
    assert_eq!(retry["items"][0]["created"], false);
    assert_eq!(retry["items"][1]["created"], false);
    assert_eq!(retry["items"][0]["reserved_quantity"], 5);
    assert!(
        retry["message"]
            .as_str()
            .unwrap_or_default()
            .contains("2 reserved by an earlier request"),
        "{retry}"
    );
    assert_eq!(stock_of(&server, "a").await.1, 5);
    assert_eq!(stock_of(&server, "b").await.1, 1);

    // The same order with another quantity is a conflict, not a second hold.
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/orders/o1/reserve",
        Some(r#"{"items": [{"product_id": "a", "quantity": 4}, {"product_id": "b", "quantity": 1}]}"#),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], 6, "ALREADY_EXISTS: {body}");
    let info = detail(&body, "ErrorInfo");
    assert_eq!(info["reason"], "RESERVATION_CONFLICT");
    assert_eq!(info["metadata"]["product_ids"], "a");
    assert_eq!(stock_of(&server, "a").await.1, 5);

    // Two products short (a: 3 + 3 of 5 available, b: 5 of 4) and one not
    // (c): nothing is held, and the error names both short ones.
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/orders/o2/reserve",
        Some(
            r#"{"items": [{"product_id": "a", "quantity": 3}, {"product_id": "b", "quantity": 5},
                          {"product_id": "c", "quantity": 1}, {"product_id": "a", "quantity": 3}]}"#,
        ),
    )
    .await;
    assert_eq!(status, 409, "FAILED_PRECONDITION is 409 Conflict: {body}");
    assert_eq!(body["code"], 9, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(r#"product "a" requested 6, available 5"#)
            && message.contains(r#"product "b" requested 5, available 4"#)
            && !message.contains(r#""c""#),
        "{message}"
    );
    let info = detail(&body, "ErrorInfo");
    assert_eq!(info["reason"], "INSUFFICIENT_STOCK");
    assert_eq!(info["domain"], "inventory-service");
    assert_eq!(info["metadata"]["product_ids"], "a,b");
    assert_eq!(info["metadata"]["order_id"], "o2");
    let failure = detail(&body, "PreconditionFailure");
    assert_eq!(
        failure["violations"],
        json!([
            {"type": "INSUFFICIENT_STOCK", "subject": "a", "description": "requested 6, available 5"},
            {"type": "INSUFFICIENT_STOCK", "subject": "b", "description": "requested 5, available 4"},
        ]),
        "{body}"
    );
    assert_eq!(stock_of(&server, "a").await, (10, 5, 5, "1".to_owned()));
    assert_eq!(stock_of(&server, "b").await, (5, 1, 4, "1".to_owned()));
    assert_eq!(stock_of(&server, "c").await, (1, 0, 1, "1".to_owned()));
    let (status, body) = send(&server, Method::GET, "/api/v1/orders/o2/reservations", None).await;
    assert_eq!(status, 404, "nothing was reserved for o2: {body}");
    assert_eq!(detail(&body, "ErrorInfo")["reason"], "ORDER_NOT_FOUND");

    // Unknown products are NOT_FOUND, every one named, and nothing is held.
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/orders/o3/reserve",
        Some(
            r#"{"items": [{"product_id": "zz", "quantity": 1}, {"product_id": "c", "quantity": 1},
                          {"product_id": "yy", "quantity": 1}]}"#,
        ),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], 5);
    let info = detail(&body, "ErrorInfo");
    assert_eq!(info["reason"], "PRODUCT_NOT_FOUND");
    assert_eq!(info["metadata"]["product_ids"], "yy,zz");
    assert_eq!(stock_of(&server, "c").await.1, 0);

    // What was reserved is what the order lists.
    let (status, body) = send(&server, Method::GET, "/api/v1/orders/o1/reservations", None).await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<Value> = body["reservations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| json!([r["reservation_id"], r["product_id"], r["held_quantity"]]))
        .collect();
    assert_eq!(
        listed,
        [json!([first_ids[0], "a", 5]), json!([first_ids[1], "b", 1])]
    );
}

async fn expected_version_makes_an_update_compare_and_set(backend: Backend) {
    let server = TestServer::start(backend).await;
    let put = |body: Value| {
        let server = &server;
        async move {
            send(
                server,
                Method::PUT,
                "/api/v1/inventory/p",
                Some(&body.to_string()),
            )
            .await
        }
    };

    // expected_version 0: create only if absent.
    let (status, body) =
        put(json!({"quantity": 10, "operation": "set", "expected_version": "0"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created"], true);
    assert_eq!(body["version"], "1", "int64 is a JSON string: {body}");
    let (status, body) =
        put(json!({"quantity": 99, "operation": "set", "expected_version": "0"})).await;
    assert_eq!(status, 409, "it exists now: {body}");
    assert_eq!(body["code"], 10, "ABORTED: {body}");
    assert_eq!(
        detail(&body, "ErrorInfo")["metadata"]["current_version"],
        "1"
    );

    // The version read is the one to expect; the number form is accepted too.
    assert_eq!(stock_of(&server, "p").await, (10, 0, 10, "1".to_owned()));
    let (status, body) =
        put(json!({"quantity": 5, "operation": "add", "expected_version": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["current_quantity"], 15);
    assert_eq!(body["version"], "2");

    // A reservation does not change the stock on hand, so not the version.
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/reserve",
        Some(r#"{"product_id": "p", "quantity": 3, "order_id": "o1"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stock_of(&server, "p").await, (15, 3, 12, "2".to_owned()));

    // A stale version is refused and changes nothing.
    let (status, body) =
        put(json!({"quantity": 1, "operation": "set", "expected_version": "1"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], 10, "{body}");
    let info = detail(&body, "ErrorInfo");
    assert_eq!(info["reason"], "VERSION_MISMATCH");
    assert_eq!(info["metadata"]["current_version"], "2");
    assert_eq!(info["metadata"]["expected_version"], "1");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("version 2, not the expected 1"),
        "{body}"
    );
    assert_eq!(stock_of(&server, "p").await, (15, 3, 12, "2".to_owned()));

    // A commit changes the stock on hand: the version moves, here and in the list.
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/commit",
        Some(r#"{"product_id": "p", "quantity": 1, "order_id": "o1"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stock_of(&server, "p").await, (14, 2, 12, "3".to_owned()));
    let (_, list) = send(&server, Method::GET, "/api/v1/inventory", None).await;
    assert_eq!(list["items"][0]["product_id"], "p");
    assert_eq!(list["items"][0]["version"], "3", "{list}");

    // A keyed update retried is applied once, with its first answer.
    let keyed =
        json!({"quantity": 4, "operation": "add", "expected_version": "3", "request_id": "u-1"});
    let (status, first) = put(keyed.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = put(keyed).await;
    assert_eq!(
        status, 200,
        "the retry matches the first, not the version now: {again}"
    );
    assert_eq!(
        (&again["current_quantity"], &again["version"]),
        (&json!(18), &json!("4"))
    );
    assert!(
        again["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("; replayed the first result of this request_id"),
        "{again}"
    );
    assert!(
        !first["message"]
            .as_str()
            .unwrap_or_default()
            .contains("replayed")
    );
    assert_eq!(stock_of(&server, "p").await, (18, 2, 16, "4".to_owned()));

    // A product that does not exist is at version 0, and stays absent.
    let (status, body) = send(
        &server,
        Method::PUT,
        "/api/v1/inventory/ghost",
        Some(r#"{"quantity": 1, "operation": "set", "expected_version": "5"}"#),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        detail(&body, "ErrorInfo")["metadata"]["current_version"],
        "0"
    );
    let (status, _) = send(&server, Method::GET, "/api/v1/inventory/ghost", None).await;
    assert_eq!(status, 404);
}

async fn a_request_id_replays_the_first_release(backend: Backend) {
    let server = TestServer::start(backend).await;
    set_stock(&server, "p", 10).await;
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/reserve",
        Some(r#"{"product_id": "p", "quantity": 6, "order_id": "o1"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let release = r#"{"product_id": "p", "order_id": "o1", "quantity": 2, "request_id": "rel-1"}"#;
    let (status, first) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/release",
        Some(release),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["released_quantity"], 2);
    assert_eq!(first["reservation"]["held_quantity"], 4);
    assert!(
        !first["message"]
            .as_str()
            .unwrap_or_default()
            .contains("replayed")
    );
    let (status, again) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/release",
        Some(release),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (&again["released_quantity"], &again["reserved_quantity"]),
        (&json!(2), &json!(4)),
        "the first answer: {again}"
    );
    assert_eq!(again["reservation"], first["reservation"]);
    assert!(
        again["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("; replayed the first result of this request_id"),
        "{again}"
    );
    assert_eq!(
        stock_of(&server, "p").await.1,
        4,
        "released once, not twice"
    );

    // The same key for another quantity is refused, naming the difference.
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/release",
        Some(r#"{"product_id": "p", "order_id": "o1", "quantity": 3, "request_id": "rel-1"}"#),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], 6, "ALREADY_EXISTS: {body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("quantity: 2, now 3"),
        "{body}"
    );
    let info = detail(&body, "ErrorInfo");
    assert_eq!(info["reason"], "REQUEST_ID_REUSED");
    assert_eq!(info["metadata"]["fields"], "quantity");
    assert_eq!(info["metadata"]["request_id"], "rel-1");
    assert_eq!(stock_of(&server, "p").await.1, 4, "nothing released");

    // A key belongs to one request of one method.
    let (status, body) = send(
        &server,
        Method::PUT,
        "/api/v1/inventory/p",
        Some(r#"{"quantity": 1, "operation": "add", "request_id": "rel-1"}"#),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(detail(&body, "ErrorInfo")["metadata"]["fields"], "method");
    assert_eq!(stock_of(&server, "p").await.0, 10, "nothing added");

    // Without a key, the same release is a second release.
    let unkeyed = r#"{"product_id": "p", "order_id": "o1", "quantity": 2}"#;
    for held in [2, 0] {
        let (status, body) = send(
            &server,
            Method::POST,
            "/api/v1/inventory/release",
            Some(unkeyed),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["reservation"]["held_quantity"], held, "{body}");
    }
    assert_eq!(stock_of(&server, "p").await, (10, 0, 10, "1".to_owned()));
}

/// The README's ReserveOrder commands, with only the port made ephemeral.
const README_ORDER_COMMANDS: [&str; 2] = [
    "curl -X POST http://localhost:8083/api/v1/orders/order-42/reserve \\\n  -H \"Content-Type: application/json\" \\\n  -d '{\"items\":[{\"product_id\":\"product-123\",\"quantity\":2},{\"product_id\":\"product-456\",\"quantity\":1}],\"reservation_timeout\":300}'",
    "curl -X PUT http://localhost:8083/api/v1/inventory/product-123 \\\n  -H \"Content-Type: application/json\" \\\n  -d '{\"quantity\":10,\"operation\":\"add\",\"expected_version\":\"1\",\"request_id\":\"restock-7\"}'",
];

async fn the_readme_order_examples_work_with_curl(backend: Backend) {
    let server = seeded_server_on(backend).await;
    let host = server.http_addr.to_string();
    let mut answers = Vec::new();
    for command in README_ORDER_COMMANDS {
        let command = command.replace("localhost:8083", &host);
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{command} --silent --show-error --fail-with-body"))
            .output()
            .await
            .expect("curl runs (install curl to run this test)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{command}: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        answers.push(serde_json::from_str::<Value>(&stdout).expect("JSON answer"));
    }
    assert_eq!(answers[0]["items"][0]["product_id"], "product-123");
    assert_eq!(answers[0]["items"][0]["available_quantity"], 98);
    assert_eq!(answers[0]["items"][1]["available_quantity"], 99);
    assert_eq!(answers[1]["current_quantity"], 110);
    assert_eq!(answers[1]["version"], "2");
    assert_eq!(
        stock_of(&server, "product-123").await,
        (110, 2, 108, "2".to_owned())
    );

    // The README's refused order, and the answer it shows.
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/orders/order-43/reserve",
        Some(
            r#"{"items":[{"product_id":"product-123","quantity":500},{"product_id":"product-456","quantity":99},{"product_id":"product-456","quantity":1}]}"#,
        ),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(
        body,
        json!({"code": 9, "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "domain": "inventory-service",
             "metadata": {"order_id": "order-43", "product_ids": "product-123,product-456"},
             "reason": "INSUFFICIENT_STOCK"},
            {"@type": "type.googleapis.com/google.rpc.PreconditionFailure", "violations": [
                {"description": "requested 500, available 108", "subject": "product-123",
                 "type": "INSUFFICIENT_STOCK"},
                {"description": "requested 100, available 99", "subject": "product-456",
                 "type": "INSUFFICIENT_STOCK"}]}],
         "message": "insufficient stock for order \"order-43\": product \"product-123\" \
                     requested 500, available 108; product \"product-456\" requested 100, available 99"})
    );
    assert_eq!(
        stock_of(&server, "product-456").await,
        (100, 1, 99, "1".to_owned())
    );
}

/// A bad request: name, method, path, body, content type, HTTP status, gRPC code.
struct ErrorCase<'a>(&'a str, Method, &'a str, Option<&'a str>, &'a str, u16, i64);

#[tokio::test]
async fn every_error_has_its_status_and_json_body_and_changes_nothing() {
    let server = seeded_server().await;
    let client = reqwest::Client::new();
    // Over a 1 KiB limit. The server refuses a body without reading it, so a
    // client still writing megabytes could block: a small limit keeps the
    // whole body in the socket buffers.
    let big = format!(
        r#"{{"product_id":"product-123","quantity":1,"order_id":"{}"}}"#,
        "x".repeat(4096)
    );
    let cases = [
        ErrorCase(
            "malformed JSON",
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(r#"{"product_id": "product-123","#),
            "application/json",
            400,
            3,
        ),
        ErrorCase(
            "wrong JSON type",
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(r#"{"product_id": "product-123", "quantity": "two", "order_id": "o"}"#),
            "application/json",
            400,
            3,
        ),
        ErrorCase(
            "int32 overflow",
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(r#"{"product_id": "product-123", "quantity": 2147483648, "order_id": "o"}"#),
            "application/json",
            400,
            3,
        ),
        ErrorCase(
            "not an object",
            Method::POST,
            "/api/v1/inventory/reserve",
            Some("[1, 2]"),
            "application/json",
            400,
            3,
        ),
        ErrorCase(
            "unknown field",
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(
                r#"{"product_id": "product-123", "quantity": 1, "order_id": "o", "colour": "red"}"#,
            ),
            "application/json",
            400,
            3,
        ),
        ErrorCase(
            "unknown query parameter",
            Method::GET,
            "/api/v1/inventory/product-123?colour=red",
            None,
            "",
            400,
            3,
        ),
        ErrorCase(
            "bad query number",
            Method::GET,
            "/api/v1/inventory/product-123?required_quantity=lots",
            None,
            "",
            400,
            3,
        ),
        ErrorCase(
            "body on GET",
            Method::GET,
            "/api/v1/inventory/product-123",
            Some("{}"),
            "application/json",
            400,
            3,
        ),
        ErrorCase(
            "unsupported content type",
            Method::POST,
            "/api/v1/inventory/reserve",
            Some("product_id=product-123"),
            "application/x-www-form-urlencoded",
            415,
            3,
        ),
        ErrorCase(
            "unknown path",
            Method::GET,
            "/api/v2/stock",
            None,
            "",
            404,
            5,
        ),
        ErrorCase(
            "wrong method",
            Method::DELETE,
            "/api/v1/inventory/product-123",
            None,
            "",
            405,
            12,
        ),
        ErrorCase(
            "validation",
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(r#"{"product_id": "product-123", "quantity": 0, "order_id": "o"}"#),
            "application/json",
            400,
            3,
        ),
        ErrorCase(
            "insufficient stock",
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(r#"{"product_id": "product-123", "quantity": 101, "order_id": "o"}"#),
            "application/json",
            409,
            9,
        ),
        ErrorCase(
            "unknown product",
            Method::GET,
            "/api/v1/inventory/nothing-here",
            None,
            "",
            404,
            5,
        ),
        ErrorCase(
            "unknown reservation",
            Method::POST,
            "/api/v1/inventory/release",
            Some(r#"{"product_id": "product-123", "order_id": "nobody"}"#),
            "application/json",
            404,
            5,
        ),
        ErrorCase(
            "a key named twice",
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(r#"{"product_id": "product-123", "quantity": 1, "quantity": 2, "order_id": "o"}"#),
            "application/json",
            400,
            3,
        ),
        ErrorCase(
            "a body that contradicts the path",
            Method::PUT,
            "/api/v1/inventory/product-456",
            Some(r#"{"product_id": "product-123", "quantity": 5, "operation": "set"}"#),
            "application/json",
            400,
            3,
        ),
        ErrorCase(
            "empty expected_version",
            Method::PUT,
            "/api/v1/inventory/product-123",
            Some(r#"{"quantity": 5, "operation": "set", "expected_version": ""}"#),
            "application/json",
            400,
            3,
        ),
        ErrorCase(
            "a zero-width space in an id",
            Method::POST,
            "/api/v1/inventory/reserve",
            Some("{\"product_id\": \"product\u{200b}-123\", \"quantity\": 1, \"order_id\": \"o\"}"),
            "application/json",
            400,
            3,
        ),
        ErrorCase(
            "a bidi override in an id",
            Method::GET,
            "/api/v1/inventory/product-%E2%80%AE123",
            None,
            "",
            400,
            3,
        ),
        ErrorCase(
            "below reserved",
            Method::PUT,
            "/api/v1/inventory/product-123",
            Some(r#"{"quantity": -1, "operation": "set"}"#),
            "application/json",
            400,
            3,
        ),
    ];
    for ErrorCase(name, method, path, body, content_type, status, code) in cases {
        let mut request = client.request(method, server.http_url(path));
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = request.send().await.expect(name);
        assert_eq!(response.status().as_u16(), status, "{name}");
        if name == "wrong method" {
            assert_eq!(response.headers()["allow"], "GET, PUT", "{name}");
        }
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{name}"
        );
        let json: Value = response.json().await.expect(name);
        assert_eq!(json["code"], code, "{name}: {json}");
        assert!(
            !json["message"].as_str().unwrap_or_default().is_empty(),
            "{name}"
        );
        let info = &json["details"][0];
        assert_eq!(
            info["@type"], "type.googleapis.com/google.rpc.ErrorInfo",
            "{name}: every error carries an ErrorInfo: {json}"
        );
        assert_eq!(info["domain"], "inventory-service", "{name}: {json}");
        assert!(
            !info["reason"].as_str().unwrap_or_default().is_empty(),
            "{name}: {json}"
        );
    }
    // A rule of the contract: the BadRequest names the field, the rule it
    // broke and why.
    let (_, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/reserve",
        Some(r#"{"product_id": "product-123", "quantity": 0, "order_id": "o"}"#),
    )
    .await;
    assert_eq!(
        body["details"][1],
        json!({"@type": "type.googleapis.com/google.rpc.BadRequest", "field_violations": [
            {"field": "quantity", "reason": "INT32_GTE", "description": "must be at least 1, got 0"}]}),
        "{body}"
    );
    // A rule of the domain (a page token the service never issued) comes in
    // the same shape: ErrorInfo with field and rule, BadRequest with reason.
    let (status, body) = send(
        &server,
        Method::GET,
        "/api/v1/inventory/product-123/history?page_token=forged",
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["details"][0]["metadata"]["field"], "page_token",
        "{body}"
    );
    assert_eq!(
        body["details"][0]["metadata"]["rule"], "page_token.issued",
        "{body}"
    );
    assert_eq!(
        body["details"][1]["field_violations"][0]["reason"], "PAGE_TOKEN_ISSUED",
        "{body}"
    );
    // The contradiction names both values.
    let (_, body) = send(
        &server,
        Method::PUT,
        "/api/v1/inventory/product-456",
        Some(r#"{"product_id": "product-123", "quantity": 5, "operation": "set"}"#),
    )
    .await;
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("product-123") && message.contains("product-456"),
        "{body}"
    );
    assert_eq!(
        body["details"][1]["field_violations"][0]["field"], "product_id",
        "{body}"
    );
    assert_eq!(
        body["details"][1]["field_violations"][0]["reason"], "CONTRADICTS_PATH",
        "{body}"
    );
    // A value that does not fit its field's type names the field too, as a
    // rule of the contract does (the transcoding refused it before any rule
    // ran).
    for (method, path, body, field, reason) in [
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(r#"{"product_id": "product-123", "quantity": 2147483648, "order_id": "o"}"#),
            "quantity",
            "INVALID_VALUE",
        ),
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(r#"{"product_id": "product-123", "quantity": "two", "order_id": "o"}"#),
            "quantity",
            "INVALID_VALUE",
        ),
        (
            Method::GET,
            "/api/v1/inventory/product-123?required_quantity=lots",
            None,
            "required_quantity",
            "INVALID_VALUE",
        ),
        (
            Method::GET,
            "/api/v1/inventory/product-123?colour=red",
            None,
            "colour",
            "UNKNOWN_FIELD",
        ),
    ] {
        let (status, body) = send(&server, method, path, body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["details"][1]["@type"], "type.googleapis.com/google.rpc.BadRequest",
            "{body}"
        );
        let violation = &body["details"][1]["field_violations"][0];
        assert_eq!(violation["field"], field, "{body}");
        assert_eq!(violation["reason"], reason, "{body}");
        assert_eq!(violation["description"], body["message"], "{body}");
    }
    // A body that repeats the path is fine.
    let (status, body) = send(
        &server,
        Method::PUT,
        "/api/v1/inventory/product-456",
        Some(r#"{"product_id": "product-456", "quantity": 100, "operation": "set"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let small_limit =
        TestServer::start_with(Backend::Sqlite, |config| config.rest.max_body_size = 1024).await;
    let response = client
        .post(small_limit.http_url("/api/v1/inventory/reserve"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("too large");
    assert_eq!(response.status(), 413);
    let json: Value = response.json().await.expect("json");
    assert_eq!(json["code"], 8);
    assert_eq!(json["details"][0]["reason"], "BODY_TOO_LARGE", "{json}");
    assert_eq!(json["details"][0]["metadata"]["limit"], "1024", "{json}");

    // The domain errors carry their ErrorInfo through.
    let (_, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/reserve",
        Some(r#"{"product_id": "product-123", "quantity": 101, "order_id": "o"}"#),
    )
    .await;
    assert_eq!(
        body["details"][0]["@type"],
        "type.googleapis.com/google.rpc.ErrorInfo"
    );
    assert_eq!(body["details"][0]["reason"], "INSUFFICIENT_STOCK");
    assert_eq!(body["details"][0]["metadata"]["available"], "100");
    let (_, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/reserve",
        Some(r#"{"product_id": "product-123", "quantity": "two", "order_id": "o"}"#),
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("quantity"),
        "names the field: {body}"
    );

    // Nothing changed.
    let (_, stock) = send(&server, Method::GET, "/api/v1/inventory/product-123", None).await;
    assert_eq!(
        (
            stock["current_quantity"].clone(),
            stock["reserved_quantity"].clone()
        ),
        (json!(100), json!(0))
    );
}

#[tokio::test]
async fn ids_in_other_normalization_forms_are_the_same_id() {
    // "café" written decomposed (e + U+0301) and composed (U+00E9), and
    // U+212B (ANGSTROM SIGN) for U+00C5: one product each, answered in NFC.
    let server = seeded_server().await;
    let (status, body) = send(
        &server,
        Method::PUT,
        "/api/v1/inventory/cafe%CC%81",
        Some(r#"{"quantity": 5, "operation": "set"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["product_id"], "caf\u{e9}");
    assert_eq!(body["created"], true);
    let (status, body) = send(&server, Method::GET, "/api/v1/inventory/caf%C3%A9", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["current_quantity"], 5);
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/inventory/reserve",
        Some("{\"product_id\": \"caf\u{e9}\", \"quantity\": 2, \"order_id\": \"\u{212b}\"}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        &server,
        Method::GET,
        "/api/v1/orders/%C3%85/reservations",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservations"][0]["order_id"], "\u{c5}");
    assert_eq!(body["reservations"][0]["product_id"], "caf\u{e9}");
}

#[tokio::test]
async fn connect_unary_speaks_json_and_binary() {
    let server = seeded_server().await;
    let client = reqwest::Client::new();
    let url = server.http_url("/inventory.v1.InventoryService/CheckInventory");

    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .body(r#"{"product_id": "product-123", "required_quantity": 5}"#)
        .send()
        .await
        .expect("connect json");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["available"], true);
    assert_eq!(body["current_quantity"], 100);

    let request = inventory_service::pb::CheckInventoryRequest {
        product_id: "product-456".into(),
        required_quantity: 1,
    };
    let response = client
        .post(&url)
        .header("content-type", "application/proto")
        .body(request.encode_to_vec())
        .send()
        .await
        .expect("connect proto");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/proto");
    let bytes = response.bytes().await.expect("bytes");
    let answer = inventory_service::pb::CheckInventoryResponse::decode(bytes).expect("decode");
    assert_eq!(answer.current_quantity, 100);

    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"product_id": "missing"}"#)
        .send()
        .await
        .expect("connect error");
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["details"][0]["type"], "google.rpc.ErrorInfo");
    assert_eq!(body["details"][0]["debug"]["reason"], "PRODUCT_NOT_FOUND");
}

#[tokio::test]
async fn openapi_describes_every_route_and_the_answers_match_it() {
    let server = seeded_server().await;
    let doc: Value = reqwest::get(server.http_url("/openapi.json"))
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["openapi"], "3.0.3");
    let routes = [
        ("/api/v1/inventory/{product_id}", "get"),
        ("/api/v1/inventory/{product_id}", "put"),
        ("/api/v1/inventory/reserve", "post"),
        ("/api/v1/inventory/release", "post"),
        ("/api/v1/inventory/{product_id}/history", "get"),
        ("/api/v1/inventory/commit", "post"),
        ("/api/v1/orders/{order_id}/release", "post"),
        ("/api/v1/orders/{order_id}/reservations", "get"),
        ("/api/v1/orders/{order_id}/reserve", "post"),
        ("/api/v1/inventory", "get"),
    ];
    for (path, method) in routes {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} missing");
        assert!(
            !operation["description"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{path} has the proto comment"
        );
    }
    let check = &doc["paths"]["/api/v1/inventory/{product_id}"]["get"];
    let params: Vec<&str> = check["parameters"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(params, ["product_id", "required_quantity"]);
    // Path fields are not body fields.
    for (path, method) in [
        ("/api/v1/inventory/{product_id}", "put"),
        ("/api/v1/orders/{order_id}/reserve", "post"),
    ] {
        let body =
            &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"];
        let name = body["$ref"]
            .as_str()
            .and_then(|r| r.rsplit('/').next())
            .unwrap_or_default();
        let properties = &doc["components"]["schemas"][name]["properties"];
        assert!(properties.is_object(), "{method} {path}: {body}");
        let variable = if path.contains("order_id") {
            "order_id"
        } else {
            "product_id"
        };
        assert!(
            properties.get(variable).is_none(),
            "{method} {path}: {variable} is a path field: {properties}"
        );
    }

    // Every answer of every route validates against its schema.
    let calls: [(Method, &str, Option<&str>, &str, u16); 14] = [
        (
            Method::GET,
            "/api/v1/inventory/product-123",
            None,
            "/api/v1/inventory/{product_id}",
            200,
        ),
        (
            Method::PUT,
            "/api/v1/inventory/product-123",
            Some(r#"{"quantity": 5, "operation": "add"}"#),
            "/api/v1/inventory/{product_id}",
            200,
        ),
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(r#"{"product_id": "product-123", "quantity": 1, "order_id": "o"}"#),
            "/api/v1/inventory/reserve",
            200,
        ),
        (
            Method::POST,
            "/api/v1/inventory/release",
            Some(r#"{"product_id": "product-123", "order_id": "o"}"#),
            "/api/v1/inventory/release",
            200,
        ),
        (
            Method::GET,
            "/api/v1/inventory/product-123/history",
            None,
            "/api/v1/inventory/{product_id}/history",
            200,
        ),
        (
            Method::GET,
            "/api/v1/inventory/missing",
            None,
            "/api/v1/inventory/{product_id}",
            404,
        ),
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(r#"{"product_id": "product-123", "quantity": 3, "order_id": "o3"}"#),
            "/api/v1/inventory/reserve",
            200,
        ),
        (
            Method::POST,
            "/api/v1/inventory/commit",
            Some(r#"{"product_id": "product-123", "quantity": 1, "order_id": "o3"}"#),
            "/api/v1/inventory/commit",
            200,
        ),
        (
            Method::GET,
            "/api/v1/orders/o3/reservations",
            None,
            "/api/v1/orders/{order_id}/reservations",
            200,
        ),
        (
            Method::POST,
            "/api/v1/orders/o3/release",
            Some("{}"),
            "/api/v1/orders/{order_id}/release",
            200,
        ),
        (
            Method::GET,
            "/api/v1/inventory?page_size=1",
            None,
            "/api/v1/inventory",
            200,
        ),
        (
            Method::POST,
            "/api/v1/orders/o4/reserve",
            Some(r#"{"items": [{"product_id": "product-456", "quantity": 2}]}"#),
            "/api/v1/orders/{order_id}/reserve",
            200,
        ),
        (
            Method::POST,
            "/api/v1/orders/o5/reserve",
            Some(r#"{"items": [{"product_id": "product-456", "quantity": 999}]}"#),
            "/api/v1/orders/{order_id}/reserve",
            409,
        ),
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(r#"{"product_id": "product-123", "quantity": 999, "order_id": "o2"}"#),
            "/api/v1/inventory/reserve",
            409,
        ),
    ];
    for (method, path, body, route, status) in calls {
        let verb = method.as_str().to_ascii_lowercase();
        let (got, answer) = send(&server, method, path, body).await;
        assert_eq!(got.as_u16(), status, "{path}: {answer}");
        // Every error status is documented, each with the error schema.
        let key = status.to_string();
        let schema = &doc["paths"][route][verb.as_str()]["responses"][key.as_str()]["content"]["application/json"]
            ["schema"];
        validate(&doc, schema, &answer, path).unwrap_or_else(|e| panic!("{path}: {e}\n{answer}"));
    }
}

/// A JSON Schema check of the subset the generated document uses: `$ref`,
/// `type`, `format` int32/int64, `enum`, `properties` (no others allowed
/// unless `additionalProperties`), `required`, `items`, `nullable`.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/components/schemas/");
        return validate(doc, &doc["components"]["schemas"][name], value, at);
    }
    if value.is_null() && schema["nullable"] == true {
        return Ok(());
    }
    let fail = |what: &str| Err(format!("{at}: expected {what}, got {value}"));
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(object) = value.as_object() else {
                return fail("an object");
            };
            for required in schema["required"].as_array().into_iter().flatten() {
                if !object.contains_key(required.as_str().unwrap_or_default()) {
                    return fail(&format!("property {required}"));
                }
            }
            for (key, item) in object {
                match schema["properties"].get(key) {
                    Some(property) => validate(doc, property, item, &format!("{at}.{key}"))?,
                    None if schema
                        .get("additionalProperties")
                        .is_some_and(|a| a != false) =>
                    {
                        if schema["additionalProperties"].is_object() {
                            validate(
                                doc,
                                &schema["additionalProperties"],
                                item,
                                &format!("{at}.{key}"),
                            )?;
                        }
                    }
                    None => return fail(&format!("no property {key:?}")),
                }
            }
            Ok(())
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                return fail("an array");
            };
            items.iter().enumerate().try_for_each(|(i, item)| {
                validate(doc, &schema["items"], item, &format!("{at}[{i}]"))
            })
        }
        Some("string") => {
            let Some(text) = value.as_str() else {
                return fail("a string");
            };
            if let Some(allowed) = schema["enum"].as_array()
                && !allowed.iter().any(|a| a == text)
            {
                return fail("one of the enum values");
            }
            if schema["format"] == "int64" && text.parse::<i64>().is_err() {
                return fail("an int64 string");
            }
            Ok(())
        }
        Some("integer") => match value.as_i64() {
            Some(n) if schema["format"] == "int32" && i32::try_from(n).is_err() => fail("an int32"),
            Some(_) => Ok(()),
            None => fail("an integer"),
        },
        Some("number") => {
            if value.is_number() {
                Ok(())
            } else {
                fail("a number")
            }
        }
        Some("boolean") => {
            if value.is_boolean() {
                Ok(())
            } else {
                fail("a boolean")
            }
        }
        _ => Ok(()),
    }
}
