//! Alternatives over gRPC and REST, on both backends: set, listed, cleared;
//! a reservation refused for lack of stock names in its details the
//! alternatives that could fill it, in their order; every refusal of a
//! list (unknown products, the product itself, a product twice, too many,
//! an unknown product) changes nothing.

mod common;

use common::{Backend, TestServer, backend_tests, reason, set_stock};
use inventory_service::pb::{
    self, ListProductAlternativesRequest, ReserveInventoryRequest, SetProductAlternativesRequest,
};
use prost::{Message as _, Name as _};
use tonic::Code;

backend_tests!(
    alternatives_are_suggested_when_stock_runs_out,
    alternatives_that_cannot_be_are_refused,
);

type Client = pb::inventory_service_client::InventoryServiceClient<tonic::transport::Channel>;

async fn stocked(backend: Backend) -> (TestServer, Client) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    for (product, quantity) in [("tea", 2), ("green-tea", 1), ("black-tea", 8), ("mate", 5)] {
        set_stock(&mut client, product, quantity).await;
    }
    (server, client)
}

fn names(levels: &[pb::StockLevel]) -> Vec<&str> {
    levels.iter().map(|s| s.product_id.as_str()).collect()
}

async fn alternatives_are_suggested_when_stock_runs_out(backend: Backend) {
    let (server, mut client) = stocked(backend).await;
    let http = reqwest::Client::new();
    let url = server.http_url("/api/v1/inventory/tea/alternatives");
    let answer = http
        .put(&url)
        .json(&serde_json::json!({"alternative_ids": ["green-tea", "mate", "black-tea"]}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(body["alternatives"][1]["product_id"], "mate", "{body}");
    assert_eq!(body["alternatives"][1]["available_quantity"], 5, "{body}");
    let listed = client
        .list_product_alternatives(ListProductAlternativesRequest {
            product_id: "tea".into(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        names(&listed.alternatives),
        ["green-tea", "mate", "black-tea"]
    );

    // gRPC: the details carry the alternatives that could fill 3, in order.
    let refused = client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "tea".into(),
            order_id: "o1".into(),
            quantity: 3,
            reservation_timeout: 0,
        })
        .await
        .expect_err("short");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "INSUFFICIENT_STOCK");
    let status = tonic_types::Status::decode(refused.details()).expect("google.rpc.Status");
    let type_url = format!("type.googleapis.com/{}", pb::Alternatives::full_name());
    let any = status
        .details
        .iter()
        .find(|any| any.type_url == type_url)
        .expect("an Alternatives detail");
    let suggested = pb::Alternatives::decode(any.value.as_slice()).expect("decode");
    let suggested: Vec<(&str, i32)> = suggested
        .alternatives
        .iter()
        .map(|a| (a.product_id.as_str(), a.available_quantity))
        .collect();
    assert_eq!(suggested, [("mate", 5), ("black-tea", 8)]);

    // REST shows them in `details`.
    let refused = http
        .post(server.http_url("/api/v1/inventory/reserve"))
        .json(&serde_json::json!({"product_id": "tea", "order_id": "o2", "quantity": 6}))
        .send()
        .await
        .expect("POST");
    assert_eq!(refused.status(), 409);
    let body: serde_json::Value = refused.json().await.expect("JSON");
    let details = body["details"].as_array().expect("details");
    let alternatives = details
        .iter()
        .find(|d| d["@type"] == type_url)
        .unwrap_or_else(|| panic!("no Alternatives in {body}"));
    assert_eq!(
        alternatives["alternatives"],
        serde_json::json!([{"product_id": "black-tea", "available_quantity": 8}]),
        "{body}"
    );

    // None could: no Alternatives detail. Cleared: none either.
    let none = client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "tea".into(),
            order_id: "o3".into(),
            quantity: 50,
            reservation_timeout: 0,
        })
        .await
        .expect_err("short");
    let status = tonic_types::Status::decode(none.details()).expect("google.rpc.Status");
    assert!(status.details.iter().all(|any| any.type_url != type_url));
    let cleared = http
        .put(&url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(cleared.status(), 200);
    let listed: serde_json::Value = reqwest::get(&url)
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed["alternatives"], serde_json::json!([]), "{listed}");
}

async fn alternatives_that_cannot_be_are_refused(backend: Backend) {
    let (server, mut client) = stocked(backend).await;
    let put = |alternatives: Vec<&str>| {
        let request = SetProductAlternativesRequest {
            product_id: "tea".into(),
            alternative_ids: alternatives.into_iter().map(str::to_owned).collect(),
        };
        let mut client = client.clone();
        async move { client.set_product_alternatives(request).await }
    };
    put(vec!["mate"]).await.expect("set one");

    let unknown = put(vec!["nope", "mate", "gone"])
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(reason(&unknown), "PRODUCT_NOT_FOUND");
    assert!(
        unknown.message().contains("\"nope\", \"gone\""),
        "{unknown:?}"
    );
    let itself = put(vec!["tea"]).await.expect_err("itself");
    assert_eq!(itself.code(), Code::InvalidArgument);
    assert!(itself.message().contains("own alternative"), "{itself:?}");
    let twice = put(vec!["mate", "mate"]).await.expect_err("twice");
    assert_eq!(twice.code(), Code::InvalidArgument);
    let many: Vec<String> = (0..21).map(|n| format!("p{n}")).collect();
    let too_many = put(many.iter().map(String::as_str).collect())
        .await
        .expect_err("too many");
    assert_eq!(too_many.code(), Code::InvalidArgument);
    let missing = client
        .set_product_alternatives(SetProductAlternativesRequest {
            product_id: "nope".into(),
            alternative_ids: vec!["mate".into()],
        })
        .await
        .expect_err("unknown product");
    assert_eq!(missing.code(), Code::NotFound);
    let listed = client
        .list_product_alternatives(ListProductAlternativesRequest {
            product_id: "nope".into(),
        })
        .await
        .expect_err("unknown product");
    assert_eq!(listed.code(), Code::NotFound);
    // Nothing changed.
    let listed = client
        .list_product_alternatives(ListProductAlternativesRequest {
            product_id: "tea".into(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(names(&listed.alternatives), ["mate"]);
    // Over REST, an unknown alternative is a 404 naming it.
    let response = reqwest::Client::new()
        .put(server.http_url("/api/v1/inventory/tea/alternatives"))
        .json(&serde_json::json!({"alternative_ids": ["nope"]}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(
        body["details"][0]["metadata"]["product_ids"], "nope",
        "{body}"
    );
}
