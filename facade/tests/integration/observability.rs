//! Metrics on the admin listener only, moving with traffic, and every metric
//! the dashboard and the alert rules use really exported (so they never rot).

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::json;
use ticketing_domain::identity::Role;

use crate::helpers::{TestApp, published_event};

async fn scrape(app: &TestApp) -> String {
    let response = app.http.get(format!("http://{}/metrics", app.admin_addr)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn request_metrics_move_with_traffic_on_the_admin_listener_only() {
    let app = TestApp::spawn().await;
    let route = r#"ticketing_request_duration_seconds_count{transport="rest",route="GET /v1/events"}"#;
    let before = sample(&scrape(&app).await, route);
    for _ in 0..3 {
        assert_eq!(app.rest(Method::GET, "/v1/events", None, None).await.status, StatusCode::OK);
    }
    let after = sample(&scrape(&app).await, route);
    assert!(after >= before + 3.0, "{route}: {before} → {after}");
    let text = scrape(&app).await;
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
    let app = TestApp::spawn().await;
    // Traffic that touches each family: requests, pools, Redis, limits, orders, inventory.
    let organizer = app.user(Role::Organizer).await;
    let customer = app.user(Role::Customer).await;
    let event = published_event(&app, &organizer, "Observed").await;
    let detail = app.rest(Method::GET, &format!("/v1/events/{event}"), None, None).await;
    let category = detail.body["ticketCategories"][0]["id"].as_str().unwrap().to_owned();
    let order = app
        .raw(
            app.http
                .post(app.url("/v1/orders"))
                .bearer_auth(&customer.token)
                .header("idempotency-key", "observed-1")
                .json(&json!({ "eventId": event, "items": [{ "ticketCategoryId": category, "quantity": 1 }] })),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED);
    let exported = scrape(&app).await;
    let exported: BTreeSet<String> = exported
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect();

    let dashboard = include_str!("../../../deploy/grafana/ticketing.json");
    let alerts = include_str!("../../../deploy/prometheus/alerts.yml");
    let used: BTreeSet<String> = referenced_metrics(dashboard).into_iter().chain(referenced_metrics(alerts)).collect();
    assert!(used.len() >= 10, "{used:?}");
    // Counters and gauges that only exist once something happened are touched above or at start-up.
    let missing: Vec<_> =
        used.iter().filter(|name| !exported.contains(*name) && !QUIET_UNTIL_TROUBLE.contains(&name.as_str())).collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?}; exported: {exported:?}");
    for name in QUIET_UNTIL_TROUBLE {
        assert!(used.contains(*name), "{name} is listed as quiet but not used");
    }
}

/// Failure counters that appear with the first failure (a healthy test run
/// has none); their names are checked against the code that emits them.
const QUIET_UNTIL_TROUBLE: &[&str] = &["ticketing_db_pool_timeouts_total", "ticketing_redis_errors_total"];

#[test]
fn quiet_metrics_are_emitted_by_the_code() {
    let store =
        [include_str!("../../../core/store/src/db.rs"), include_str!("../../../core/store/src/redis.rs")].concat();
    for name in QUIET_UNTIL_TROUBLE {
        assert!(store.contains(&format!("\"{name}\"")), "{name} is not emitted anywhere");
    }
}
