//! Logs and traces. Logs go to stderr (JSON in production) and carry the
//! trace id of the request they belong to. Traces are exported over OTLP
//! (HTTP/protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, by the SDK's
//! batch processor on its own thread: a slow or absent collector drops spans,
//! it never blocks a request.

use axum::http::{HeaderMap, Request};
use opentelemetry::{
    global,
    propagation::Extractor,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, filter::LevelFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

/// Flushes buffered spans when dropped (at the end of `main`).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// `RUST_LOG` overrides the default level; `json` for production.
pub fn init(json: bool) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    let logs = if json {
        // Every open span, outermost first: the request's (with its trace id)
        // as well as the innermost, which is where most lines are logged.
        fmt::layer().json().with_current_span(false).with_span_list(true).with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).boxed()
    }
    .with_filter(filter);
    global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").and_then(|_| {
        // The exporter reads the OTEL_EXPORTER_OTLP_* variables itself.
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build();
        match exporter {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name("ticketing").build())
                    .build(),
            ),
            Err(error) => {
                eprintln!("ticketing: OTLP export disabled: {error}");
                None
            }
        }
    });
    // Log verbosity does not decide what is traced: spans at INFO are exported.
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("ticketing")).with_filter(LevelFilter::INFO));
    let _ = tracing_subscriber::registry().with(logs).with(traces).try_init();
    Telemetry { provider }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of one request, REST or gRPC alike: continues the caller's W3C
/// `traceparent` when there is one, and records the trace id so every log
/// line of the request carries it.
pub fn request_span<B>(request: &Request<B>) -> Span {
    let span = tracing::info_span!(
        "request",
        http.method = %request.method(),
        http.path = %request.uri().path(),
        trace_id = tracing::field::Empty,
        // Set when the call was made with an API key: every line of the
        // request names it.
        api_key_id = tracing::field::Empty,
    );
    // Nothing records this span (its level is filtered out and no trace
    // export wants it): its parent and trace id would be read for no one.
    if span.is_disabled() {
        return span;
    }
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(&Headers(request.headers())));
    let callers = parent.span().span_context().trace_id();
    let _ = span.set_parent(parent);
    // Without trace export the span has no context of its own: the caller's
    // trace id still ties the logs to the caller's trace.
    let trace_id = match span.context().span().span_context().trace_id() {
        opentelemetry::trace::TraceId::INVALID => callers,
        own => own,
    };
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    span
}
