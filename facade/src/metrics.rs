//! Prometheus metrics: the process-wide recorder, the per-request layer that
//! every transport passes through, and the admin listener's scrape.

use std::{
    pin::Pin,
    sync::{Arc, LazyLock, OnceLock, RwLock},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::http::Method;
use axum::{
    extract::{MatchedPath, Request},
    http::header::CONTENT_TYPE,
    response::Response,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rustc_hash::FxHashMap;
use ticketing_service::grpc::Services;

/// The route label of a request that matched no route.
const UNMATCHED: &str = "unmatched";

/// The method as a label: one of HTTP's own, or `OTHER` (a client may send
/// any token as a method).
fn standard_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Latency buckets from 1 ms to 10 s, fine enough to read p50/p95/p99.
const SECONDS_BUCKETS: &[f64] =
    &[0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0];

/// Time in a waiting room: from a second to the hours a stadium on-sale takes.
const QUEUE_WAIT_BUCKETS: &[f64] =
    &[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0];

/// The recorder, installed once per process (tests start many servers in one).
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("static buckets are valid")
            // A full name wins over the suffix.
            .set_buckets_for_metric(Matcher::Full("ticketing_queue_wait_seconds".into()), QUEUE_WAIT_BUCKETS)
            .expect("static buckets are valid")
            .install_recorder()
            .expect("no other metrics recorder in this process");
        metrics::gauge!("ticketing_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// Counts and times every request by transport, templated route and status:
/// `ticketing_requests_total`, `ticketing_request_duration_seconds`. Routes
/// are templates (`GET /v1/events/{event}`) or gRPC method names, never raw
/// ids, so the label set stays bounded. A tower layer that wraps the call's
/// future: it neither clones the stack below it nor boxes the call.
#[derive(Clone, Copy)]
pub struct TrackLayer;

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track { inner }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
}

impl<S, E> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response, Error = E>,
{
    type Response = Response;
    type Error = E;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = RouteMetrics::of(&request);
        Tracked { call: self.inner.call(request), route, started: Instant::now() }
    }
}

pin_project_lite::pin_project! {
    /// A call's future, recorded when it answers.
    pub struct Tracked<F> {
        #[pin]
        call: F,
        route: Arc<RouteMetrics>,
        started: Instant,
    }
}

impl<F, E> Future for Tracked<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answered = std::task::ready!(this.call.poll(cx));
        if let Ok(response) = &answered {
            this.route.record(response, this.started.elapsed());
        }
        Poll::Ready(answered)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Transport {
    Rest,
    Grpc,
    GrpcWeb,
}

impl Transport {
    fn of(request: &Request) -> Transport {
        let content_type = request.headers().get(CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or_default();
        if content_type.starts_with(b"application/grpc-web") {
            Transport::GrpcWeb
        } else if content_type.starts_with(b"application/grpc") {
            Transport::Grpc
        } else {
            Transport::Rest
        }
    }

    fn label(self) -> &'static str {
        match self {
            Transport::Rest => "rest",
            Transport::Grpc => "grpc",
            Transport::GrpcWeb => "grpc-web",
        }
    }
}

/// One route's handles, registered on its first request: the recorder's
/// lookup by labels (and the label strings built for it) cost more than the
/// recording itself on a cached read.
struct RouteMetrics {
    transport: Transport,
    route: String,
    duration: metrics::Histogram,
    /// By status (REST) or gRPC code: a closed set of at most a few hundred.
    answers: RwLock<Vec<(u16, metrics::Counter)>>,
}

/// Every route's handles: by transport and method, then by route. Hashed
/// with Fx, not SipHash: the keys come from closed sets (see `of`), so there
/// is no flood to resist, and two SipHashes were a tenth of this layer.
type Routes = FxHashMap<(Transport, &'static str), FxHashMap<String, Arc<RouteMetrics>>>;

impl RouteMetrics {
    fn of(request: &Request) -> Arc<RouteMetrics> {
        static ROUTES: LazyLock<RwLock<Routes>> = LazyLock::new(Default::default);
        let transport = Transport::of(request);
        // Every label comes from a closed set: served gRPC methods, route
        // templates with a standard method, or one label for anything else.
        let (method, route) = match (transport, request.extensions().get::<MatchedPath>()) {
            (Transport::Grpc | Transport::GrpcWeb, _) => ("", Services::method_label(request.uri().path())),
            (Transport::Rest, None) => ("", UNMATCHED),
            (Transport::Rest, Some(path)) => (standard_method(request.method()), path.as_str()),
        };
        let known = ROUTES
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(transport, method))
            .and_then(|r| r.get(route))
            .cloned();
        known.unwrap_or_else(|| {
            let mut routes = ROUTES.write().unwrap_or_else(|p| p.into_inner());
            let label = if method.is_empty() { route.to_owned() } else { format!("{method} {route}") };
            routes
                .entry((transport, method))
                .or_default()
                .entry(route.to_owned())
                .or_insert_with(|| {
                    Arc::new(RouteMetrics {
                        transport,
                        duration: metrics::histogram!(
                            "ticketing_request_duration_seconds",
                            "transport" => transport.label(),
                            "route" => label.clone()
                        ),
                        route: label,
                        answers: RwLock::default(),
                    })
                })
                .clone()
        })
    }

    fn record(&self, response: &Response, took: Duration) {
        self.duration.record(took.as_secs_f64());
        let code = match self.transport {
            Transport::Rest => response.status().as_u16(),
            // Errors are trailers-only responses with the status in the
            // headers; a unary success carries it in the trailers. A code
            // this server would not send counts as UNKNOWN (2).
            Transport::Grpc | Transport::GrpcWeb => response
                .headers()
                .get(crate::header_names::GRPC_STATUS)
                .map_or(Some(0), |v| v.to_str().ok().and_then(|v| v.parse::<u16>().ok()))
                .filter(|code| *code <= 16)
                .unwrap_or(2),
        };
        if let Some((_, counter)) =
            self.answers.read().unwrap_or_else(|p| p.into_inner()).iter().find(|(known, _)| *known == code)
        {
            counter.increment(1);
            return;
        }
        let mut answers = self.answers.write().unwrap_or_else(|p| p.into_inner());
        if !answers.iter().any(|(known, _)| *known == code) {
            let counter = metrics::counter!(
                "ticketing_requests_total",
                "transport" => self.transport.label(),
                "route" => self.route.clone(),
                "code" => code.to_string()
            );
            answers.push((code, counter));
        }
        if let Some((_, counter)) = answers.iter().find(|(known, _)| *known == code) {
            counter.increment(1);
        }
    }
}
