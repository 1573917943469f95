//! The other ways in: server reflection (v1 and v1alpha), grpc.health.v1,
//! gRPC-Web over HTTP/1.1 with CORS, and the HTTP port's `/health`.
//!
//! Health reports the database, so its tests run on both backends; the rest
//! never reach the store's differences and run on SQLite only.

mod common;

use common::{Backend, TestServer, backend_tests};
use inventory_service::pb::{self, CheckInventoryRequest, UpdateInventoryRequest};
use prost::Message as _;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

backend_tests!(
    grpc_health_reports_serving_overall_and_per_service,
    http_health_reports_the_database_as_json,
);

/// The page origin the browser tests here call from.
const SHOP: &str = "http://shop.example";

/// A server whose CORS allows [`SHOP`] only.
async fn shop_server() -> TestServer {
    TestServer::start_with(Backend::Sqlite, |config| {
        config.server.cors_allowed_origins = vec![SHOP.to_owned()];
    })
    .await
}

async fn stocked_server() -> TestServer {
    let server = shop_server().await;
    server
        .client()
        .await
        .update_inventory(UpdateInventoryRequest {
            product_id: "product-123".into(),
            quantity: 7,
            operation: "set".into(),
            ..Default::default()
        })
        .await
        .expect("set stock");
    server
}

#[tokio::test]
async fn reflection_v1_lists_services_and_serves_every_import_and_the_error_details() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start(Backend::Sqlite).await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let ask = |request| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "inventory.v1.InventoryService".into(),
        )),
        ask(MessageRequest::FileByFilename(
            "google/api/http.proto".into(),
        )),
        ask(MessageRequest::FileByFilename(
            "google/protobuf/timestamp.proto".into(),
        )),
        // The types of every error's details, so that a client can decode them.
        ask(MessageRequest::FileContainingSymbol(
            "google.rpc.ErrorInfo".into(),
        )),
    ];
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection stream")
        .into_inner();

    let mut answers = Vec::new();
    while let Some(response) = responses.message().await.expect("response") {
        answers.push(response.message_response.expect("a response"));
    }
    assert_eq!(answers.len(), 5);
    let MessageResponse::ListServicesResponse(list) = &answers[0] else {
        panic!("expected a service list, got {:?}", answers[0]);
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "inventory.v1.InventoryService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for (answer, file) in answers[1..].iter().zip([
        "inventory/v1/inventory.proto",
        "google/api/http.proto",
        "google/protobuf/timestamp.proto",
        "google/rpc/error_details.proto",
    ]) {
        let MessageResponse::FileDescriptorResponse(files) = answer else {
            panic!("expected descriptors for {file}, got {answer:?}");
        };
        let names: Vec<String> = files
            .file_descriptor_proto
            .iter()
            .map(|bytes| {
                prost_types::FileDescriptorProto::decode(bytes.as_slice())
                    .expect("descriptor")
                    .name()
                    .to_owned()
            })
            .collect();
        assert!(names.iter().any(|n| n == file), "{file} not in {names:?}");
    }
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_service() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let server = TestServer::start(Backend::Sqlite).await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection stream")
        .into_inner();
    let response = responses.message().await.expect("response").expect("one");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "inventory.v1.InventoryService")
    );
}

