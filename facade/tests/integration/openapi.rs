//! The REST API against its OpenAPI document (`GET /openapi.json`): the
//! document is valid OpenAPI 3.1 and the committed one, every documented
//! operation reaches a handler, and Schemathesis — a fuzzer we did not
//! write — finds nothing against the real server.

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::process::Command;

use crate::helpers::{Sale, TestApp, sale, scanner};

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(relative)
}

/// The venv of `ci/lib.sh` `ensure_api_tools`.
fn api_tools(tool: &str) -> PathBuf {
    std::env::var_os("API_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/ticketing/api-venv"))
        .join("bin")
        .join(tool)
}

async fn served_document(app: &TestApp) -> String {
    let response = reqwest::get(app.url("/openapi.json")).await.expect("GET /openapi.json");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.text().await.expect("the document")
}

#[tokio::test]
async fn the_served_document_is_valid_openapi_3_1_and_the_committed_one() {
    let app = TestApp::spawn().await;
    let served = served_document(&app).await;
    let committed = std::fs::read_to_string(repo_path("proto/openapi.json")).expect("proto/openapi.json");
    assert!(served == committed, "proto/openapi.json differs from what the server serves: run `ticketing openapi`");

    let document: Value = serde_json::from_str(&served).expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let file = std::env::temp_dir().join(format!("openapi-{}.json", std::process::id()));
    std::fs::write(&file, &served).expect("written");
    let validated =
        Command::new(api_tools("openapi-spec-validator")).arg(&file).output().await.expect("the validator runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        validated.status.success(),
        "not valid OpenAPI: {}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
}

/// The server's side of "the document covers every route": each documented
/// operation, called on the real server, is answered by its handler — not
/// by the unknown-path fallback, and not as a method the path lacks.
#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let app = TestApp::spawn().await;
    let document: Value = serde_json::from_str(&served_document(&app).await).expect("JSON");
    let http = reqwest::Client::new();
    let mut checked = 0;
    for (template, item) in document["paths"].as_object().expect("paths") {
        let path = template
            .split('/')
            .map(|segment| match segment.split_once('}') {
                Some((_, rest)) => format!("{}{rest}", uuid::Uuid::now_v7()),
                None => segment.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        for verb in item.as_object().expect("a path item").keys() {
            let method = Method::from_bytes(verb.to_uppercase().as_bytes()).expect("a method");
            let response = http.request(method, app.url(&path)).send().await.expect("answered");
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{verb} {template} is documented but not routed");
            assert!(!body.contains("no route for"), "{verb} {template} is documented but not routed: {body}");
            checked += 1;
        }
    }
    assert_eq!(checked, ticketing_facade::rest::operations::operations().len());
}

/// Every operation with generated inputs, valid and invalid, then the
/// document's links followed in sequences (create an event, add a category,
/// publish it, …), as an organizer, a customer and a scanner device.
/// Checks: no 5xx, statuses, bodies, content types and headers as
/// documented, invalid inputs rejected, auth not ignored
/// (ci/schemathesis.toml). Bounded here; `ci/api-fuzz` runs it longer.
#[tokio::test]
async fn schemathesis_finds_nothing() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event: (event_id, _) } = sale(&app, 1_000, 4).await;
    let (_, scanner_token) = scanner(&app, &organizer, &event_id, "Gate A").await;
    let max_examples = std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| "10".into());
    let mut schemathesis = Command::new(api_tools("schemathesis"));
    schemathesis.arg("--config-file").arg(repo_path("ci/schemathesis.toml")).args([
        "--no-color",
        "run",
        &app.url("/openapi.json"),
        "--workers",
        "2",
        "--max-examples",
        &max_examples,
    ]);
    // ci/api-fuzz: fuzzing and stateful sequences repeat until this is spent.
    if let Ok(seconds) = std::env::var("SCHEMATHESIS_MAX_TIME") {
        schemathesis.args(["--max-time", &seconds]);
    }
    let run = schemathesis
        .env("ORGANIZER_TOKEN", &organizer.token)
        .env("CUSTOMER_TOKEN", &customer.token)
        .env("SCANNER_TOKEN", &scanner_token)
        // Its replay cache goes where it runs: not into the checkout.
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&run.stdout);
    println!("{report}");
    assert!(run.status.success(), "Schemathesis found problems:\n{report}\n{}", String::from_utf8_lossy(&run.stderr));
    let operations = ticketing_facade::rest::operations::operations().len();
    assert!(report.contains(&format!("Tested: {operations}")), "all {operations} operations were tested:\n{report}");
}

/// The reference page a person reads: Redoc from the binary renders the
/// served document in Chromium, every operation, with no request leaving
/// the origin (a CDN would fail here: nothing outside is reachable) and no
/// script error. The screenshot's path is in the test log.
#[tokio::test]
async fn the_reference_page_renders_every_operation_in_a_browser() {
    let app = TestApp::spawn().await;
    // Kept with the run's logs (ci/test), where a person can look at it.
    let screenshot = repo_path(".run/logs/docs-screenshot.png");
    let opened = Command::new("node")
        .arg(repo_path("facade/docs/check.mjs"))
        .arg(app.url("/docs"))
        .arg(&screenshot)
        .current_dir(repo_path("facade/docs"))
        .output()
        .await
        .expect("node runs");
    assert!(opened.status.success(), "the page did not render: {}", String::from_utf8_lossy(&opened.stderr));
    println!("screenshot of /docs: {}", screenshot.display());
    let seen: Value = serde_json::from_slice(&opened.stdout).expect("the check's JSON");
    assert_eq!(seen["title"], "Ticketing API reference");
    assert!(seen["heading"].as_str().is_some_and(|h| h.starts_with("Ticketing API")), "{seen}");
    // Redoc's sidebar logo is the one thing it loads from its CDN: the page's
    // policy blocks it (and Redoc hides it). Nothing else may fail or leave.
    let problems: Vec<&str> = seen["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(Value::as_str)
        .filter(|problem| !problem.contains("https://cdn.redoc.ly/redoc/logo-mini.svg"))
        .collect();
    assert!(problems.is_empty(), "the page had errors or failed requests: {problems:?}");
    let rendered: std::collections::BTreeSet<&str> =
        seen["operations"].as_array().expect("operations").iter().filter_map(Value::as_str).collect();
    let documented: std::collections::BTreeSet<&str> =
        ticketing_facade::rest::operations::operations().iter().map(|o| o.calls.operation_id()).collect();
    assert_eq!(rendered, documented);
    let headers = reqwest::get(app.url("/docs")).await.expect("GET /docs");
    let policy = headers.headers()["content-security-policy"].to_str().expect("ASCII");
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
}
