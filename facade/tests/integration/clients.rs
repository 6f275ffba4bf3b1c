//! The typed clients in `clients/` against the real server: the Rust crate
//! (error reasons, retries that honour Retry-After, the waiting room, the
//! reference scanner offline and back), the Python and TypeScript suites (the
//! browser demo in headless Chromium among them), and the committed generated
//! code checked against `proto/`.

use std::{path::PathBuf, time::Instant};

use chrono::Utc;
use serde_json::json;
use ticketing_client::{
    ApiError, Connection, RetryPolicy,
    scanner::{OfflineVerdict, Scanner, ScannerState, Verdict},
    v1,
};
use ticketing_domain::identity::Role;
use tokio::process::Command;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    Sale, Sim, Table, TestApp, TestUser, Worker, add_category, buy, free_port, grpc_until, on_sale, order_body,
    paid_tickets, query_one, query_value, room, room_event, run, sale, scanner, solve, uuid,
};

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(relative)
}

/// The Python client's venv (`ci/lib.sh` `ensure_client_tools`).
fn clients_venv() -> PathBuf {
    std::env::var_os("CLIENTS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/ticketing/clients-venv"))
}

/// A server paying through the simulator, with an event on sale, one whose
/// waiting room is enabled (and the worker admitting to it), its organizer
/// and customers, described in a JSON file for the Python and TypeScript
/// suites.
struct Fixture {
    // First, so it stops before the server it admits for.
    _worker: Worker,
    app: TestApp,
    _sim: Sim,
    path: PathBuf,
    room_event_id: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn fixture(page_port: u16) -> Fixture {
    let sim = Sim::with_webhook().await;
    let app = TestApp::builder()
        .midtrans(&sim)
        // As in production: only the web shop's origin may call from a browser.
        .var("CORS_ALLOW_ORIGINS", format!("http://127.0.0.1:{page_port}"))
        .spawn()
        .await;
    let Sale { organizer, customer, event: (event_id, category_id) } = sale(&app, 100, 4).await;
    let tiny_category_id = add_category(&app, &organizer, &event_id, "Backstage", 1, 1).await;
    let room = json!({ "enabled": true, "admitPerMinute": 6000, "admissionMinutes": 10, "challengeDifficulty": 1000 });
    let (room_event_id, room_category_id) =
        room_event(&app, &organizer, room, Utc::now() - chrono::Duration::minutes(1)).await;
    // The browser's own customer: a customer joins a queue once, so the
    // page's join must not find the Node suite's entry.
    let browser_customer = app.user(Role::Customer).await;
    let credentials = |user: &TestUser| json!({ "email": user.email, "password": "a long enough password" });
    let description = json!({
        "apiUrl": format!("http://{}", app.addr),
        "grpcTarget": app.addr.to_string(),
        "simUrl": sim.url,
        "customer": credentials(&customer),
        "organizer": credentials(&organizer),
        "eventId": event_id,
        "categoryId": category_id,
        "tinyCategoryId": tiny_category_id,
        "roomEventId": room_event_id,
        "roomCategoryId": room_category_id,
        "browserCustomer": credentials(&browser_customer),
        "pagePort": page_port,
    });
    let path = std::env::temp_dir().join(format!("ticketing-client-fixture-{}.json", app.database));
    tokio::fs::write(&path, description.to_string()).await.expect("fixture written");
    Fixture { _worker: Worker::start(app.state.clone()), app, _sim: sim, path, room_event_id }
}

impl Fixture {
    /// Orders for the room's event: only a suite that was admitted places one.
    async fn room_orders(&self) -> i64 {
        let sql = "SELECT count(*) FROM orders WHERE event_id = $1";
        query_one(&self.app.direct_url(), sql, &[&uuid(&self.room_event_id)]).await.expect("a count")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_type_checks_and_passes_its_suite_against_the_server() {
    let fixture = fixture(free_port()).await;
    let python = clients_venv().join("bin/python");
    let package = repo_path("clients/python");

    run(Command::new(&python).args(["-m", "mypy", "src/ticketing_client", "tests"]).current_dir(&package), "mypy")
        .await;
    run(
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
            .current_dir(&package)
            .env("PYTHONPATH", package.join("src"))
            .env("TICKETING_FIXTURE", &fixture.path),
        "pytest",
    )
    .await;
    assert!(fixture.app.count(Table::Checkins).await >= 1, "the suite's redeem reached the database");
    assert_eq!(fixture.room_orders().await, 1, "the suite ordered once admitted");
}

#[tokio::test(flavor = "multi_thread")]
async fn typescript_client_and_browser_demo_pass_against_the_server_through_grpc_web() {
    let fixture = fixture(free_port()).await;
    run(
        Command::new("npm")
            .args(["test", "--silent"])
            .current_dir(repo_path("clients/typescript"))
            .env("TICKETING_FIXTURE", &fixture.path),
        "npm test (Node suite and headless Chromium)",
    )
    .await;
    let paid = query_value(&fixture.app.direct_url(), "SELECT count(*) FROM orders WHERE status = 'paid'").await;
    assert_eq!(paid.as_deref(), Some("3"), "the Node suite paid one order, the browser one directly and one queued");
    assert_eq!(fixture.room_orders().await, 2, "the Node suite and the browser each ordered once admitted");
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_client_code_matches_the_proto_contract() {
    run(Command::new(repo_path("ci/gen-clients")).arg("--check"), "ci/gen-clients --check").await;
}

#[tokio::test]
async fn rust_client_names_the_reason_of_a_refusal() {
    let app = TestApp::spawn().await;
    let Sale { customer, event: (event_id, category_id), .. } = sale(&app, 1, 1).await;
    let connection = Connection::lazy(&format!("http://{}", app.addr)).unwrap().with_token(&customer.token).unwrap();
    let buy = |request_id: &str| v1::CreateOrderRequest {
        event_id: event_id.clone(),
        items: vec![v1::OrderItem { ticket_category_id: category_id.clone(), quantity: 1, ..Default::default() }],
        request_id: request_id.to_owned(),
        ..Default::default()
    };
    let create = |mut c: v1::order_service_client::OrderServiceClient<_>, r| async move { c.create_order(r).await };

    connection.call(connection.orders(), buy("first"), create).await.expect("the one seat is sold");
    let refused: ApiError = connection.call(connection.orders(), buy("second"), create).await.unwrap_err();

    assert_eq!(refused.code, Code::Aborted);
    assert_eq!(refused.reason.as_deref(), Some("SOLD_OUT"));
    assert_eq!(refused.metadata["ticketCategoryId"], category_id);
    assert!(!refused.is_retryable());
}

#[tokio::test]
async fn rust_client_joins_the_waiting_room_and_orders_once_admitted() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let customer = app.user(Role::Customer).await;
    let (event_id, category_id) =
        room_event(&app, &organizer, room(6000, 0), Utc::now() - chrono::Duration::minutes(1)).await;
    let _worker = Worker::start(app.state.clone());
    let connection = Connection::lazy(&format!("http://{}", app.addr)).unwrap().with_token(&customer.token).unwrap();
    let solver = |challenge: v1::AltchaChallenge| async move { solve(&serde_json::to_value(&challenge).unwrap()) };

    let joined = connection.join_queue(&event_id, solver).await.expect("joined");
    let again = connection.join_queue(&event_id, solver).await.expect("joined again");
    assert_eq!(again.id, joined.id, "joining again is the same entry: why join_queue may start over");
    // The entry as the server pushes it, up to the worker's admission.
    let mut entries = connection.watch_queue_entry(&event_id, &joined.id).await.expect("a live stream");
    let admitted = grpc_until(&mut entries, |entry| entry.status() == v1::QueueEntryStatus::Admitted).await;
    let order = v1::CreateOrderRequest {
        event_id,
        items: vec![v1::OrderItem { ticket_category_id: category_id, quantity: 1, ..Default::default() }],
        request_id: "queued".into(),
        admission_token: admitted.admission.expect("an admission").token,
    };
    let create = |mut c: v1::order_service_client::OrderServiceClient<_>, r| async move { c.create_order(r).await };
    let order = connection.call(connection.orders(), order, create).await.expect("admitted, so it may order");
    assert_eq!(order.status(), v1::OrderStatus::Pending);
}

#[tokio::test]
async fn rust_client_watches_availability_past_its_call_deadline() {
    let app = TestApp::spawn().await;
    let Sale { customer, event: (event_id, category_id), .. } = sale(&app, 10, 2).await;
    let deadline = std::time::Duration::from_millis(500);
    let connection = Connection::lazy_with_deadline(&format!("http://{}", app.addr), deadline).unwrap();
    let mut updates = connection.watch_availability(&event_id).await.expect("a live stream");
    let first = grpc_until(&mut updates, |_| true).await;
    assert_eq!(first.categories[0].available, 10);
    // Longer than every call's deadline: a live stream has none.
    tokio::time::sleep(deadline * 2).await;
    let bought = buy(&app, &customer.token, "watched", order_body(&event_id, &category_id, 2)).await;
    assert_eq!(bought.status, reqwest::StatusCode::CREATED, "{}", bought.body);
    let after = grpc_until(&mut updates, |u| u.categories[0].available < 10).await;
    assert_eq!(after.categories[0].available, 8);
}

#[tokio::test]
async fn rust_client_waits_out_retry_after_and_gives_up_when_it_is_too_long() {
    // 20 scans a minute: the 21st waits 3 s for the next one.
    let app = TestApp::builder().var("SCAN_LIMIT_PER_SCANNER", "20").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let (event_id, _) = on_sale(&app, &organizer, 10, 4).await;
    let (_, device_token) = scanner(&app, &organizer, &event_id, "north").await;
    let url = format!("http://{}", app.addr);
    let scan = v1::RedeemRequest { code: "not a ticket".into(), gate: "north".into(), ..Default::default() };
    let redeem = |mut c: v1::check_in_service_client::CheckInServiceClient<_>, r| async move { c.redeem(r).await };
    let impatient = Connection::lazy(&url)
        .unwrap()
        .with_token(&device_token)
        .unwrap()
        .with_retry(RetryPolicy { max_delay: std::time::Duration::from_secs(1), ..RetryPolicy::default() });
    for _ in 0..20 {
        let answer = impatient.call(impatient.checkin(), scan.clone(), redeem).await.expect("within the limit");
        assert_eq!(answer.result(), v1::RedeemResult::Invalid);
    }

    let limited = impatient.call(impatient.checkin(), scan.clone(), redeem).await.unwrap_err();
    assert_eq!(limited.code, Code::ResourceExhausted);
    assert_eq!(limited.reason.as_deref(), Some("RATE_LIMITED"));
    let retry_after = limited.retry_after.expect("the server says when to come back");
    assert!(retry_after > std::time::Duration::from_secs(1), "{retry_after:?}");

    let patient = Connection::lazy(&url).unwrap().with_token(&device_token).unwrap();
    let started = Instant::now();
    let answer = patient.call(patient.checkin(), scan.clone(), redeem).await.expect("admitted after the wait");
    assert_eq!(answer.result(), v1::RedeemResult::Invalid);
    // Its own backoff (100 ms, 200 ms, 400 ms) would have given up long before.
    assert!(started.elapsed() >= retry_after - std::time::Duration::from_secs(1), "{:?}", started.elapsed());
}

#[tokio::test]
async fn reference_scanner_admits_a_ticket_offline_and_syncs_it_later() {
    let port = free_port();
    let mut app = TestApp::builder().var("LISTEN_ADDR", format!("127.0.0.1:{port}")).spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let tickets = paid_tickets(&app, &customer, &event, 2).await;
    let (_, device_token) = scanner(&app, &organizer, &event.0, "north").await;
    let connection = Connection::lazy(&format!("http://127.0.0.1:{port}")).unwrap().with_token(&device_token).unwrap();
    let event_id: Uuid = event.0.parse().unwrap();
    let mut device = Scanner::new(connection.clone(), event_id, "north", ScannerState::default());
    device.refresh_manifest().await.expect("manifest");
    assert_eq!(device.state().valid_tickets.len(), 2);

    let online = device.scan(&tickets[0].1).await.unwrap();
    assert!(matches!(&online, Verdict::Online(r) if r.result() == v1::RedeemResult::Accepted), "{online:?}");

    app.stop().await;
    let offline = device.scan(&tickets[1].1).await.unwrap();
    assert_eq!(offline, Verdict::Offline(OfflineVerdict::Admitted));
    assert_eq!(device.scan(&tickets[1].1).await.unwrap(), Verdict::Offline(OfflineVerdict::AlreadyAdmitted));
    let mut forged = tickets[1].1.clone().into_bytes();
    forged[60] = if forged[60] == b'A' { b'B' } else { b'A' };
    assert!(device.scan(std::str::from_utf8(&forged).unwrap()).await.is_err(), "a forged code fails offline too");
    let queued_at = device.state().pending[0].scan_time;

    // The device restarts from its saved state while the server is down.
    let saved = std::env::temp_dir().join(format!("scanner-{}.json", app.database));
    device.save(&saved).await.unwrap();
    let mut device = Scanner::new(connection, event_id, "north", Scanner::load(&saved).await.unwrap());
    let _ = std::fs::remove_file(&saved);
    assert_eq!(device.state().pending.len(), 1);

    app.restart().await;
    let synced = device.sync().await.expect("sync once the server is back");
    assert_eq!(synced.len(), 1);
    assert_eq!(synced[0].result(), v1::RedeemResult::Accepted);
    assert!(!synced[0].conflict);
    assert!(device.state().pending.is_empty());
    let recorded: Option<String> = query_one(
        &app.direct_url(),
        "SELECT (abs(extract(epoch FROM scan_time - $1::timestamptz)) < 0.001)::text FROM checkins WHERE ticket_id = $2",
        &[&queued_at, &uuid(&tickets[1].0)],
    )
    .await;
    assert_eq!(recorded.as_deref(), Some("true"), "the check-in keeps the offline scan's time");

    let again = device.scan(&tickets[1].1).await.unwrap();
    assert!(matches!(&again, Verdict::Online(r) if r.result() == v1::RedeemResult::AlreadyCheckedIn), "{again:?}");
}
