//! REST/JSON and Connect over real sockets: the seed's examples as written,
//! every route, every error case with its status and JSON body, and the
//! OpenAPI document the responses validate against.

mod common;

use common::{Backend, TestServer, backend_tests};
use prost::Message as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

backend_tests!(every_rest_route_answers_json);

/// A server with the seed's two example products, as `cargo run` has them.
async fn seeded_server() -> TestServer {
    TestServer::start_with(Backend::Sqlite, |config| {
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

    // The seed's request bodies, byte for byte.
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

    // The seed annotates its update body with a comment; the JSON itself:
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
    // The seed's "API 测试" commands, with only the port made ephemeral.
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
    assert_eq!(status, 400, "commit of a released reservation: {body}");
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
            400,
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
        assert!(json["details"].is_array(), "{name}");
    }

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

    // Every answer of every route validates against its schema.
    let calls: [(Method, &str, Option<&str>, &str, u16); 12] = [
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
            "/api/v1/inventory/reserve",
            Some(r#"{"product_id": "product-123", "quantity": 999, "order_id": "o2"}"#),
            "/api/v1/inventory/reserve",
            400,
        ),
    ];
    for (method, path, body, route, status) in calls {
        let verb = method.as_str().to_ascii_lowercase();
        let (got, answer) = send(&server, method, path, body).await;
        assert_eq!(got.as_u16(), status, "{path}: {answer}");
        let key = if status == 200 { "200" } else { "default" };
        let schema = &doc["paths"][route][verb.as_str()]["responses"][key]["content"]["application/json"]
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
