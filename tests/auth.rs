//! Authentication and scopes over every protocol: each method, called over
//! gRPC, gRPC-Web, Connect and REST, with no token, a wrong one, a token of
//! each scope, and expired, tampered and valid JWTs. The caller is recorded
//! as the actor of every change it makes.

mod common;

use common::{Backend, TestServer};
use inventory_service::config::{JwtConfig, TokenConfig};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const SECRET: &str = "the HS256 secret of the auth tests";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "inventory";

/// Static tokens and the scopes they grant.
const TOKENS: [(&str, &str, &str); 3] = [
    ("reader", "read-token", "inventory.read"),
    ("shop", "reserve-token", "inventory.reserve"),
    ("warehouse", "admin-token", "inventory.admin"),
];

fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn guarded_server() -> TestServer {
    TestServer::start_with(Backend::Sqlite, |config| {
        config.auth.enabled = true;
        config.auth.tokens = TOKENS
            .iter()
            .map(|(name, token, scope)| TokenConfig {
                name: (*name).to_owned(),
                sha256: sha256_hex(token),
                scopes: vec![(*scope).to_owned()],
            })
            .collect();
        config.auth.jwt = JwtConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            hs256_secret: SECRET.into(),
            ..JwtConfig::default()
        };
        config.inventory.initial_stock = [("product-1".to_owned(), 50)].into();
    })
    .await
}

fn jwt(sub: &str, scope: &str, expires_in: i64, secret: &str) -> String {
    let claims = json!({
        "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "scope": scope,
        "exp": chrono::Utc::now().timestamp() + expires_in,
    });
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

/// Who calls, with which token, and the scopes it grants (`None`: not
/// authenticated).
type Caller = (
    &'static str,
    Option<String>,
    Option<&'static [&'static str]>,
);

/// What a call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Unauthenticated,
    Denied,
    /// Past the auth check (answered by the handler, whatever it said).
    Passed,
}

/// Each method: its REST call and the scope it needs.
struct Method {
    name: &'static str,
    rest: (reqwest::Method, &'static str, Option<&'static str>),
    scope: &'static str,
}

