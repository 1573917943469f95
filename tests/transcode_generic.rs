//! The REST layer is generic: a second, test-only service (`tests/proto/echo`)
//! with its own HttpRules (additional_bindings, a body field, response_body,
//! `**`, a custom verb, DELETE, a custom method, a server stream) is served by the same
//! `TranscodeLayer`, over a real socket, with nothing inventory-specific.

use std::time::Duration;

use inventory_service::transcode::{TranscodeLayer, TranscodeOptions, Transcoder};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    reason = "generated code: prost and tonic output"
)]
mod echo {
    include!(concat!(env!("OUT_DIR"), "/echo/echo.v1.rs"));
}

const ECHO_DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/echo_descriptor.bin"));

use echo::echo_service_server::{EchoService, EchoServiceServer};
use echo::{EchoRequest, EchoResponse, FailRequest, FileRequest, RepeatRequest, Tick};

struct Echo;

fn answer(method: &str, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
    let tenant = request.metadata().get("tenant").cloned();
    let request_id = request.metadata().get("x-request-id").cloned();
    let mut response = Response::new(EchoResponse {
        echo: Some(request.into_inner()),
        method: method.to_owned(),
        path: String::new(),
    });
    if let Some(tenant) = tenant {
        response.metadata_mut().insert("echo-tenant", tenant);
    }
    if let Some(id) = request_id {
        response.metadata_mut().insert("x-request-id", id);
    }
    Ok(response)
}

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        if let Some(wait) = request.get_ref().wait.as_ref() {
            let wait = Duration::new(wait.seconds.max(0) as u64, wait.nanos.max(0) as u32);
            tokio::time::sleep(wait).await;
        }
        answer("Echo", request)
    }
    async fn annotate(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        answer("Annotate", request)
    }
    async fn get_file(
        &self,
        request: Request<FileRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(EchoResponse {
            echo: None,
            method: "GetFile".into(),
            path: request.into_inner().path,
        }))
    }
    async fn archive(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        answer("Archive", request)
    }
    async fn remove(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        answer("Remove", request)
    }
    async fn probe(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        answer("Probe", request)
    }
    type RepeatStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Tick, Status>> + Send + 'static>>;

    async fn repeat(
        &self,
        request: Request<RepeatRequest>,
    ) -> Result<Response<Self::RepeatStream>, Status> {
        let r = request.into_inner();
        if r.count == 0 && r.fail_code != 0 {
            return Err(Status::new(
                tonic::Code::from_i32(r.fail_code),
                "nothing to repeat",
            ));
        }
        let text = r.text.clone();
        let ticks = (r.after + 1..=i64::from(r.count)).map(move |seq| {
            Ok(Tick {
                seq,
                text: text.clone(),
            })
        });
        let end = (r.fail_code != 0).then(|| {
            Err(Status::new(
                tonic::Code::from_i32(r.fail_code),
                "stopped on purpose",
            ))
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(
            ticks.chain(end),
        ))))
    }

    async fn fail(&self, request: Request<FailRequest>) -> Result<Response<EchoResponse>, Status> {
        use tonic_types::{ErrorDetails, StatusExt as _};
        let code = tonic::Code::from_i32(request.into_inner().code);
        let details = ErrorDetails::with_error_info(
            "ECHO_FAILURE",
            "echo.test",
            [("k".to_owned(), "v".to_owned())],
        );
        Err(Status::with_error_details(
            code,
            "failing on purpose",
            details,
        ))
    }
}

