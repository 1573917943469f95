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
    use crate::transcode::{TranscodeLayer, TranscodeOptions};

    /// The test-only echo service (`tests/proto/echo`): the layer is tested
    /// on a service that is not the inventory.
    #[allow(
        missing_docs,
        clippy::all,
        clippy::pedantic,
        reason = "generated code: prost and tonic output"
    )]
    mod echo {
        include!(concat!(env!("OUT_DIR"), "/echo/echo.v1.rs"));
    }

    const ECHO_DESCRIPTORS: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/echo_descriptor.bin"));

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
            Transcoder::new(ECHO_DESCRIPTORS, TranscodeOptions::default())
                .expect("the echo service's rules"),
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
        let request = Request::post("/echo.v1.EchoService/Echo")
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
        assert_eq!(seen[0].1, "/echo.v1.EchoService/Echo");
        assert_eq!(
            seen[0].3,
            Bytes::from_static(b"raw"),
            "the body is not reframed"
        );
    }

    #[tokio::test]
    async fn a_rest_call_becomes_one_grpc_call_and_its_reply_json() {
        let reply = echo::EchoResponse {
            method: "Echo".into(),
            path: "a/b".into(),
            ..Default::default()
        };
        let (seen, router) = router(Ok(reply.encode_to_vec()));
        let request = Request::get("/v1/echo/abc?numbers=1&numbers=2&flag=true")
            .body(Body::empty())
            .expect("request");
        let response = layer()
            .layer(router)
            .oneshot(request)
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let json = body_json(response).await;
        assert_eq!(json["method"], "Echo");
        assert_eq!(json["path"], "a/b");

        let seen = seen.lock().expect("seen");
        let (method, path, content_type, body) = &seen[0];
        assert_eq!(
            (method, path.as_str(), content_type.as_str()),
            (
                &Method::POST,
                "/echo.v1.EchoService/Echo",
                "application/grpc"
            )
        );
        let mut frame = body.clone();
        assert_eq!(frame.get_u8(), 0, "uncompressed");
        let length = frame.get_u32() as usize;
        let sent = echo::EchoRequest::decode(&frame[..length]).expect("message");
        assert_eq!(sent.id, "abc");
        assert_eq!(sent.numbers, [1, 2]);
        assert!(sent.flag);
    }

    #[tokio::test]
    async fn a_grpc_error_becomes_its_http_status_with_a_json_body() {
        let (_, router) = router(Err((5, "product not found")));
        let request = Request::get("/v1/echo/ghost")
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

        let wrong = Request::put("/v1/echo/abc")
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
        assert!(body_json(response).await["paths"]["/v1/echo/{id}"].is_object());

        assert!(
            seen.lock().expect("seen").is_empty(),
            "none reached the router"
        );
    }
}