async fn grpc_health_reports_serving_overall_and_per_service(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "inventory.v1.InventoryService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

fn grpc_web_frame(message: &impl prost::Message) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// Splits a gRPC-Web response body into its message and its trailers.
fn split_grpc_web(body: &[u8]) -> (Option<Vec<u8>>, String) {
    let (mut message, mut trailers) = (None, String::new());
    let mut rest = body;
    while rest.len() >= 5 {
        let flag = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let payload = &rest[5..5 + len];
        if flag & 0x80 == 0 {
            message = Some(payload.to_vec());
        } else {
            trailers = String::from_utf8_lossy(payload).into_owned();
        }
        rest = &rest[5 + len..];
    }
    (message, trailers)
}

#[tokio::test]
async fn grpc_web_over_http1_calls_the_same_handler() {
    let server = stocked_server().await;
    let http1 = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("client");
    let response = http1
        .post(server.grpc_url("/inventory.v1.InventoryService/CheckInventory"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "http://shop.example")
        .body(grpc_web_frame(&CheckInventoryRequest {
            product_id: "product-123".into(),
            required_quantity: 2,
        }))
        .send()
        .await
        .expect("grpc-web call");
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web+proto"
    );
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://shop.example"
    );
    let body = response.bytes().await.expect("body");
    let (message, trailers) = split_grpc_web(&body);
    assert!(trailers.contains("grpc-status:0"), "{trailers:?}");
    let answer =
        pb::CheckInventoryResponse::decode(message.expect("a message").as_slice()).expect("decode");
    assert!(answer.available);
    assert_eq!(answer.current_quantity, 7);

    // Errors travel in the trailers frame.
    let missing = http1
        .post(server.grpc_url("/inventory.v1.InventoryService/CheckInventory"))
        .header("content-type", "application/grpc-web+proto")
        .body(grpc_web_frame(&CheckInventoryRequest {
            product_id: "nope".into(),
            required_quantity: 1,
        }))
        .send()
        .await
        .expect("grpc-web call");
    let status_header = missing
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = missing.bytes().await.expect("body");
    let (_, trailers) = split_grpc_web(&body);
    assert!(
        status_header.as_deref() == Some("5") || trailers.contains("grpc-status:5"),
        "NOT_FOUND expected: {status_header:?} {trailers:?}"
    );
}

#[tokio::test]
async fn grpc_web_cors_preflight_is_answered() {
    let server = shop_server().await;
    let response = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            server.grpc_url("/inventory.v1.InventoryService/ReserveInventory"),
        )
        .header("origin", "http://shop.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web")
        .send()
        .await
        .expect("preflight");
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://shop.example"
    );
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    assert!(allowed.contains("x-grpc-web"), "{allowed}");

    // Another origin is not allowed: the browser will not send the call.
    let response = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            server.grpc_url("/inventory.v1.InventoryService/ReserveInventory"),
        )
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web")
        .send()
        .await
        .expect("preflight");
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "{:?}",
        response.headers()
    );
}

#[tokio::test]
async fn cors_follows_the_configured_origins_and_any_is_not_honoured_with_auth() {
    let preflight = |server: &TestServer| {
        reqwest::Client::new()
            .request(
                reqwest::Method::OPTIONS,
                server.http_url("/api/v1/inventory/reserve"),
            )
            .header("origin", "http://anywhere.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let none = TestServer::start(Backend::Sqlite).await;
    let response = preflight(&none).await.expect("preflight");
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let any = TestServer::start_with(Backend::Sqlite, |config| {
        config.server.cors_allowed_origins = vec!["*".to_owned()];
    })
    .await;
    let response = preflight(&any).await.expect("preflight");
    assert_eq!(response.headers()["access-control-allow-origin"], "*");

    let any_with_auth = TestServer::start_with(Backend::Sqlite, |config| {
        config.server.cors_allowed_origins = vec!["*".to_owned()];
        config.auth.enabled = true;
        config.auth.tokens = vec![inventory_service::config::TokenConfig {
            name: "ops".into(),
            sha256: "0".repeat(64),
            scopes: vec!["inventory.read".into()],
        }];
    })
    .await;
    let response = preflight(&any_with_auth).await.expect("preflight");
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

async fn http_health_reports_the_database_as_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = reqwest::get(server.http_url("/health"))
        .await
        .expect("health");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "SERVING");
    assert_eq!(body["service"], "inventory-service");
    assert_eq!(body["database"]["driver"], backend.driver());
    assert_eq!(body["database"]["status"], "up");
}

#[tokio::test]
async fn unknown_http_paths_are_json_404s() {
    let server = TestServer::start(Backend::Sqlite).await;
    let response = reqwest::get(server.http_url("/no/such/path"))
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], 5);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/no/such/path")
    );
    assert!(body["details"].is_array());
}
