//! One public port for gRPC, gRPC-Web and REST (routed by path: gRPC lives
//! under `/ticketing.v1.X/…`, REST under `/v1/…`), plus the internal admin
//! listener. SIGTERM drains: new connections stop, in-flight requests finish
//! within the grace period.

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use std::{
    future::IntoFuture,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use anyhow::Context as _;
use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
    serve::ListenerExt as _,
};
use metrics_exporter_prometheus::PrometheusHandle;
use scoped_futures::ScopedFutureExt;
use serde_json::json;
use ticketing_domain::{Code, Error};
use ticketing_service::{
    AppState, Config,
    auth::layer::{AuthLayer, PeerAddr},
    grpc::{self, Services},
    load_class::LoadClass,
};
use ticketing_store::inventory;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};
use tower::{ServiceBuilder, util::option_layer};
use tower_http::trace::TraceLayer;

use crate::{
    overload::{Bulkheads, OverloadLayer},
    respond, rest,
};

/// How often readiness of Postgres and Redis is re-checked for gRPC health.
const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(2);

/// A server started in the background (tests, and `serve` itself).
pub struct RunningServer {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// What the server runs on (its pools, caches and lanes).
    pub state: AppState,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Drains and stops; returns once every in-flight request has finished
    /// (or the grace period ran out).
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await?
    }

    /// Waits until the server ends by itself (it does not, unless it fails).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }

    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Binds both listeners (so their ports are known, even when configured as
/// port 0) and serves in the background.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    let listener =
        TcpListener::bind(config.listen_addr).await.with_context(|| format!("binding {}", config.listen_addr))?;
    let admin_listener = TcpListener::bind(config.admin_listen_addr)
        .await
        .with_context(|| format!("binding {}", config.admin_listen_addr))?;
    let addr = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    // Before the state: what it records while it is built (the payment
    // breaker's starting state) would go nowhere otherwise.
    if config.metrics_enabled {
        crate::metrics::install();
    }
    let state = AppState::new(config).map_err(anyhow::Error::msg)?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(state.clone(), listener, admin_listener, stopped));
    Ok(RunningServer { addr, admin_addr, state, stop, task })
}

async fn run(
    state: AppState,
    listener: TcpListener,
    admin_listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let services = Services::new(&state);
    let (reporter, health) = tonic_health::server::health_reporter();
    // Known and NOT_SERVING until the first check: a probe in between got
    // NOT_FOUND ("service not registered") for every service.
    grpc::report_health(&reporter, tonic_health::ServingStatus::NotServing).await;
    let health_task = tokio::spawn(grpc::watch_health(state.clone(), reporter, HEALTH_CHECK_EVERY));
    let draining = Arc::new(AtomicBool::new(false));

    let metrics = state.config.metrics_enabled.then(crate::metrics::install);
    let public = public_router(&state, &services, health);
    let admin = admin_router(state.clone(), draining.clone(), metrics);
    let public = serve_public(listener, public, PublicLimits::from(&*state.config), stopped.clone());
    // The admin listener serves on through the drain, so probes read
    // `draining` from /readyz (and metrics are scraped) until the end.
    let admin = axum::serve(without_nagle(admin_listener), admin).into_future();
    let public = tokio::spawn(public);
    let admin = tokio::spawn(admin);

    let _ = stopped.wait_for(|stop| *stop).await;
    draining.store(true, Ordering::SeqCst);
    // Live streams would hold their connections past any grace period:
    // they end now, with a status that tells clients to reconnect elsewhere.
    state.live.close();
    tracing::info!(grace_s = state.config.shutdown_grace.as_secs(), "shutting down: draining in-flight requests");
    match tokio::time::timeout(state.config.shutdown_grace, public).await {
        Ok(result) => result?.context("public listener")?,
        Err(_) => tracing::warn!("grace period over; closing the connections still open"),
    }
    admin.abort();
    health_task.abort();
    state.live.shutdown().await;
    state.redis.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn signalled(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

fn public_router(
    state: &AppState,
    services: &Services,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) -> Router {
    let max_bytes = state.config.max_request_bytes;
    services
        .routes(health, max_bytes)
        .into_axum_router()
        .merge(rest::router(services.clone()))
        .fallback(not_found)
        // One layer, not one per middleware (nor one per route): the router
        // boxes every route's service once per `layer` call and clones each
        // box per request, and a `from_fn` layer clones everything below it
        // once more. Outside-in, in the order listed; they all run after
        // routing, so the metrics and overload control see the matched route.
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http().make_span_with(crate::telemetry::request_span))
                .layer(rest::AnswerFirst(rest::plain_options))
                .layer(crate::cors::ForBrowsersLayer::new(&state.config))
                .layer(AuthLayer::new(state.tokens.clone(), state.config.trusted_proxies.clone()))
                // After authentication: an API key becomes its creator for the call.
                .layer(crate::api_key_auth::ApiKeyLayer::new(state.clone()))
                .layer(option_layer(state.config.metrics_enabled.then_some(crate::metrics::TrackLayer)))
                .layer(rest::AnswerFirst(rest::custom_method_misuse))
                .layer(OverloadLayer::new(Bulkheads::new(&state.config), load_class))
                .layer(DefaultBodyLimit::max(max_bytes)),
        )
        // Handlers without state (the 404, the method fallbacks) stay boxed
        // until the router is given its state, and a boxed handler is built
        // into a route, the whole stack above included, on every request.
        .with_state(())
}

