//! The process around the services: admin listener, readiness, draining.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use uuid::Uuid;

use crate::helpers::{Cuttable, Processes, Table, TestApp};

#[tokio::test]
async fn admin_listener_reports_health_and_readiness_and_the_public_port_does_not() {
    let app = TestApp::spawn().await;
    let http = &app.http;
    let healthz = http.get(format!("http://{}/healthz", app.admin_addr)).send().await.unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
    let readyz = http.get(format!("http://{}/readyz", app.admin_addr)).send().await.unwrap();
    assert_eq!(readyz.status(), StatusCode::OK);
    let body: serde_json::Value = readyz.json().await.unwrap();
    assert_eq!(body, json!({ "ready": true, "postgres": true, "redis": true, "draining": false }));
    for path in ["/readyz", "/healthz"] {
        assert_eq!(app.rest(Method::GET, path, None, None).await.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn without_redis_the_service_stays_ready_reports_it_and_serves() {
    let app = TestApp::builder().var("REDIS_URL", "redis://127.0.0.1:1/0").var("REDIS_TIMEOUT_MS", "100").spawn().await;
    let readyz = app.http.get(format!("http://{}/readyz", app.admin_addr)).send().await.unwrap();
    // Security audit, item 2: a readiness probe failing on Redis takes every
    // pod out of the load balancer at once.
    assert_eq!(readyz.status(), StatusCode::OK);
    let body: serde_json::Value = readyz.json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["redis"], false, "Redis down is reported");
    assert_eq!(body["postgres"], true);
    // Redis only holds what may be lost: reads and logins go on.
    assert_eq!(app.rest(Method::GET, "/v1/events", None, None).await.status, StatusCode::OK);
    let registered = app
        .rest(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({ "email": "noredis@example.com", "password": "a long enough password" })),
        )
        .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_ones() {
    // The subject is the drain: the held sign-ups may wait their turn to hash
    // however long a loaded machine makes them.
    let mut app = TestApp::builder()
        .var("DATABASE_POOL_TIMEOUT_MS", "30000")
        .var("PASSWORD_HASH_MAX_WAIT_MS", "30000")
        .spawn()
        .await;
    // Sign-ups held inside the database, so they are provably in flight.
    let held = app.hold_sign_ups(4).await;

    let server = app.server.take().unwrap();
    let addr = server.addr;
    let stopping = tokio::spawn(server.stop());
    // New connections are refused while the old ones drain.
    for attempt in 0.. {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            break;
        }
        assert!(attempt < 500, "listener still accepting after shutdown began");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!stopping.is_finished(), "shutdown must wait for in-flight requests");
    // Probes still reach the admin listener, and it says why the replica is not ready.
    let readyz = app.http.get(format!("http://{}/readyz", app.admin_addr)).send().await.unwrap();
    assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = readyz.json().await.unwrap();
    assert_eq!((&body["ready"], &body["draining"], &body["postgres"]), (&json!(false), &json!(true), &json!(true)));

    assert_eq!(held.release().await, [StatusCode::CREATED; 4]);
    stopping.await.unwrap().unwrap();
    assert_eq!(app.count(Table::Users).await, 4);
    app.stop().await;
}

/// The real binary, with `vars` and nothing else of this process's environment.
fn ticketing(args: &[&str], vars: &std::collections::HashMap<String, String>) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .args(args)
        .env_clear()
        .envs(vars)
        .output()
        .expect("the binary runs")
}