/// Serves the echo service behind the transcoder on an ephemeral port.
async fn serve_echo(options: TranscodeOptions) -> String {
    let transcoder = Transcoder::new(ECHO_DESCRIPTORS, options).expect("echo routes");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .accept_http1(true)
            .layer(TranscodeLayer::new(transcoder))
            .add_service(EchoServiceServer::new(Echo))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

async fn call(
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test]
async fn path_query_and_body_bind_as_http_rule_specifies() {
    let base = serve_echo(TranscodeOptions::default()).await;

    // GET: path variable, and every other field from the query string.
    let (status, _, body) = call(
        reqwest::Method::GET,
        format!(
            "{base}/v1/echo/a%20b?numbers=1&numbers=2&color=COLOR_BLUE&flag=true&limit=7\
             &at=2026-01-02T03:04:05Z&big=9007199254740993&ratio=0.5&nested.depth=3\
             &nested.label=x%2By&wait=0.001s&shelf.name=ignored-by-no-one"
        ),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["method"], "Echo");
    let echo = &body["echo"];
    assert_eq!(echo["id"], "a b");
    assert_eq!(echo["numbers"], json!([1, 2]));
    assert_eq!(echo["color"], "COLOR_BLUE");
    assert_eq!(echo["flag"], true);
    assert_eq!(echo["limit"], 7);
    assert_eq!(echo["at"], "2026-01-02T03:04:05Z");
    assert_eq!(echo["big"], "9007199254740993");
    assert_eq!(echo["ratio"], 0.5);
    assert_eq!(echo["nested"], json!({"depth": 3, "label": "x+y"}));
    assert_eq!(echo["shelf"]["name"], "ignored-by-no-one");

    // additional_bindings: POST with the whole body; lowerCamelCase accepted.
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/v1/echo"),
        Some(json!({"id": "p1", "numbers": [4], "nested": {"depth": 1}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["echo"]["id"], "p1");
    assert_eq!(body["echo"]["numbers"], json!([4]));

    // additional_bindings: a nested, multi-segment variable.
    let (status, _, body) = call(
        reqwest::Method::GET,
        format!("{base}/v1/shelves/s%2F1/echo/e1"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["echo"]["shelf"]["name"], "shelves/s%2F1");
    assert_eq!(body["echo"]["id"], "e1");
}

#[tokio::test]
async fn body_fields_response_body_rest_segments_verbs_and_custom_methods() {
    let base = serve_echo(TranscodeOptions::default()).await;

    // body: "note" with response_body: "echo" — the answer is the echo alone.
    let (status, _, body) = call(
        reqwest::Method::PATCH,
        format!("{base}/v1/echo/n1/note?flag=true"),
        Some(json!({"text": "hello"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "n1");
    assert_eq!(body["note"]["text"], "hello");
    assert_eq!(body["flag"], true);
    assert!(body.get("method").is_none());

    // `**` takes every remaining segment, %2F kept as sent.
    let (status, _, body) = call(
        reqwest::Method::GET,
        format!("{base}/v1/files/a/b%2Fc/d%20e.txt"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "a/b%2Fc/d e.txt");

    // A custom verb routes to its own method.
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/v1/echo/42:archive"),
        Some(json!({"flag": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["method"], "Archive");
    assert_eq!(body["echo"]["id"], "42");

    let (status, _, body) = call(reqwest::Method::DELETE, format!("{base}/v1/echo/7"), None).await;
    assert_eq!((status, body["method"].as_str()), (200, Some("Remove")));
    let (status, _, body) = call(reqwest::Method::OPTIONS, format!("{base}/v1/echo/7"), None).await;
    assert_eq!((status, body["method"].as_str()), (200, Some("Probe")));
}

#[tokio::test]
async fn errors_map_codes_to_statuses_with_details() {
    let base = serve_echo(TranscodeOptions::default()).await;
    for (code, http) in [
        (3, 400),
        (5, 404),
        (6, 409),
        (7, 403),
        (8, 429),
        (9, 400),
        (12, 501),
        (13, 500),
        (14, 503),
        (16, 401),
    ] {
        let (status, headers, body) =
            call(reqwest::Method::GET, format!("{base}/v1/fail/{code}"), None).await;
        assert_eq!(status, http, "code {code}");
        assert_eq!(body["code"], code);
        assert_eq!(body["message"], "failing on purpose");
        assert_eq!(
            body["details"][0]["@type"],
            "type.googleapis.com/google.rpc.ErrorInfo"
        );
        assert_eq!(body["details"][0]["reason"], "ECHO_FAILURE");
        assert_eq!(body["details"][0]["metadata"]["k"], "v");
        if code == 16 {
            assert!(headers.contains_key("www-authenticate"));
        }
    }
}

#[tokio::test]
async fn headers_travel_both_ways_and_grpc_timeout_is_a_deadline() {
    let base = serve_echo(TranscodeOptions::default()).await;
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/echo/h1"))
        .header("grpc-metadata-tenant", "acme")
        .header("x-request-id", "req-42")
        .header("cookie", "not-forwarded")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-metadata-echo-tenant"], "acme");
    assert_eq!(response.headers()["grpc-metadata-x-request-id"], "req-42");

    let slow = reqwest::Client::new()
        .get(format!("{base}/v1/echo/slow?wait=2s"))
        .header("grpc-timeout", "100m")
        .send()
        .await
        .expect("request");
    let status = slow.status();
    let body: Value = slow.json().await.expect("json");
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["code"], 4);
}

#[tokio::test]
async fn json_output_options_are_configurable() {
    let mut options = TranscodeOptions::default();
    options.json.use_proto_names = false;
    options.json.emit_defaults = false;
    options.json.deny_unknown_fields = false;
    let base = serve_echo(options).await;
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/v1/echo"),
        Some(json!({"id": "c1", "nested": {"depth": 2}, "no_such_field": 1})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["echo"]["id"], "c1");
    assert!(
        body["echo"].get("flag").is_none(),
        "defaults omitted: {body}"
    );
    assert!(
        body["echo"].get("numbers").is_none(),
        "defaults omitted: {body}"
    );
    assert_eq!(body["echo"]["nested"]["depth"], 2);

    let strict = serve_echo(TranscodeOptions::default()).await;
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{strict}/v1/echo"),
        Some(json!({"id": "c1", "no_such_field": 1})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (_, _, body) = call(
        reqwest::Method::POST,
        format!("{strict}/v1/echo"),
        Some(json!({"id": "c1"})),
    )
    .await;
    assert_eq!(body["echo"]["flag"], false, "defaults emitted: {body}");
    assert!(body["echo"].get("ratio").is_some(), "proto names: {body}");
}

#[test]
fn conflicting_rules_are_refused_naming_both_methods() {
    let conflicting: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/conflict_descriptor.bin"));
    let error = Transcoder::new(conflicting, TranscodeOptions::default())
        .expect_err("two methods on one route must be refused");
    let message = error.to_string();
    assert!(
        message.contains("conflict.v1.ConflictService.GetThing"),
        "{message}"
    );
    assert!(
        message.contains("conflict.v1.ConflictService.FindThing"),
        "{message}"
    );
}

#[test]
fn the_route_table_holds_every_binding() {
    let transcoder =
        Transcoder::new(ECHO_DESCRIPTORS, TranscodeOptions::default()).expect("routes");
    // Echo has three bindings; the seven other methods one each.
    assert_eq!(transcoder.routes().routes().len(), 10);
}

#[tokio::test]
async fn server_streams_are_server_sent_events_or_ndjson() {
    let base = serve_echo(TranscodeOptions {
        event_id_field: Some("seq".to_owned()),
        resume_field: Some("after".to_owned()),
        ..TranscodeOptions::default()
    })
    .await;
    let client = reqwest::Client::new();
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut request = client.get(format!("{base}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (status, content_type, response.text().await.expect("body"))
        }
    };

    // SSE: one event per message, the configured field as its id.
    let (status, content_type, body) =
        get("/v1/repeat/hi?count=3", &[("accept", "text/event-stream")]).await;
    assert_eq!((status, content_type.as_str()), (200, "text/event-stream"));
    let event = |seq: u32| format!("id: {seq}\ndata: {{\"seq\":\"{seq}\",\"text\":\"hi\"}}\n\n");
    assert_eq!(body, [event(1), event(2), event(3)].concat());
    // Last-Event-ID sets the resume field; the query wins when it sets it.
    let (_, _, resumed) = get(
        "/v1/repeat/hi?count=3",
        &[("accept", "text/event-stream"), ("last-event-id", "2")],
    )
    .await;
    assert_eq!(resumed, event(3));
    let (_, _, query_wins) = get(
        "/v1/repeat/hi?count=3&after=1",
        &[("accept", "text/event-stream"), ("last-event-id", "2")],
    )
    .await;
    assert_eq!(query_wins, [event(2), event(3)].concat());

    // NDJSON (anything else), grpc-gateway's shape.
    let (status, content_type, body) = get("/v1/repeat/yo?count=2", &[]).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/x-ndjson")
    );
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(
        lines,
        [
            json!({"result": {"seq": "1", "text": "yo"}}),
            json!({"result": {"seq": "2", "text": "yo"}})
        ]
    );

    // A failure after the first message ends the stream with an error
    // record; one before it is a plain REST error.
    let (_, _, ended) = get("/v1/repeat/x?count=1&fail_code=14", &[]).await;
    let last: Value = serde_json::from_str(ended.lines().last().expect("lines")).expect("JSON");
    assert_eq!(last["error"]["code"], 14, "{ended}");
    assert_eq!(last["error"]["message"], "stopped on purpose");
    assert_eq!(
        last["error"]["details"][0]["reason"], "UNAVAILABLE",
        "{ended}"
    );
    let (_, _, ended) = get(
        "/v1/repeat/x?count=1&fail_code=14",
        &[("accept", "text/event-stream")],
    )
    .await;
    assert!(
        ended.ends_with("\n\n") && ended.contains("event: error\ndata: {"),
        "{ended}"
    );
    let (status, content_type, body) = get("/v1/repeat/x?count=0&fail_code=5", &[]).await;
    assert_eq!((status, content_type.as_str()), (404, "application/json"));
    let error: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(error["message"], "nothing to repeat");
}
