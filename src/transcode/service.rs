//! [`Transcode`]: the service, which passes gRPC through and hands every
//! other request to the [`Transcoder`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tower::Service;

use super::future::ResponseFuture;
use super::transcoder::{Transcoder, content_type};

/// The service made by [`super::TranscodeLayer`].
#[derive(Debug, Clone)]
pub struct Transcode<S> {
    /// The tonic router: gRPC calls, and the calls REST and Connect become.
    inner: S,
    /// Routes, descriptors and options.
    transcoder: Arc<Transcoder>,
}

impl<S> Transcode<S> {
    /// `inner` behind `transcoder`.
    pub(super) fn new(inner: S, transcoder: Arc<Transcoder>) -> Self {
        Self { inner, transcoder }
    }
}

impl<S> Service<Request<Body>> for Transcode<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let content_type = content_type(request.headers());
        if content_type.starts_with("application/grpc") {
            return ResponseFuture::inner(self.inner.call(request));
        }
        // The clone takes the place of the service that was made ready.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let transcoder = self.transcoder.clone();
        ResponseFuture::answer(Box::pin(
            async move { transcoder.handle(inner, request).await },
        ))
    }
}

#[cfg(test)]
mod tests {
    //! The layer against a stub router, without a socket: what the router
    //! receives for each kind of request, and what the caller gets back.

    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
    use http::{HeaderMap, HeaderValue, Method, StatusCode};
    use http_body::Frame;
    use http_body_util::{BodyExt as _, StreamBody};
    use prost::Message as _;
    use tower::{Layer as _, ServiceExt as _};

    use super::*;
    use crate::pb;
    use crate::transcode::{TranscodeLayer, TranscodeOptions};

    /// What the stub router saw of each request: method, path, content type
    /// and body.
    type Seen = Arc<Mutex<Vec<(Method, String, String, Bytes)>>>;

    /// A router that records each request and answers `reply`: a gRPC
    /// message with status OK, or a trailers-only status.
    fn router(
        reply: Result<Vec<u8>, (i32, &'static str)>,
    ) -> (
        Seen,
        impl Service<
            Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future = impl Send + 'static,
        > + Clone
        + Send
        + 'static,
    ) {
        let seen = Seen::default();
        let record = seen.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let record = record.clone();
            let reply = reply.clone();
            async move {
                let (parts, body) = request.into_parts();
                let content_type = parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let bytes = body
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                record.lock().expect("seen").push((
                    parts.method,
                    parts.uri.path().to_owned(),
                    content_type,
                    bytes,
                ));
                let mut response = match reply {
                    Ok(message) => {
                        let mut frame = BytesMut::new();
                        frame.put_u8(0);
                        frame.put_u32(u32::try_from(message.len()).expect("small"));
                        frame.put_slice(&message);
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", HeaderValue::from_static("0"));
                        let frames = [
                            Ok::<_, Infallible>(Frame::data(frame.freeze())),
                            Ok(Frame::trailers(trailers)),
                        ];
                        Response::new(Body::new(StreamBody::new(tokio_stream::iter(frames))))
                    }
                    Err((code, message)) => {
                        let mut response = Response::new(Body::empty());
                        let headers = response.headers_mut();
                        headers.insert("grpc-status", HeaderValue::from(code));
                        headers.insert("grpc-message", HeaderValue::from_static(message));
                        response
                    }
                };
                response
                    .headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/grpc"));
                Ok::<_, Infallible>(response)
            }
        });
        (seen, service)
    }

    fn layer() -> TranscodeLayer {
        TranscodeLayer::new(
            Transcoder::new(pb::FILE_DESCRIPTOR_SET, TranscodeOptions::default())
                .expect("the service's own rules"),
        )
    }

    async fn body_json(response: Response<Body>) -> serde_json::Value {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn grpc_passes_through_untouched() {
        let (seen, router) = router(Ok(Vec::new()));
        let request = Request::post("/inventory.v1.InventoryService/CheckInventory")
            .header("content-type", "application/grpc")
            .body(Body::new(http_body_util::Full::new(Bytes::from_static(
                b"raw",
            ))))
            .expect("request");
        let response = layer()
            .layer(router)
            .oneshot(request)
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let seen = seen.lock().expect("seen");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1, "/inventory.v1.InventoryService/CheckInventory");
        assert_eq!(
            seen[0].3,
            Bytes::from_static(b"raw"),
            "the body is not reframed"
        );
    }

    #[tokio::test]
    async fn a_rest_call_becomes_one_grpc_call_and_its_reply_json() {
        let reply = pb::CheckInventoryResponse {
            product_id: "p-1".into(),
            current_quantity: 7,
            available: true,
            ..Default::default()
        };
        let (seen, router) = router(Ok(reply.encode_to_vec()));
        let request = Request::get("/api/v1/inventory/p-1?required_quantity=2")
            .body(Body::empty())
            .expect("request");
        let response = layer()
            .layer(router)
            .oneshot(request)
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let json = body_json(response).await;
        assert_eq!(json["product_id"], "p-1");
        assert_eq!(json["current_quantity"], 7);

        let seen = seen.lock().expect("seen");
        let (method, path, content_type, body) = &seen[0];
        assert_eq!(
            (method, path.as_str(), content_type.as_str()),
            (
                &Method::POST,
                "/inventory.v1.InventoryService/CheckInventory",
                "application/grpc"
            )
        );
        let mut frame = body.clone();
        assert_eq!(frame.get_u8(), 0, "uncompressed");
        let length = frame.get_u32() as usize;
        let sent = pb::CheckInventoryRequest::decode(&frame[..length]).expect("message");
        assert_eq!(sent.product_id, "p-1");
        assert_eq!(sent.required_quantity, 2);
    }

    #[tokio::test]
    async fn a_grpc_error_becomes_its_http_status_with_a_json_body() {
        let (_, router) = router(Err((5, "product not found")));
        let request = Request::get("/api/v1/inventory/ghost")
            .body(Body::empty())
            .expect("request");
        let response = layer()
            .layer(router)
            .oneshot(request)
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let json = body_json(response).await;
        assert_eq!(json["code"], 5);
        assert_eq!(json["message"], "product not found");
    }

    #[tokio::test]
    async fn the_layer_answers_unknown_paths_wrong_methods_and_the_openapi_itself() {
        let (seen, router) = router(Ok(Vec::new()));
        let service = layer().layer(router);

        let missing = Request::get("/nowhere")
            .body(Body::empty())
            .expect("request");
        let response = service.clone().oneshot(missing).await.expect("response");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(body_json(response).await["code"], 5);

        let wrong = Request::delete("/api/v1/inventory/p-1")
            .body(Body::empty())
            .expect("request");
        let response = service.clone().oneshot(wrong).await.expect("response");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        let allow = response.headers().get("allow").cloned();
        assert!(allow.is_some_and(|a| a.to_str().is_ok_and(|a| a.contains("GET"))));

        let openapi = Request::get("/openapi.json")
            .body(Body::empty())
            .expect("request");
        let response = service.oneshot(openapi).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(body_json(response).await["paths"]["/api/v1/inventory/{product_id}"].is_object());

        assert!(
            seen.lock().expect("seen").is_empty(),
            "none reached the router"
        );
    }
}