#[tokio::test]
async fn the_binary_creates_an_account_once_and_refuses_a_bad_configuration_with_every_problem_at_once() {
    let app = TestApp::spawn().await;
    let create =
        ["user", "create", "--email", "ops@example.com", "--role", "admin", "--password", "a long enough password"];
    let first = ticketing(&create, &app.vars);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).starts_with("created admin ops@example.com"));
    let again = ticketing(&create, &app.vars);
    assert_eq!(again.status.code(), Some(1), "a taken e-mail fails the command");
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("an account with this e-mail already exists"), "{said}");
    assert_eq!(app.count(Table::Users).await, 1, "one account");

    // Production without its secrets: exit 2, and every problem named in one go.
    let mut production = app.vars.clone();
    production.insert("ENV".into(), "production".into());
    production.remove("JWT_SECRET");
    production.remove("CORS_ALLOW_ORIGINS");
    let refused = ticketing(&["serve"], &production);
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    for problem in ["JWT_SECRET is required in production", "CORS_ALLOW_ORIGINS is required in production"] {
        assert!(said.contains(problem), "{problem} missing from: {said}");
    }
}

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_binary_migrates_and_seeds_once_each() {
    let database = crate::helpers::empty_database().await;
    let vars = crate::helpers::test_vars(&database);
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations")).unwrap().count();
    let first = stdout(&ticketing(&["migrate"], &vars));
    assert!(first.starts_with(&format!("applied {migrations} migration(s): ")), "{first}");
    let tables = "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('events', 'orders', 'tickets')";
    assert_eq!(crate::helpers::query_one::<i64>(&vars["DATABASE_DIRECT_URL"], tables, &[]).await, Some(3));
    assert_eq!(stdout(&ticketing(&["migrate"], &vars)).trim(), "applied 0 migration(s)");

    let seeded = stdout(&ticketing(&["seed", "--demo"], &vars));
    assert!(seeded.starts_with("demo data created"), "{seeded}");
    let published = "SELECT count(*) FROM events WHERE status = 'published'";
    let events: Option<i64> = crate::helpers::query_one(&vars["DATABASE_DIRECT_URL"], published, &[]).await;
    assert!(events.is_some_and(|n| n > 0), "published demo events: {events:?}");
    // Each printed account signs in with its printed password.
    let server = Processes::start(1, &vars).await;
    let http = reqwest::Client::new();
    let accounts: Vec<(&str, &str)> = seeded
        .lines()
        .filter_map(|line| {
            let (email, password) = line.split_once(" password: ")?;
            Some((email.split_whitespace().last()?, password))
        })
        .collect();
    assert_eq!(accounts.len(), 3, "{seeded}");
    for (email, password) in accounts {
        let token = http.post(format!("{}/v1/auth/token", server.bases[0]));
        let token = token.json(&json!({ "email": email, "password": password })).send().await.unwrap();
        assert_eq!(token.status(), StatusCode::OK, "{email}");
    }
    assert_eq!(stdout(&ticketing(&["seed", "--demo"], &vars)).lines().next(), Some("demo data already present"));
    let again: Option<i64> = crate::helpers::query_one(&vars["DATABASE_DIRECT_URL"], published, &[]).await;
    assert_eq!(again, events, "nothing seeded twice");
}

/// Migration `autovacuum_for_sales`: the tables a sale fills are vacuumed and
/// analyzed after every 1 % of new rows, not Postgres's 20 % (a sale's
/// tickets would reach the gate never vacuumed).
#[tokio::test]
async fn the_tables_a_sale_fills_are_vacuumed_as_the_sale_goes() {
    let vars = crate::helpers::test_vars(&crate::helpers::fresh_database().await);
    let unset = "SELECT string_agg(relname, ', ' ORDER BY relname) FROM pg_class
                  WHERE relname IN ('tickets', 'orders', 'order_items', 'payments', 'checkins', 'scans')
                    AND NOT coalesce('autovacuum_vacuum_insert_scale_factor=0.01' = ANY (reloptions), false)";
    let missing: Option<String> = crate::helpers::query_one(&vars["DATABASE_DIRECT_URL"], unset, &[]).await;
    assert_eq!(missing, None, "tables vacuumed only after 20 % new rows");
}

