//! Metrics on the admin listener only, moving with traffic, and every metric
//! the dashboard and the alert rules use really exported (so they never rot).

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::json;
use ticketing_domain::identity::Role;

use uuid::Uuid;

use crate::helpers::{Processes, TestApp, buy, metric_sample, order_body, published_event};

#[tokio::test]
async fn request_metrics_move_with_traffic_on_the_admin_listener_only() {
    // A process of its own: other tests' requests count elsewhere.
    let app = TestApp::builder().own_process().spawn().await;
    let route = r#"ticketing_request_duration_seconds_count{transport="rest",route="GET /v1/events"}"#;
    let before = metric_sample(&app.metrics().await, route);
    for _ in 0..3 {
        assert_eq!(app.rest(Method::GET, "/v1/events", None, None).await.status, StatusCode::OK);
    }
    let after = metric_sample(&app.metrics().await, route);
    assert_eq!(after, before + 3.0, "{route}: {before} → {after}");
    let text = app.metrics().await;
    assert!(
        text.contains(
            r#"ticketing_request_duration_seconds_bucket{transport="rest",route="GET /v1/events",le="0.001"}"#
        )
    );
    assert!(text.contains(r#"le="10""#), "buckets reach 10 s");

    for path in ["/metrics", "/debug/pprof/profile?seconds=1", "/debug/pprof/flamegraph?seconds=1"] {
        assert_eq!(
            app.rest(Method::GET, path, None, None).await.status,
            StatusCode::NOT_FOUND,
            "{path} on the public port"
        );
    }
    let profile =
        app.http.get(format!("http://{}/debug/pprof/profile?seconds=1", app.admin_addr)).send().await.unwrap();
    assert_eq!(profile.status(), StatusCode::OK);
}

/// Names in PromQL expressions: `ticketing_…`, histogram suffixes removed.
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("ticketing_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"].iter().fold(name, |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    // Processes of their own: what they export is theirs, not another test's.
    let app = TestApp::builder().own_process().spawn().await;
    // Traffic that touches each family: requests, pools, Redis, limits, orders, inventory.
    let organizer = app.user(Role::Organizer).await;
    let customer = app.user(Role::Customer).await;
    let event = published_event(&app, &organizer, "Observed").await;
    let detail = app.rest(Method::GET, &format!("/v1/events/{event}"), None, None).await;
    let category = detail.body["ticketCategories"][0]["id"].as_str().unwrap().to_owned();
    let order = buy(&app, &customer.token, "observed-1", order_body(&event, &category, 1)).await;
    assert_eq!(order.status, StatusCode::CREATED);
    // Payments and the worker: a settlement (queues the e-mail), a Midtrans
    // call (nothing listens in tests: 503), and the worker's outbox pass.
    let order_id = order.body["id"].as_str().unwrap();
    let mut settlement = crate::helpers::notification(order_id, "settlement", "750000.00");
    settlement["payment_type"] = "qris".into();
    let paid = crate::helpers::deliver(&app, &settlement).await;
    assert_eq!(paid.status, StatusCode::OK);
    let second = buy(&app, &customer.token, "observed-2", order_body(&event, &category, 1)).await;
    let payment_path = format!("/v1/orders/{}/payments", second.body["id"].as_str().unwrap());
    let unpaid = app.rest(Method::POST, &payment_path, Some(&customer.token), None).await;
    assert_eq!(unpaid.status, StatusCode::SERVICE_UNAVAILABLE);
    // A scan at the gate.
    let tickets = app.rest(Method::GET, &format!("/v1/orders/{order_id}/tickets"), Some(&customer.token), None).await;
    let code = tickets.body["tickets"][0]["code"].as_str().unwrap().to_owned();
    let (_, scanner) = crate::helpers::scanner(&app, &organizer, &event, "Observed gate").await;
    let scan = app
        .raw(app.http.post(app.url("/v1/checkins")).bearer_auth(&scanner).json(&json!({ "code": code, "gate": "G" })))
        .await;
    assert_eq!(scan.body["result"], "REDEEM_RESULT_ACCEPTED");
    // A refund of that order: made now, paid back by the worker through Midtrans.
    let refund = app
        .raw(
            app.http
                .post(app.url(&format!("/v1/orders/{order_id}:refund")))
                .bearer_auth(&organizer.token)
                .header("idempotency-key", "observed-refund")
                .json(&json!({ "reason": "observed" })),
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.body);
    // The waiting room: a join without its proof-of-work, one with it, an
    // order without admission, and the worker's admission of the entry.
    let start = chrono::Utc::now() - chrono::Duration::minutes(1);
    let (room_event, room_category) =
        crate::helpers::room_event(&app, &organizer, crate::helpers::room(600, 0), start).await;
    let unsolved = crate::helpers::join_with(&app, &customer.token, &room_event, "").await;
    assert_eq!(unsolved.status, StatusCode::BAD_REQUEST);
    let entry = crate::helpers::join(&app, &customer.token, &room_event).await;
    assert_eq!(entry.status, StatusCode::CREATED, "{}", entry.body);
    let unadmitted = buy(&app, &customer.token, "observed-3", order_body(&room_event, &room_category, 1)).await;
    assert_eq!(unadmitted.status, StatusCode::FORBIDDEN);
    let worker = Processes::start_workers(1, &app.vars).await;
    // What Prometheus would scrape: the server and the worker.
    let scrape = || async { app.metrics().await + &worker.metrics(0).await };
    crate::helpers::eventually_within(400, std::time::Duration::from_millis(50), || async {
        let metrics = scrape().await;
        (metrics.contains("ticketing_outbox_jobs_total")
            && metrics.contains("ticketing_refund_outcomes_total")
            && metrics.contains("ticketing_outbox_pending")
            && metrics.contains("ticketing_queue_wait_seconds_count"))
        .then_some(())
    })
    .await;
    let exported = exported_names(&scrape().await);

    let dashboard = include_str!("../../../deploy/grafana/ticketing.json");
    let alerts = include_str!("../../../deploy/prometheus/alerts.yml");
    let used: BTreeSet<String> = referenced_metrics(dashboard).into_iter().chain(referenced_metrics(alerts)).collect();
    assert!(used.len() >= 10, "{used:?}");
    // Counters that only exist once something failed are driven by the next test.
    let missing: Vec<_> =
        used.iter().filter(|name| !exported.contains(*name) && !QUIET_UNTIL_TROUBLE.contains(&name.as_str())).collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?}; exported: {exported:?}");
    for name in QUIET_UNTIL_TROUBLE {
        assert!(used.contains(*name), "{name} is listed as quiet but not used");
    }
}

/// The metric names a Prometheus text declares (`# TYPE name kind`).
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("# TYPE "))
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect()
}