/// A request's load class: its REST operation's, or its gRPC method's as
/// the service declares it. Anything else (documents, unknown paths and
/// methods) is answered without the database and passes.
fn load_class(request: &Request) -> Option<LoadClass> {
    let path = request.uri().path();
    rest::load_class(request).or_else(|| Services::serves(path).then(|| Services::load_class(path)))
}

/// Unknown paths: gRPC callers get UNIMPLEMENTED, REST callers a JSON 404.
async fn not_found(request: Request) -> Response {
    let grpc = respond::is_grpc(&request);
    let path = request.uri().path();
    let error = if grpc {
        Error::new(Code::Unimplemented, format!("unknown method {path}"))
    } else {
        Error::new(Code::NotFound, format!("no route for {} {path}", request.method()))
    };
    respond::error_response(grpc, error)
}

/// Binds the worker's admin listener (`WORKER_ADMIN_LISTEN_ADDR`, port 0
/// allowed): the same health, metrics and profiles as a server's, for the
/// outbox, expiry and reconciliation metrics that only the worker records.
pub async fn bind_worker_admin(config: &Config) -> anyhow::Result<TcpListener> {
    let addr = config.worker_admin_listen_addr;
    TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))
}

/// Serves the worker's admin router on the listener [`bind_worker_admin`] made.
pub async fn serve_worker_admin(
    state: AppState,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tracing::info!(admin_addr = %listener.local_addr()?, "worker admin listener");
    let metrics = state.config.metrics_enabled.then(crate::metrics::install);
    let admin = admin_router(state, Arc::new(AtomicBool::new(false)), metrics);
    axum::serve(without_nagle(listener), admin).with_graceful_shutdown(signalled(stop)).await?;
    Ok(())
}

/// What the public listener allows a client (see [`Config`]).
#[derive(Debug, Clone, Copy)]
struct PublicLimits {
    header_read_timeout: Duration,
    max_connections: usize,
    http2_max_concurrent_streams: u32,
}

impl From<&Config> for PublicLimits {
    fn from(config: &Config) -> PublicLimits {
        PublicLimits {
            header_read_timeout: config.header_read_timeout,
            max_connections: config.max_connections,
            http2_max_concurrent_streams: config.http2_max_concurrent_streams,
        }
    }
}

/// The public listener: HTTP/1.1 and h2c on one port, as `axum::serve`
/// would, plus what it does not offer: a deadline for request headers (and
/// for an idle keep-alive connection's next request), a cap on open
/// connections, HTTP/2 stream and keep-alive limits. Returns once stopped
/// and every open connection has finished its requests.
async fn serve_public(
    listener: TcpListener,
    router: Router,
    limits: PublicLimits,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper buffers up to ~400 KiB of a response a slow reader has not
        // taken; a stalled live stream would hold that much each. 64 KiB
        // still takes any request head we accept.
        .max_buf_size(HTTP1_MAX_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        // What a stream buffers for a reader slower than its writes (a
        // stalled live stream's watcher): hyper's default is ~400 KiB.
        .max_send_buf_size(HTTP2_MAX_SEND_BUFFER)
        // A peer that stops answering pings is gone: its streams end.
        .keep_alive_interval(HTTP2_PING_EVERY)
        .keep_alive_timeout(HTTP2_PING_EVERY);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let shutdown = signalled(stopped);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: pause, not spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            metrics::counter!("ticketing_connections_refused_total").increment(1);
            continue; // dropped: closed at once
        };
        let _ = stream.set_nodelay(true);
        // A peer that vanished without closing (a phone in a tunnel) is found
        // within minutes, not hours: a quiet live stream writes nothing that
        // would find it, and would hold its seat under MAX_WATCHERS.
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&TCP_KEEPALIVE);
        let service = router.clone().map_request(move |mut request: http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            request.map(axum::body::Body::new)
        });
        let connection =
            builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Probes after a minute of silence, every 10 s; the kernel gives up after 9 unanswered.
