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

/// `grpc-status` of OUT_OF_RANGE, RESOURCE_EXHAUSTED and UNIMPLEMENTED.
const OUT_OF_RANGE: &[u8] = b"11";
const RESOURCE_EXHAUSTED: &str = "8";
const UNIMPLEMENTED: &[u8] = b"12";

/// The one telemetry key of every unknown method of a service:
/// `/ldp.v1.Collector/Nope` becomes `/ldp.v1.Collector/(unimplemented)`.
fn unimplemented_key(path: &str) -> String {
    let service = path.rsplit_once('/').map_or(path, |(service, _)| service);
    format!("{service}/(unimplemented)")
}

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
            let status = headers.get("grpc-status").map(HeaderValue::as_bytes);
            let error = status.is_some_and(|s| s != b"0");
            // Any client may call made-up methods; recording each under its own
            // path would grow the histogram map (about 190 KB each) without bound.
            let method = if status == Some(UNIMPLEMENTED) {
                unimplemented_key(&method)
            } else {
                method
            };
            telemetry.record(&method, started.elapsed(), error);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::future::Ready;

    use super::*;

    /// A service that answers every call with `grpc-status: 12` (UNIMPLEMENTED).
    #[derive(Clone)]
    struct Unimplemented;

    impl Service<Request<Body>> for Unimplemented {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = Ready<Result<Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            let mut response = Response::new(Body::empty());
            response
                .headers_mut()
                .insert("grpc-status", HeaderValue::from_static("12"));
            std::future::ready(Ok(response))
        }
    }

    /// Regression: every distinct made-up method path got its own latency
    /// histogram, so unauthenticated calls could grow server memory without bound.
    #[tokio::test]
    async fn unknown_methods_share_one_telemetry_entry() {
        let telemetry = Arc::new(Telemetry::default());
        let mut observed = Observed::new(Unimplemented, telemetry.clone());
        for i in 0..100 {
            let request = Request::builder()
                .uri(format!("/ldp.v1.Collector/Made{i}"))
                .body(Body::empty())
                .unwrap();
            observed.call(request).await.unwrap();
        }
        let rpcs = telemetry.snapshot().rpcs;
        assert_eq!(rpcs.len(), 1, "{rpcs:?}");
        assert_eq!(rpcs[0].method, "/ldp.v1.Collector/(unimplemented)");
        assert_eq!((rpcs[0].calls, rpcs[0].errors), (100, 100));
    }
}
