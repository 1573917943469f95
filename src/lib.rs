//! inventory-service: stock per product, reservations with a timeout, and the
//! history of every change, served over gRPC, gRPC-Web and HTTP.
//!
//! # Layout
//! Each module has one job; dependencies point one way:
//! `main` -> [`server`] -> ([`api`], [`store`], [`cache`], [`telemetry`],
//! [`transcode`], [`guard`], [`config`]); [`api`] -> [`domain`]; [`store`]
//! and [`cache`] -> [`domain`] (and [`telemetry`] for their
//! instrumentation); [`guard`] -> [`transcode`] (its `grpc-timeout` parser)
//! and [`tls`].
//! [`domain`] and [`validate`] import nothing else from the crate;
//! [`transcode`] only [`validate`] (the OpenAPI document shows its rules).
//! - [`server`]: wiring. Binds nothing itself: takes listeners, opens the
//!   store, builds the domain and the tonic services, serves until shutdown.
//! - [`api`]: the gRPC handlers. Decode the protobuf request, call the
//!   domain, encode the response; the one mapping from domain errors to
//!   `tonic::Status`; health reporting.
//! - [`domain`]: the inventory rules, each decision one pure function, and
//!   the interface they need from a database ([`domain::InventoryStore`]),
//!   with an in-memory implementation. Knows neither SQL nor protobuf.
//! - [`store`]: the database implementations of that interface, SQLite
//!   (embedded default) and PostgreSQL via diesel-async. They read, lock and
//!   write rows; they decide nothing.
//! - [`cache`]: the stock cache behind the domain's
//!   [`domain::cache::StockCache`]: moka in the process, or Redis.
//! - [`guard`]: generic guards of a gRPC server: deadlines, load shedding,
//!   proper codes for malformed messages, connection caps and idle timeouts.
//!   Authentication, which knows the inventory's scopes, is in
//!   [`api::auth`].
//! - [`tls`]: the rustls configuration of both ports, reloaded when its
//!   files change.
//! - [`transcode`]: a generic REST/JSON and Connect front for tonic
//!   services, driven by the `google.api.http` rules of a descriptor set;
//!   it knows nothing about inventory.
//! - [`validate`]: the contract's field rules (`buf.validate` annotations),
//!   read from a descriptor pool and checked as tonic decodes each request,
//!   whatever protocol carried it; generic like [`transcode`].
//! - [`pb`]: the generated protobuf code and descriptor set.
//! - [`config`]: the YAML configuration, environment overrides, validation.
//! - [`telemetry`]: logs, traces and metrics, owned per server: the server
//!   span layer, the database instrumentation, `/metrics`.
//!
//! The contract is `proto/inventory/v1/inventory.proto`.
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod api;
pub mod cache;
pub mod config;
pub mod domain;
pub mod guard;
pub mod pb;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transcode;
pub mod validate;