fn methods() -> Vec<Method> {
    use reqwest::Method as M;
    let m = |name, rest, scope| Method { name, rest, scope };
    vec![
        m(
            "CheckInventory",
            (M::GET, "/api/v1/inventory/product-1", None),
            "inventory.read",
        ),
        m(
            "GetInventoryHistory",
            (M::GET, "/api/v1/inventory/product-1/history", None),
            "inventory.read",
        ),
        m(
            "ListReservations",
            (M::GET, "/api/v1/orders/o-1/reservations", None),
            "inventory.read",
        ),
        m(
            "ListInventory",
            (M::GET, "/api/v1/inventory", None),
            "inventory.read",
        ),
        m(
            "ReserveInventory",
            (
                M::POST,
                "/api/v1/inventory/reserve",
                Some(r#"{"product_id":"product-1","quantity":1,"order_id":"o-1"}"#),
            ),
            "inventory.reserve",
        ),
        m(
            "ReserveOrder",
            (
                M::POST,
                "/api/v1/orders/o-2/reserve",
                Some(r#"{"items":[{"product_id":"product-1","quantity":1}]}"#),
            ),
            "inventory.reserve",
        ),
        m(
            "ReleaseInventory",
            (
                M::POST,
                "/api/v1/inventory/release",
                Some(r#"{"product_id":"product-1","order_id":"o-1"}"#),
            ),
            "inventory.reserve",
        ),
        m(
            "CommitReservation",
            (
                M::POST,
                "/api/v1/inventory/commit",
                Some(r#"{"product_id":"product-1","order_id":"o-9"}"#),
            ),
            "inventory.reserve",
        ),
        m(
            "ReleaseOrder",
            (M::POST, "/api/v1/orders/o-2/release", Some("{}")),
            "inventory.reserve",
        ),
        m(
            "UpdateInventory",
            (
                M::PUT,
                "/api/v1/inventory/product-1",
                Some(r#"{"quantity":1,"operation":"add"}"#),
            ),
            "inventory.admin",
        ),
    ]
}

/// An empty message, framed for gRPC and gRPC-Web: enough to reach the
/// handler (which may refuse it as invalid) once past the auth check.
const EMPTY_FRAME: [u8; 5] = [0, 0, 0, 0, 0];

fn with_token(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.header("authorization", format!("Bearer {token}")),
        None => request,
    }
}

fn grpc_outcome(code: Option<&str>) -> Outcome {
    match code {
        Some("16") => Outcome::Unauthenticated,
        Some("7") => Outcome::Denied,
        _ => Outcome::Passed,
    }
}

async fn call_grpc(server: &TestServer, method: &str, token: Option<&str>) -> Outcome {
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let request = client
        .post(server.grpc_url(&format!("/inventory.v1.InventoryService/{method}")))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(EMPTY_FRAME.to_vec());
    let response = with_token(request, token).send().await.expect("grpc");
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if code.as_deref() == Some("16") {
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{method}: a challenge comes with UNAUTHENTICATED"
        );
    }
    grpc_outcome(code.as_deref())
}

async fn call_grpc_web(server: &TestServer, method: &str, token: Option<&str>) -> Outcome {
    let client = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("client");
    let request = client
        .post(server.grpc_url(&format!("/inventory.v1.InventoryService/{method}")))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(EMPTY_FRAME.to_vec());
    let response = with_token(request, token).send().await.expect("grpc-web");
    let header = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await.expect("body");
    let trailer = String::from_utf8_lossy(&body)
        .split("grpc-status:")
        .nth(1)
        .and_then(|rest| rest.split(['\r', '\n']).next())
        .map(|code| code.trim().to_owned());
    grpc_outcome(header.or(trailer).as_deref())
}

async fn call_connect(server: &TestServer, method: &str, token: Option<&str>) -> Outcome {
    let request = reqwest::Client::new()
        .post(server.http_url(&format!("/inventory.v1.InventoryService/{method}")))
        .header("content-type", "application/proto")
        .header("connect-protocol-version", "1")
        .body(Vec::new());
    let response = with_token(request, token).send().await.expect("connect");
    if response.status().is_success() {
        return Outcome::Passed;
    }
    let body: Value = response.json().await.expect("connect error json");
    match body["code"].as_str() {
        Some("unauthenticated") => Outcome::Unauthenticated,
        Some("permission_denied") => Outcome::Denied,
        _ => Outcome::Passed,
    }
}

async fn call_rest(server: &TestServer, method: &Method, token: Option<&str>) -> Outcome {
    let (verb, path, body) = &method.rest;
    let mut request = reqwest::Client::new().request(verb.clone(), server.http_url(path));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(*body);
    }
    let response = with_token(request, token).send().await.expect("rest");
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").cloned();
    let body: Value = response.json().await.expect("rest json");
    match status {
        401 => {
            let challenge = challenge.expect("WWW-Authenticate on a 401");
            assert!(
                challenge.to_str().unwrap_or_default().starts_with("Bearer"),
                "{challenge:?}"
            );
            assert_eq!(body["code"], 16, "{body}");
            assert_eq!(body["details"][0]["domain"], "inventory-service", "{body}");
            Outcome::Unauthenticated
        }
        403 => {
            assert_eq!(body["code"], 7, "{body}");
            assert_eq!(body["details"][0]["reason"], "SCOPE_MISSING", "{body}");
            Outcome::Denied
        }
        _ => Outcome::Passed,
    }
}

#[tokio::test]
async fn every_method_over_every_protocol_needs_a_token_with_its_scope() {
    let server = guarded_server().await;
    let expired = jwt("shop-7", "inventory.read inventory.reserve", -120, SECRET);
    let forged = jwt(
        "shop-7",
        "inventory.admin",
        600,
        "not the secret of the service",
    );
    let valid = jwt("shop-7", "inventory.read inventory.reserve", 600, SECRET);
    let tampered = {
        let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
        parts[1] = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            json!({"sub": "shop-7", "iss": ISSUER, "aud": AUDIENCE, "scope": "inventory.admin",
                   "exp": chrono::Utc::now().timestamp() + 600})
            .to_string(),
        );
        parts.join(".")
    };
    let callers: Vec<Caller> = vec![
        ("no token", None, None),
        ("unknown token", Some("guess".into()), None),
        ("expired JWT", Some(expired), None),
        ("forged JWT", Some(forged), None),
        ("tampered JWT", Some(tampered), None),
        (
            "read token",
            Some("read-token".into()),
            Some(&["inventory.read"]),
        ),
        (
            "reserve token",
            Some("reserve-token".into()),
            Some(&["inventory.reserve"]),
        ),
        (
            "admin token",
            Some("admin-token".into()),
            Some(&["inventory.admin"]),
        ),
        (
            "valid JWT",
            Some(valid),
            Some(&["inventory.read", "inventory.reserve"]),
        ),
    ];
    for method in methods() {
        for (who, token, scopes) in &callers {
            let expected = match scopes {
                None => Outcome::Unauthenticated,
                Some(scopes) if scopes.contains(&method.scope) => Outcome::Passed,
                Some(_) => Outcome::Denied,
            };
            let token = token.as_deref();
            let outcomes = [
                ("gRPC", call_grpc(&server, method.name, token).await),
                ("gRPC-Web", call_grpc_web(&server, method.name, token).await),
                ("Connect", call_connect(&server, method.name, token).await),
                ("REST", call_rest(&server, &method, token).await),
            ];
            for (protocol, outcome) in outcomes {
                assert_eq!(
                    outcome, expected,
                    "{} over {protocol} with {who}",
                    method.name
                );
            }
        }
    }
}

#[tokio::test]
async fn health_and_reflection_stay_open_and_refusals_say_nothing_of_products() {
    let server = guarded_server().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health without a token");
    assert_eq!(answer.into_inner().status, 1, "SERVING");
    let metrics = reqwest::get(server.http_url("/metrics"))
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200);

    // A product that exists and one that does not get the same refusal.
    let mut client = server.client().await;
    for product in ["product-1", "no-such-product"] {
        let status = client
            .check_inventory(inventory_service::pb::CheckInventoryRequest {
                product_id: product.into(),
                required_quantity: 1,
            })
            .await
            .expect_err("no token");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(!status.message().contains(product), "{}", status.message());
    }
}

