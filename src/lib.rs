//! inventory-service: stock per product, reservations with a timeout, and the
//! history of every change, served over gRPC, gRPC-Web and HTTP.
//!
//! # Layout
//! A request flows top-down through these modules; each has one job.
//! - [`server`]: wiring. Binds nothing itself: takes listeners, builds the
//!   store, the domain and the tonic services, serves until shutdown.
//! - [`api`]: the gRPC handlers. Decode the protobuf request, call the
//!   domain, encode the response; the one mapping from domain errors to
//!   `tonic::Status`; health reporting.
//! - [`domain`]: the inventory rules and the error type. Knows neither SQL
//!   nor protobuf.
//! - [`store`]: persistence behind one trait, [`store::InventoryStore`];
//!   SQLite (embedded default) and PostgreSQL via diesel-async.
//! - [`transcode`]: a generic REST/JSON and Connect front for tonic
//!   services, driven by the `google.api.http` rules of a descriptor set;
//!   it knows nothing about inventory.
//! - [`pb`]: the generated protobuf code and descriptor set.
//! - [`config`]: the YAML configuration, environment overrides, validation.
//! - [`telemetry`]: logs, traces and metrics, owned per server: the server
//!   span layer, the database instrumentation, `/metrics`.
//!
//! The contract is `proto/inventory/v1/inventory.proto`.
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod api;
pub mod config;
pub mod domain;
pub mod pb;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod transcode;