/// Failure counters that appear with the first failure (a healthy run has
/// none): the next test makes each failure happen.
const QUIET_UNTIL_TROUBLE: &[&str] = &[
    "ticketing_db_pool_timeouts_total",
    "ticketing_redis_errors_total",
    "ticketing_shed_total",
    "ticketing_midtrans_breaker_rejections_total",
    "ticketing_db_replica_fallbacks_total",
];

/// Each quiet counter, made to count by its trouble, in a server process of
/// its own: Redis, the read replica and Midtrans unreachable, one database
/// connection, and room for one standard call.
#[tokio::test]
async fn each_failure_counter_counts_its_failure() {
    let nobody = |scheme: &str| format!("{scheme}://127.0.0.1:{}", crate::helpers::free_port());
    let app = TestApp::builder()
        .own_process()
        .var("REDIS_URL", format!("{}/0", nobody("redis")))
        .var("REDIS_TIMEOUT_MS", "100")
        .var("DATABASE_REPLICA_URL", format!("{}/none", nobody("postgres")))
        .var("MIDTRANS_API_URL", nobody("http"))
        .var("MIDTRANS_SNAP_URL", nobody("http"))
        .var("MIDTRANS_BREAKER_FAILURES", "1")
        .var("MIDTRANS_BREAKER_OPEN_MS", "60000")
        .var("DATABASE_POOL_SIZE", "1")
        .var("DATABASE_POOL_TIMEOUT_MS", "300")
        .var("CONCURRENCY_LIMIT_MIN", "2")
        .var("CONCURRENCY_LIMIT_MAX", "2")
        .var("CONCURRENCY_MAX_WAIT_MS", "5")
        .spawn()
        .await;
    let organizer = app.user(Role::Organizer).await;
    let customer = app.user(Role::Customer).await;
    // The replica: every catalog read falls back to the primary.
    let event = published_event(&app, &organizer, "Troubled").await;
    let detail = app.rest(Method::GET, &format!("/v1/events/{event}"), None, None).await;
    assert_eq!(detail.status, StatusCode::OK, "served from the primary: {}", detail.body);
    // Midtrans: the first payment fails and opens the breaker, which turns
    // the second away without a call.
    let category = detail.body["ticketCategories"][0]["id"].as_str().unwrap().to_owned();
    let order = buy(&app, &customer.token, "troubled", order_body(&event, &category, 1)).await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    let payments = format!("/v1/orders/{}/payments", order.body["id"].as_str().unwrap());
    for _ in 0..2 {
        let payment = app.rest(Method::POST, &payments, Some(&customer.token), None).await;
        assert_eq!(payment.status, StatusCode::SERVICE_UNAVAILABLE, "{}", payment.body);
    }
    // Redis: the sign-in limit cannot be asked there.
    let sign_in = json!({ "email": customer.email, "password": "not the password" });
    let refused = app.rest(Method::POST, "/v1/auth/token", None, Some(sign_in.clone())).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    // One sign-up held in its transaction fills the standard calls' room and
    // holds the one database connection: the next standard call is shed,
    // and a catalog read waits out the pool's timeout.
    let held = app.hold_sign_ups(1).await;
    let shed = app.rest(Method::POST, "/v1/auth/token", None, Some(sign_in)).await;
    assert_eq!(shed.error_reason(503, "UNAVAILABLE"), "OVERLOADED");
    let starved = app.rest(Method::GET, &format!("/v1/events/{}", Uuid::now_v7()), None, None).await;
    assert_eq!(starved.error_reason(503, "UNAVAILABLE"), "OVERLOADED", "{}", starved.body);
    assert_eq!(starved.body["error"]["details"][0]["metadata"]["resource"], "database");
    held.release().await;

    let metrics = app.metrics().await;
    for name in QUIET_UNTIL_TROUBLE {
        let count: f64 = metrics
            .lines()
            .filter(|line| line.starts_with(name) && !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        assert!(count > 0.0, "{name} did not count its failure:\n{metrics}");
    }
}

/// The spans an OTLP/HTTP receiver got: (trace id, span name).
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A minimal OTLP/HTTP trace receiver. It follows the OpenTelemetry
/// Protocol specification, "OTLP/HTTP"
/// (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>): `POST /v1/traces`
/// with a binary protobuf `ExportTraceServiceRequest`
/// (`application/x-protobuf`), answered 200 with an
/// `ExportTraceServiceResponse` in the same encoding; the messages are the
/// official `opentelemetry-proto` definitions.
async fn otlp_receiver() -> (std::net::SocketAddr, Received) {
    use axum::{body::Bytes, routing::post};
    use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
    use prost::Message;

    let received: Received = Default::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut sink = sink.lock().unwrap();
                for span in request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
                    let trace_id: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                    sink.push((trace_id, span.name.clone()));
                }
                ([("content-type", "application/x-protobuf")], ExportTraceServiceResponse::default().encode_to_vec())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

#[tokio::test]
async fn one_rest_call_is_one_trace_from_facade_to_database() {
    let (collector, received) = otlp_receiver().await;
    let database = crate::helpers::fresh_database().await;
    let mut vars = crate::helpers::test_vars(&database);
    vars.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://{collector}"));
    vars.insert("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into());
    let server = crate::helpers::Processes::start(1, &vars).await;

    let trace_id = format!("{:032x}", uuid::Uuid::now_v7().as_u128());
    let response = reqwest::Client::new()
        .get(format!("{}/v1/events/{}", server.bases[0], uuid::Uuid::now_v7()))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let names = crate::helpers::eventually(|| {
        let received = received.clone();
        let trace_id = trace_id.clone();
        async move {
            let names: BTreeSet<String> =
                received.lock().unwrap().iter().filter(|(t, _)| *t == trace_id).map(|(_, n)| n.clone()).collect();
            ["request", "catalog.get_event", "db.transaction"].iter().all(|n| names.contains(*n)).then_some(names)
        }
    })
    .await;
    assert!(names.contains("request") && names.contains("catalog.get_event") && names.contains("db.transaction"));
}