#[tokio::test]
async fn the_caller_is_the_actor_of_every_change_it_makes() {
    let server = guarded_server().await;
    let client = reqwest::Client::new();
    let response = client
        .put(server.http_url("/api/v1/inventory/product-1"))
        .bearer_auth("admin-token")
        .json(&json!({"quantity": 5, "operation": "add"}))
        .send()
        .await
        .expect("update");
    assert_eq!(response.status(), 200);

    let shop = jwt("shop-7", "inventory.reserve", 600, SECRET);
    let mut grpc = server.client().await;
    let mut reserve = tonic::Request::new(inventory_service::pb::ReserveInventoryRequest {
        product_id: "product-1".into(),
        quantity: 2,
        order_id: "order-actor".into(),
        ..Default::default()
    });
    reserve.metadata_mut().insert(
        "authorization",
        format!("Bearer {shop}").parse().expect("ascii"),
    );
    grpc.reserve_inventory(reserve).await.expect("reserve");

    let history: Value = client
        .get(server.http_url("/api/v1/inventory/product-1/history"))
        .bearer_auth("read-token")
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    let entries = history["entries"].as_array().expect("entries");
    let actor_of = |operation: &str| {
        entries
            .iter()
            .find(|e| e["operation_type"] == operation)
            .map(|e| e["metadata"]["actor"].clone())
    };
    assert_eq!(actor_of("reserve"), Some(json!("shop-7")), "{history}");
    assert_eq!(actor_of("update"), Some(json!("warehouse")), "{history}");
}
