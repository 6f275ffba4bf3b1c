//! The process around the services: admin listener, readiness, draining.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Table, TestApp};

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
    let mut app = TestApp::builder().var("DATABASE_POOL_TIMEOUT_MS", "30000").spawn().await;
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
