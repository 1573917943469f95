//! Entry points for the fuzz targets in `fuzz/` and for the tests that
//! replay what they found (`tests/fuzz_regressions.rs`). Each takes
//! arbitrary bytes, runs one piece of the layer on them, and panics only if
//! the layer breaks one of its own promises (never a panic, never a 5xx
//! for a client's bytes).

use std::convert::Infallible;
use std::sync::OnceLock;

use http::{HeaderValue, Method, Request, Response};
use tonic::body::Body;
use tower::{Layer as _, ServiceExt as _};

use super::template::{PathTemplate, percent_decode};
use super::{TranscodeLayer, TranscodeOptions, Transcoder};

/// Splits `data` at its first newline: (before, after).
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// The first line is a path template, the rest a request path: parsing,
/// matching and percent-decoding never panic, and a match yields one value
/// per variable.
pub fn template_and_path(data: &[u8]) {
    let (template, path) = split_line(data);
    let (Ok(template), Ok(path)) = (std::str::from_utf8(template), std::str::from_utf8(path))
    else {
        return;
    };
    let _ = percent_decode(path, false);
    let _ = percent_decode(path, true);
    let Ok(parsed) = PathTemplate::parse(template) else {
        return;
    };
    let _ = parsed.shape();
    if let Some(values) = parsed.matches(path) {
        assert_eq!(
            values.len(),
            parsed.variables.len(),
            "{template:?} {path:?}"
        );
    }
    // A template that parses, parsed again from its source, is the same.
    assert_eq!(PathTemplate::parse(&parsed.source).as_ref(), Ok(&parsed));
}

/// The layer over the inventory's descriptors, in front of a router that
/// answers every call OK with an empty message.
fn layer() -> &'static TranscodeLayer {
    static LAYER: OnceLock<TranscodeLayer> = OnceLock::new();
    LAYER.get_or_init(|| {
        let transcoder =
            Transcoder::new(crate::pb::FILE_DESCRIPTOR_SET, TranscodeOptions::default());
        TranscodeLayer::new(transcoder.unwrap_or_else(|e| panic!("the inventory's rules: {e}")))
    })
}

/// The methods a request may use, chosen by the first byte.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

/// The first byte picks a method; the first line after it is the path and
/// query; the rest is a JSON body (REST, or Connect for `/pkg.Service/M`
/// paths). Whatever the bytes, the layer answers, and never with a 5xx: a
/// client's bytes are the client's fault.
pub async fn request(data: &[u8]) {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    let (target, body) = split_line(rest);
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let Ok(request) = Request::builder()
        .method(METHODS[usize::from(*selector) % METHODS.len()].clone())
        .uri(target)
        .header("content-type", "application/json")
        .body(Body::new(http_body_util::Full::new(
            bytes::Bytes::copy_from_slice(body),
        )))
    else {
        return;
    };
    let router = tower::service_fn(|_: Request<Body>| async {
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        Ok::<_, Infallible>(response)
    });
    let response = layer()
        .layer(router)
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    assert!(
        !response.status().is_server_error(),
        "{target:?} answered {}",
        response.status()
    );
}
