//! A wrapper around each gRPC service that times every call into
//! [`Telemetry`] and maps tonic's "message too large" decode error
//! (`OUT_OF_RANGE`) to `RESOURCE_EXHAUSTED`, the code the protocol promises for
//! requests over the configured byte limit.
//!
//! Unary errors are sent as trailers-only responses, so the status is visible
//! in the response headers; a response without `grpc-status` in its headers is
//! a success (its status follows in the trailers).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::body::Body;
use tonic::codegen::http::{HeaderValue, Request, Response};
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;

use crate::telemetry::Telemetry;

/// `grpc-status` of OUT_OF_RANGE and RESOURCE_EXHAUSTED.
const OUT_OF_RANGE: &[u8] = b"11";
const RESOURCE_EXHAUSTED: &str = "8";

/// A timed service.
#[derive(Debug, Clone)]
pub struct Observed<S> {
    inner: S,
    telemetry: Arc<Telemetry>,
}

impl<S> Observed<S> {
    /// Wraps `inner`, recording into `telemetry`.
    pub fn new(inner: S, telemetry: Arc<Telemetry>) -> Self {
        Self { inner, telemetry }
    }
}

impl<S: NamedService> NamedService for Observed<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<Body>> for Observed<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let method = request.uri().path().to_string();
        let started = Instant::now();
        // The clone that was polled ready serves this call (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let telemetry = self.telemetry.clone();
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            let headers = response.headers_mut();
            // No handler returns OUT_OF_RANGE: here it is always the decoder's limit.
            if headers.get("grpc-status").map(HeaderValue::as_bytes) == Some(OUT_OF_RANGE) {
                headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
            }
            let error = headers
                .get("grpc-status")
                .is_some_and(|s| s.as_bytes() != b"0");
            telemetry.record(&method, started.elapsed(), error);
            Ok(response)
        })
    }
}
