//! A generic REST/JSON and Connect front for tonic services, driven by the
//! `google.api.http` rules in a descriptor set. It knows nothing about any
//! particular service: hand it the encoded `FileDescriptorSet` of any tonic
//! service whose methods carry HttpRules.
//!
//! [`TranscodeLayer`] wraps the tonic router. Per request, [`Transcode`]:
//! - passes gRPC (`application/grpc*`) through untouched, unboxed;
//! - serves `GET /openapi.json`, generated from the same descriptors;
//! - answers Connect unary calls (`POST /pkg.Service/Method` with
//!   `application/json` or `application/proto`);
//! - matches REST calls against the route table, builds the request message
//!   from path, query and body (proto3 JSON mapping), calls the router
//!   in-process with a gRPC request, and renders the reply as JSON (or as the
//!   JSON error `{"code","message","details"}` with the mapped HTTP status);
//! - answers anything else with a JSON 404, or 405 for a known path.
//!
//! Because the REST call becomes a gRPC call to the same router, it runs the
//! same handler, interceptors and tracing as any gRPC call.
//!
//! Laid out like tower-http's middleware: [`TranscodeLayer`] (configuration
//! only) makes [`Transcode`] (the service; `poll_ready` delegates), whose
//! [`ResponseFuture`] passes gRPC through without boxing. [`Transcoder`]
//! holds what is decided at start (descriptors, routes, the OpenAPI
//! document) and dispatches the rest; REST and Connect calls are made in
//! their own files (`rest.rs`, `connect.rs`). A REST reply of a common
//! shape is written as JSON straight from its protobuf bytes
//! (`wire_json.rs`), exactly as the general path through a dynamic message
//! would write it.
//!
//! # Example
//!
//! ```
//! use http::{Request, StatusCode};
//! use inventory_service::transcode::{TranscodeLayer, TranscodeOptions, Transcoder};
//! use tonic::body::Body;
//! use tower::{Layer as _, ServiceExt as _};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Any tonic service's descriptor set (encoded, with its imports).
//! let transcoder = Transcoder::new(
//!     inventory_service::pb::FILE_DESCRIPTOR_SET,
//!     TranscodeOptions::default(),
//! )?;
//! // In a server: `Server::builder().accept_http1(true).layer(layer)`.
//! let layer = TranscodeLayer::new(transcoder);
//! // Here a stand-in for the tonic router, which gRPC calls would reach.
//! let router = tower::service_fn(|_: Request<Body>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
//! });
//! let service = layer.layer(router);
//! let request = Request::get("/openapi.json").body(Body::empty())?;
//! let response = tokio::runtime::Builder::new_current_thread()
//!     .build()?
//!     .block_on(service.oneshot(request))?;
//! assert_eq!(response.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```
//!
//! Server-streaming methods are answered as Server-Sent Events or
//! newline-delimited JSON (`stream.rs`); client streaming is refused at
//! start.
//!
//! # Differences from grpc-gateway
//! No separate proxy process or network hop; response headers carry metadata as `Grpc-Metadata-<k>` and
//! trailers as `Grpc-Trailer-<k>` (HTTP/1.1 has no trailers after a JSON
//! body).

mod connect;
mod errors;
mod future;
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod json;
mod layer;
mod openapi;
mod request;
mod rest;
mod routes;
mod service;
mod stream;
pub mod template;
mod transcoder;
mod wire_json;

pub use errors::{code_name, connect_code, http_status};
pub use future::ResponseFuture;
pub use grpc::parse_grpc_timeout;
pub use json::JsonOptions;
pub(crate) use json::has_floats;
pub use layer::TranscodeLayer;
pub use routes::{RouteError, RouteTable};
pub use service::Transcode;
pub use transcoder::{BuildError, TranscodeError, TranscodeOptions, TranscodedCall, Transcoder};

/// The `google.api` messages (HttpRule), generated from the vendored protos.
#[allow(
    missing_docs,
    dead_code,
    clippy::all,
    clippy::pedantic,
    reason = "generated code: prost output, of which only HttpRule is used"
)]
mod google_api {
    include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
}
