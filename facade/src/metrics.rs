//! Prometheus metrics: the process-wide recorder, the per-request layer that
//! every transport passes through, and the admin listener's scrape.

use std::{sync::OnceLock, time::Instant};

use axum::http::Method;
use axum::{
    extract::{MatchedPath, Request},
    http::header::CONTENT_TYPE,
    middleware::Next,
    response::Response,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
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
/// ids, so the label set stays bounded.
pub async fn track(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let content_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let transport = match content_type {
        t if t.starts_with("application/grpc-web") => "grpc-web",
        t if t.starts_with("application/grpc") => "grpc",
        _ => "rest",
    };
    // Every label comes from a closed set: served gRPC methods, route
    // templates with a standard method, or one label for anything else.
    let route = match (&matched, transport) {
        (_, "grpc" | "grpc-web") => Services::method_label(request.uri().path()).to_owned(),
        (None, _) => UNMATCHED.to_owned(),
        (Some(path), _) => format!("{} {}", standard_method(request.method()), path.as_str()),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let code = if transport == "rest" {
        response.status().as_str().to_owned()
    } else {
        // Errors are trailers-only responses with the status in the headers;
        // a unary success carries it in the trailers.
        response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0").to_owned()
    };
    metrics::histogram!("ticketing_request_duration_seconds", "transport" => transport, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("ticketing_requests_total", "transport" => transport, "route" => route, "code" => code)
        .increment(1);
    response
}