const TCP_KEEPALIVE: socket2::TcpKeepalive =
    socket2::TcpKeepalive::new().with_time(Duration::from_secs(60)).with_interval(Duration::from_secs(10));

/// The most an HTTP/1.1 connection buffers, in each direction.
const HTTP1_MAX_BUFFER: usize = 64 * 1024;
/// The most an HTTP/2 stream buffers of its response.
const HTTP2_MAX_SEND_BUFFER: usize = 64 * 1024;

/// How often an HTTP/2 peer is pinged, and how long its answer may take.
const HTTP2_PING_EVERY: Duration = Duration::from_secs(20);

/// Accepted connections with `TCP_NODELAY`, which `axum::serve` leaves off:
/// HTTP/2 writes a response as several small frames, and with Nagle's
/// algorithm each one after the first waits for the client's delayed ACK
/// (40 ms on Linux). ci/bench checkin measured it: gRPC calls took ≥ 40 ms.
fn without_nagle(listener: TcpListener) -> axum::serve::TapIo<TcpListener, fn(&mut TcpStream)> {
    listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    })
}

#[derive(Clone)]
struct AdminState {
    app: AppState,
    draining: Arc<AtomicBool>,
    metrics: Option<&'static PrometheusHandle>,
}

/// The internal listener: liveness, readiness, metrics and CPU profiles.
/// It binds to loopback unless configured otherwise and is never routed
/// from the public port.
fn admin_router(app: AppState, draining: Arc<AtomicBool>, metrics: Option<&'static PrometheusHandle>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape))
        .route("/debug/pprof/profile", get(crate::profiling::pprof))
        .route("/debug/pprof/flamegraph", get(crate::profiling::flamegraph))
        .with_state(AdminState { app, draining, metrics })
}

/// Categories on sale exported per scrape; beyond that the dashboard would
/// not be readable anyway.
const AVAILABILITY_SERIES: i64 = 500;

async fn scrape(State(admin): State<AdminState>) -> Response {
    let Some(handle) = admin.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are disabled (METRICS_ENABLED=false)").into_response();
    };
    admin.app.db.record_pool_state();
    admin.app.db.record_replica_lag().await;
    // Tickets left per category on sale, from the replica: a few seconds stale is fine here.
    match admin.app.db.read_replica(|conn| inventory::on_sale(conn, AVAILABILITY_SERIES).scope_boxed()).await {
        Ok(rows) => {
            for row in rows {
                metrics::gauge!("ticketing_tickets_available", "event_id" => row.event_id.to_string(),
                    "ticket_category_id" => row.ticket_category_id.to_string())
                .set(f64::from(row.available));
            }
        }
        Err(error) => tracing::warn!(%error, "tickets_available not refreshed"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
}

/// Ready unless the replica is useless: the primary unreachable, or
/// draining. Redis down is reported (body; `ticketing_redis_up`, kept by the
/// health watcher) but keeps
/// the replica ready: Redis costs speed, not availability, and a readiness
/// probe failing on it would take every pod out of the load balancer at once.
async fn readyz(State(admin): State<AdminState>) -> Response {
    let (postgres, redis) = tokio::join!(admin.app.db.primary_is_reachable(), admin.app.redis.is_reachable());
    let draining = admin.draining.load(Ordering::SeqCst);
    let ready = postgres && !draining;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(json!({ "ready": ready, "postgres": postgres, "redis": redis, "draining": draining }))).into_response()
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener as _;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut listener = without_nagle(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await;
        assert!(accepted.nodelay().expect("socket option"), "TCP_NODELAY must be on for accepted connections");
    }
}
