//! [`AuthLayer`]: one check of the caller for every protocol.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, header};
use tonic::body::Body;
use tonic_types::{ErrorDetails, StatusExt as _};
use tower::{Layer, Service};

use super::scopes::required_scope;
use super::tokens::{AuthError, Authenticator, Principal};
use crate::api::status::ERROR_DOMAIN;
use crate::domain::actor;

/// Checks the bearer token of every call that needs a scope (see
/// [`required_scope`]); `None` lets every call through, anonymous.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authenticator: Option<Arc<Authenticator>>,
}

impl AuthLayer {
    /// Checks with `authenticator`, or not at all.
    pub fn new(authenticator: Option<Authenticator>) -> Self {
        Self {
            authenticator: authenticator.map(Arc::new),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    authenticator: Option<Arc<Authenticator>>,
}

impl<S, B> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let Some(authenticator) = &self.authenticator else {
            return Box::pin(self.inner.call(request));
        };
        let Some(scope) = required_scope(request.uri().path()) else {
            return Box::pin(self.inner.call(request));
        };
        let principal = match authenticator.authenticate(
            request
                .headers()
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
        ) {
            Ok(principal) => principal,
            Err(error) => {
                tracing::Span::current().record("otel.status_description", error.to_string());
                return Box::pin(std::future::ready(Ok(unauthenticated(&error))));
            }
        };
        tracing::Span::current().record("enduser.id", &*principal.subject);
        if !principal.scopes.contains(scope) {
            return Box::pin(std::future::ready(Ok(permission_denied(&principal, scope))));
        }
        let subject = principal.subject.clone();
        request.extensions_mut().insert(principal);
        let call = self.inner.call(request);
        Box::pin(actor::acting_as(Some(subject), call))
    }
}

/// UNAUTHENTICATED, with the challenge of RFC 6750.
fn unauthenticated(error: &AuthError) -> Response<Body> {
    let (reason, challenge) = match error {
        AuthError::Missing => ("TOKEN_MISSING", "Bearer realm=\"inventory-service\""),
        AuthError::Malformed => (
            "TOKEN_MALFORMED",
            "Bearer realm=\"inventory-service\", error=\"invalid_request\"",
        ),
        AuthError::Invalid(_) => (
            "TOKEN_INVALID",
            "Bearer realm=\"inventory-service\", error=\"invalid_token\"",
        ),
    };
    let status = tonic::Status::with_error_details(
        tonic::Code::Unauthenticated,
        error.to_string(),
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, []),
    );
    let mut response = status.into_http();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// PERMISSION_DENIED: the token is good but does not grant `scope`.
fn permission_denied(principal: &Principal, scope: &'static str) -> Response<Body> {
    let status = tonic::Status::with_error_details(
        tonic::Code::PermissionDenied,
        format!(
            "this call needs the scope {scope}, which the token of {} does not grant",
            principal.subject
        ),
        ErrorDetails::with_error_info(
            "SCOPE_MISSING",
            ERROR_DOMAIN,
            [("required_scope".to_owned(), scope.to_owned())],
        ),
    );
    let mut response = status.into_http();
    if let Ok(challenge) = HeaderValue::from_str(&format!(
        "Bearer realm=\"inventory-service\", error=\"insufficient_scope\", scope=\"{scope}\""
    )) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}