#[tokio::test]
async fn the_worker_has_an_admin_listener_and_metrics_can_be_switched_off() {
    let database = crate::helpers::fresh_database().await;
    let vars = crate::helpers::test_vars(&database);
    let worker = Processes::start_workers(1, &vars).await;
    let http = reqwest::Client::new();
    let ready = http.get(format!("{}/readyz", worker.admins[0])).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    // The backlog gauge is set by the worker's first read of the outbox,
    // which may come a moment after the listener is ready.
    crate::helpers::eventually_within(400, std::time::Duration::from_millis(50), || async {
        worker.metrics(0).await.contains("ticketing_outbox_pending").then_some(())
    })
    .await;

    let mut quiet = vars.clone();
    quiet.insert("METRICS_ENABLED".into(), "false".into());
    let server = Processes::start(1, &quiet).await;
    let metrics = http.get(format!("{}/metrics", server.admins[0])).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::NOT_FOUND, "no metrics when switched off");
    let ready = http.get(format!("{}/readyz", server.admins[0])).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "the rest of the admin listener stays");
}

#[tokio::test]
async fn production_logs_are_json_lines_carrying_the_callers_trace_id() {
    let database = crate::helpers::fresh_database().await;
    let mut vars = crate::helpers::test_vars(&database);
    vars.insert("ENV".into(), "production".into());
    vars.insert("CORS_ALLOW_ORIGINS".into(), "https://shop.example.com".into());
    vars.insert("TICKET_KEY_ENCRYPTION_KEY".into(), "c2VhbGVkLWJ5LWEtdGVzdC1vZi10aGUtbG9nLWxpbmU=".into());
    vars.entry("SMTP_URL".into()).or_insert_with(|| "smtp://127.0.0.1:25".into());
    vars.insert("RUST_LOG".into(), "info".into());
    let log = std::env::temp_dir().join(format!("ticketing-log-{database}.jsonl"));
    let server = Processes::start_logging(&vars, &log).await;
    // A notification with a bad signature is logged (a warning) inside its request.
    let trace_id = format!("{:032x}", Uuid::now_v7().as_u128());
    let mut notification = crate::helpers::notification(&Uuid::now_v7().to_string(), "settlement", "1.00");
    notification["signature_key"] = "forged".into();
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/payments/midtrans/notifications", server.bases[0]))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&notification)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_client_error(), "{}", answer.status());
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("bad signature") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line =
        text.lines().find(|line| line.contains("bad signature")).unwrap_or_else(|| panic!("not logged:\n{text}"));
    let _ = std::fs::remove_file(&log);
    let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(entry["level"], "WARN", "{entry}");
    // The request's span, outermost, carries the trace id the caller sent.
    assert_eq!(entry["spans"][0]["name"], "request", "{entry}");
    assert_eq!(entry["spans"][0]["trace_id"], trace_id.as_str(), "{entry}");
}

#[tokio::test]
async fn grpc_health_is_not_serving_while_the_primary_is_cut_off_and_serving_again_after() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

    let database = crate::helpers::fresh_database().await;
    let mut vars = crate::helpers::test_vars(&database);
    let primary = reqwest::Url::parse(&vars["DATABASE_URL"]).unwrap();
    let mut proxy = Cuttable::start(format!("{}:{}", primary.host_str().unwrap(), primary.port().unwrap())).await;
    let mut through_proxy = primary.clone();
    through_proxy.set_port(Some(proxy.port)).unwrap();
    vars.insert("DATABASE_URL".into(), through_proxy.to_string());
    vars.insert("DATABASE_POOL_TIMEOUT_MS".into(), "500".into());
    let server = Processes::start(1, &vars).await;
    let channel = tonic::transport::Channel::from_shared(server.bases[0].clone()).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    let mut status_becomes = async |wanted: ServingStatus| {
        // The service checks the primary every 2 s.
        for _ in 0..200 {
            let request = HealthCheckRequest { service: "ticketing.v1.OrderService".into() };
            let status = health.check(request).await.unwrap().into_inner().status();
            if status == wanted {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("health never became {wanted:?}");
    };
    status_becomes(ServingStatus::Serving).await;
    proxy.cut().await;
    status_becomes(ServingStatus::NotServing).await;
    proxy.open().await;
    status_becomes(ServingStatus::Serving).await;
}
