//! The simulator through its router (`oneshot`), and notification delivery to a real local
//! listener.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha512};
use tower::ServiceExt as _;

use crate::app::{self, AppState, lock};
use crate::state::Config;

const KEY: &str = "SB-Mid-server-TEST";
const UNAUTHORIZED: &str = "Access denied due to unauthorized transaction, please check client or server key";

struct Sim {
    state: AppState,
    router: Router,
}

impl Sim {
    fn new() -> Self {
        let config = Config {
            server_key: KEY.into(),
            merchant_id: "M-SIM".into(),
            notification_url: None,
            public_url: "http://sim.test".into(),
        };
        let state = AppState::new(config).unwrap();
        Sim { router: app::router(state.clone()), state }
    }

    /// Sends one request; `body` is sent verbatim (a JSON value is serialized first).
    async fn call(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: Body) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, json)
    }

    async fn api(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(method, uri, &[("authorization", &basic(KEY))], json_body(&body)).await
    }

    async fn admin(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", uri, &[], json_body(&body)).await
    }

    async fn create(&self, order_id: &str, gross_amount: i64) -> Value {
        let (status, body) = self.api("POST", "/snap/v1/transactions", snap_body(order_id, gross_amount)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    async fn settle(&self, order_id: &str) {
        let (status, body) =
            self.admin(&format!("/_sim/transactions/{order_id}/settle"), json!({"notify": false})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

fn json_body(body: &Value) -> Body {
    if body.is_null() { Body::empty() } else { Body::from(body.to_string()) }
}

fn basic(key: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:")))
}

fn snap_body(order_id: &str, gross_amount: i64) -> Value {
    json!({ "transaction_details": { "order_id": order_id, "gross_amount": gross_amount } })
}

/// Independent of the simulator's own helper, on purpose.
fn expected_signature(order_id: &str, status_code: &str, gross_amount: &str) -> String {
    Sha512::digest(format!("{order_id}{status_code}{gross_amount}{KEY}")).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn api_calls_need_the_server_key() {
    let sim = Sim::new();
    let body = json_body(&snap_body("A-1", 1000));
    let (status, json) = sim.call("POST", "/snap/v1/transactions", &[], body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json, json!({ "status_code": "401", "error_messages": [UNAUTHORIZED] }));

    let wrong_auth = basic("SB-Mid-server-OTHER");
    let wrong = [("authorization", wrong_auth.as_str())];
    let (status, _) = sim.call("POST", "/snap/v1/transactions", &wrong, json_body(&snap_body("A-1", 1000))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, json) = sim.call("GET", "/v2/A-1/status", &wrong, Body::empty()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["status_message"], UNAUTHORIZED);

    // The right key gets through to the handler.
    let (status, _) = sim.api("GET", "/v2/A-1/status", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn duplicate_order_ids_are_refused_unless_replayed_with_the_same_idempotency_key() {
    let sim = Sim::new();
    let send = async |key: &str| {
        let auth = basic(KEY);
        let headers = [("authorization", auth.as_str()), ("idempotency-key", key)];
        sim.call("POST", "/snap/v1/transactions", &headers, json_body(&snap_body("B-1", 150_000))).await
    };

    let (status, created) = send("key-1").await;
    assert_eq!(status, StatusCode::CREATED);
    let token = created["token"].as_str().unwrap();
    assert_eq!(created["redirect_url"], format!("http://sim.test/snap/v4/redirection/{token}"));

    let (status, replayed) = send("key-1").await;
    assert_eq!((status, &replayed), (StatusCode::CREATED, &created));

    let (status, json) = send("key-2").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        json,
        json!({ "status_code": "400", "error_messages": ["transaction_details.order_id has already been taken"] })
    );
    let (status, _) = sim.api("POST", "/snap/v1/transactions", snap_body("B-1", 150_000)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _) = send("k-0123456789-0123456789-0123456789-0123").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "Idempotency-Key is at most 36 characters");
}

#[tokio::test]
async fn invalid_snap_requests_are_400() {
    let sim = Sim::new();
    let mismatch = json!({
        "transaction_details": { "order_id": "C-1", "gross_amount": 150_000 },
        "item_details": [{ "id": "t", "price": 75_000, "quantity": 1, "name": "ticket" }],
    });
    let (status, json) = sim.api("POST", "/snap/v1/transactions", mismatch).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        json["error_messages"],
        json!(["transaction_details.gross_amount is not equal to the sum of item_details"])
    );

    for body in [
        json!({ "transaction_details": { "order_id": "C-2", "gross_amount": 1000.5 } }),
        json!({ "transaction_details": { "order_id": "C-2", "gross_amount": 0 } }),
        json!({ "transaction_details": { "order_id": "C-2" } }),
        json!({ "transaction_details": { "order_id": "", "gross_amount": 1000 } }),
        json!({ "transaction_details": { "order_id": "x".repeat(51), "gross_amount": 1000 } }),
        json!({ "transaction_details": { "order_id": "C-2", "gross_amount": 1000 }, "expiry": { "unit": "week", "duration": 1 } }),
    ] {
        let (status, json) = sim.api("POST", "/snap/v1/transactions", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} was accepted");
        assert_eq!(json["status_code"], "400");
    }
    let auth = basic(KEY);
    let (status, json) =
        sim.call("POST", "/snap/v1/transactions", &[("authorization", &auth)], Body::from("{not json")).await;
    assert_eq!((status, json["status_code"].as_str()), (StatusCode::BAD_REQUEST, Some("400")));

    let matching = json!({
        "transaction_details": { "order_id": "C-3", "gross_amount": 150_000 },
        "item_details": [{ "id": "t", "price": 75_000, "quantity": 2, "name": "ticket" }],
    });
    let (status, _) = sim.api("POST", "/snap/v1/transactions", matching).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn status_reads_are_signed_notifications() {
    let sim = Sim::new();
    let (status, json) = sim.api("GET", "/v2/D-1/status", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json, json!({ "status_code": "404", "status_message": "Transaction doesn't exist." }));

    sim.create("D-1", 150_000).await;
    let (status, json) = sim.api("GET", "/v2/D-1/status", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["order_id"], "D-1");
    assert_eq!(json["transaction_status"], "pending");
    assert_eq!(json["status_code"], "201");
    assert_eq!(json["gross_amount"], "150000.00");
    assert_eq!(json["currency"], "IDR");
    assert_eq!(json["payment_type"], "qris");
    assert_eq!(json["merchant_id"], "M-SIM");
    assert_eq!(json["fraud_status"], "accept");
    assert_eq!(json["signature_key"], expected_signature("D-1", "201", "150000.00"));
    assert!(json.get("settlement_time").is_none());
    let by_transaction_id = format!("/v2/{}/status", json["transaction_id"].as_str().unwrap());
    let (status, same) = sim.api("GET", &by_transaction_id, Value::Null).await;
    assert_eq!((status, &same), (StatusCode::OK, &json), "the Core API also takes the transaction_id");

    sim.settle("D-1").await;
    let (_, json) = sim.api("GET", "/v2/D-1/status", Value::Null).await;
    assert_eq!((json["transaction_status"].as_str(), json["status_code"].as_str()), (Some("settlement"), Some("200")));
    assert_eq!(json["signature_key"], expected_signature("D-1", "200", "150000.00"));
    assert!(json["settlement_time"].is_string());
}

#[tokio::test]
async fn refunds_are_idempotent_by_refund_key() {
    let sim = Sim::new();
    sim.create("E-1", 150_000).await;
    let refund = json!({ "refund_key": "r-1", "amount": 50_000, "reason": "customer asked" });
    let (status, json) = sim.api("POST", "/v2/E-1/refund", refund.clone()).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "pending is not refundable");
    assert_eq!(json, json!({ "status_code": "412", "status_message": "Transaction status cannot be updated." }));
    let (status, _) = sim.api("POST", "/v2/NOPE/refund", refund.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    sim.settle("E-1").await;
    let (status, first) = sim.api("POST", "/v2/E-1/refund", refund.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["status_code"], "200");
    assert_eq!(first["status_message"], "Success, refund request is approved");
    assert_eq!(first["transaction_status"], "partial_refund");
    assert_eq!(first["refund_amount"], "50000.00");
    assert_eq!(first["refund_key"], "r-1");
    let (status, again) = sim.api("POST", "/v2/E-1/refund", refund).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));

    let (_, json) = sim.api("GET", "/v2/E-1/status", Value::Null).await;
    assert_eq!(json["transaction_status"], "partial_refund");
    assert_eq!(json["refund_amount"], "50000.00");
    assert_eq!(json["refunds"].as_array().unwrap().len(), 1);
    assert_eq!(json["refunds"][0]["reason"], "customer asked");

    // Without an amount, the rest is refunded.
    let (status, json) = sim.api("POST", "/v2/E-1/refund", json!({ "refund_key": "r-2" })).await;
    assert_eq!((status, json["transaction_status"].as_str()), (StatusCode::OK, Some("refund")));
    assert_eq!(json["refund_amount"], "100000.00");
    let (status, _) = sim.api("POST", "/v2/E-1/refund", json!({ "refund_key": "r-3" })).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (_, json) = sim.api("GET", "/v2/E-1/status", Value::Null).await;
    assert_eq!((json["refund_amount"].as_str(), json["status_code"].as_str()), (Some("150000.00"), Some("200")));
}

#[tokio::test]
async fn transfers_virtual_accounts_and_stores_are_not_refunded_by_api() {
    let sim = Sim::new();
    for (order_id, payment_type) in [("V-1", "bank_transfer"), ("V-2", "echannel"), ("V-3", "cstore"), ("V-4", "gopay")]
    {
        sim.create(order_id, 150_000).await;
        let settle = json!({ "notify": false, "payment_type": payment_type });
        let (status, json) = sim.admin(&format!("/_sim/transactions/{order_id}/settle"), settle).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["notification"]["payment_type"], payment_type);
        let (status, json) =
            sim.api("POST", &format!("/v2/{order_id}/refund"), json!({ "refund_key": "k", "amount": 1000 })).await;
        if payment_type == "gopay" {
            assert_eq!(status, StatusCode::OK, "{json}");
        } else {
            assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{payment_type}");
            assert_eq!(json["status_code"], "412");
            assert!(json["status_message"].as_str().unwrap().contains(payment_type), "{json}");
        }
    }
}

#[tokio::test]
async fn a_challenged_capture_waits_for_the_merchants_approval_or_denial() {
    let sim = Sim::new();
    for order_id in ["C-1", "C-2", "C-3"] {
        sim.create(order_id, 150_000).await;
        let capture = json!({ "notify": false, "fraud_status": "challenge", "payment_type": "credit_card" });
        let (status, json) = sim.admin(&format!("/_sim/transactions/{order_id}/capture"), capture).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["notification"]["fraud_status"], "challenge");
    }
    let (status, json) = sim.api("POST", "/v2/C-1/approve", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!((json["transaction_status"].as_str(), json["fraud_status"].as_str()), (Some("capture"), Some("accept")));
    let (status, json) = sim.api("POST", "/v2/C-2/deny", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!((json["transaction_status"].as_str(), json["fraud_status"].as_str()), (Some("deny"), Some("deny")));
    assert_eq!(json["status_code"], "200", "the call succeeded");
    // Decided once: the second decision, and one on a payment never challenged, are refused.
    let (status, json) = sim.api("POST", "/v2/C-1/deny", Value::Null).await;
    assert_eq!((status, json["status_code"].as_str()), (StatusCode::PRECONDITION_FAILED, Some("412")));
    sim.create("C-4", 150_000).await;
    sim.settle("C-4").await;
    let (status, _) = sim.api("POST", "/v2/C-4/approve", Value::Null).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, _) = sim.api("POST", "/v2/NOPE/approve", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, json) = sim.api("GET", "/v2/C-3/status", Value::Null).await;
    assert_eq!(json["fraud_status"], "challenge", "undecided");
}

#[tokio::test]
async fn an_import_makes_many_transactions_known_at_once() {
    let sim = Sim::new();
    let imported = json!([
        { "order_id": "I-1", "status": "settlement", "gross_amount": 750_000, "payment_type": "qris" },
        { "order_id": "I-2", "status": "settlement", "gross_amount": 750_000, "payment_type": "bank_transfer" },
    ]);
    let (status, json) = sim.admin("/_sim/transactions:import", imported).await;
    assert_eq!((status, json["transactions"].as_u64()), (StatusCode::OK, Some(2)));
    let (status, json) = sim.api("POST", "/v2/I-1/refund", json!({ "refund_key": "k" })).await;
    assert_eq!((status, json["transaction_status"].as_str()), (StatusCode::OK, Some("refund")));
    let (status, _) = sim.api("POST", "/v2/I-2/refund", json!({ "refund_key": "k" })).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, _) = sim.admin("/_sim/transactions:import", json!([{ "order_id": "I-3" }])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn disallowed_transitions_are_409() {
    let sim = Sim::new();
    sim.create("F-1", 10_000).await;
    let (status, json) = sim.admin("/_sim/transactions/F-1/refund", Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    sim.settle("F-1").await;
    for action in ["settle", "expire", "deny", "cancel", "capture", "failure"] {
        let (status, json) = sim.admin(&format!("/_sim/transactions/F-1/{action}"), Value::Null).await;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {json}");
        assert_eq!(json["from"], "settlement");
    }
    let (status, json) = sim.admin("/_sim/transactions/F-1/refund", Value::Null).await;
    assert_eq!((status, json["notification"]["transaction_status"].as_str()), (StatusCode::OK, Some("refund")));

    let (status, _) = sim.admin("/_sim/transactions/NOPE/settle", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = sim.admin("/_sim/transactions/F-1/explode", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    sim.create("F-2", 10_000).await;
    let (status, json) = sim.admin("/_sim/transactions/F-2/deny", json!({ "fraud_status": "deny" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["notification"]["fraud_status"], "deny");
    assert_eq!(json["notification"]["status_code"], "202");
    let (status, _) = sim.admin("/_sim/transactions/F-2/settle", Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn pending_transactions_past_their_expiry_read_as_expired() {
    let sim = Sim::new();
    let mut body = snap_body("G-1", 10_000);
    body["expiry"] = json!({ "start_time": "2020-01-01 10:00:00 +0700", "unit": "minute", "duration": 15 });
    let (status, _) = sim.api("POST", "/snap/v1/transactions", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, json) = sim.api("GET", "/v2/G-1/status", Value::Null).await;
    assert_eq!((json["transaction_status"].as_str(), json["status_code"].as_str()), (Some("expire"), Some("202")));
    let (status, _) = sim.admin("/_sim/transactions/G-1/settle", Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT);

    body["transaction_details"]["order_id"] = "G-2".into();
    body["expiry"] = json!({ "unit": "hours", "duration": 1 });
    sim.api("POST", "/snap/v1/transactions", body).await;
    let (_, json) = sim.api("GET", "/v2/G-2/status", Value::Null).await;
    assert_eq!(json["transaction_status"], "pending");
}

#[tokio::test]
async fn faults_fail_the_next_calls_then_clear() {
    let sim = Sim::new();
    let (status, _) = sim.admin("/_sim/faults", json!({ "fail_status": 503, "fail_count": 2 })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, json) = sim.api("POST", "/snap/v1/transactions", snap_body("H-1", 1000)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["status_code"], "503");
    assert!(json["error_messages"][0].is_string());
    let (status, json) = sim.api("GET", "/v2/H-1/status", Value::Null).await;
    assert_eq!((status, json["status_code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("503")));
    assert!(json["status_message"].is_string());
    sim.create("H-1", 1000).await;

    sim.admin("/_sim/faults", json!({ "fail_status": 500, "fail_count": -1 })).await;
    for _ in 0..3 {
        let (status, _) = sim.api("GET", "/v2/H-1/status", Value::Null).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    let (status, _) = sim.call("GET", "/_sim/health", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::OK, "the admin API is never faulted");
    let (status, _) = sim.call("DELETE", "/_sim/faults", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = sim.api("GET", "/v2/H-1/status", Value::Null).await;
    assert_eq!(status, StatusCode::OK);

    sim.admin("/_sim/faults", json!({ "latency_ms": 150 })).await;
    let started = Instant::now();
    let (status, _) = sim.api("GET", "/v2/H-1/status", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));

    let (status, _) = sim.admin("/_sim/faults", json!({ "fail_status": 200, "fail_count": 1 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A local webhook receiver that answers 500 to its first `fail_first` requests.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<Value>>>) {
    #[derive(Clone)]
    struct Received {
        bodies: Arc<Mutex<Vec<Value>>>,
        calls: Arc<Mutex<usize>>,
        fail_first: usize,
    }
    async fn handle(State(received): State<Received>, axum::Json(body): axum::Json<Value>) -> StatusCode {
        let call = {
            let mut calls = lock(&received.calls);
            *calls += 1;
            *calls
        };
        if call <= received.fail_first {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        lock(&received.bodies).push(body);
        StatusCode::OK
    }
    let received = Received { bodies: Arc::default(), calls: Arc::default(), fail_first };
    let bodies = Arc::clone(&received.bodies);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/midtrans/notification", listener.local_addr().unwrap());
    let router = Router::new().route("/midtrans/notification", post(handle)).with_state(received);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, bodies)
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn notifications_are_signed_duplicated_and_retried() {
    let sim = Sim::new();
    let (url, bodies) = receiver(1).await;
    let auth = basic(KEY);
    let headers = [("authorization", auth.as_str()), ("x-override-notification", url.as_str())];
    let (status, _) = sim.call("POST", "/snap/v1/transactions", &headers, json_body(&snap_body("N-1", 150_000))).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, json) = sim.admin("/_sim/transactions/N-1/settle", json!({ "copies": 2 })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["notification_urls"], json!([url]));
    eventually("two settlement notifications", || lock(&bodies).len() == 2).await;
    for body in lock(&bodies).iter() {
        assert_eq!(body, &json["notification"]);
        assert_eq!(body["signature_key"], expected_signature("N-1", "200", "150000.00"));
    }
    // One copy met the 500 and was retried. The log entry of a delivery is
    // written after the receiver answered: wait for it, not just the body.
    eventually("three delivery attempts logged", || lock(&sim.state.deliveries).len() == 3).await;
    let deliveries = lock(&sim.state.deliveries).clone();
    assert_eq!(deliveries.len(), 3);
    assert_eq!(deliveries.iter().filter(|d| d.status == Some(500)).count(), 1);
    assert!(deliveries.iter().any(|d| d.attempt == 2 && d.status == Some(200)));

    // A late "pending" after the settlement, state untouched.
    let (status, json) = sim.admin("/_sim/transactions/N-1/notify", json!({ "transaction_status": "pending" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["notification"]["status_code"], "201");
    eventually("the pending notification", || lock(&bodies).len() == 3).await;
    assert_eq!(lock(&bodies)[2]["signature_key"], expected_signature("N-1", "201", "150000.00"));
    let (_, json) = sim.call("GET", "/_sim/transactions/N-1", &[], Body::empty()).await;
    assert_eq!(json["status"], "settlement");

    eventually("four delivery attempts logged", || lock(&sim.state.deliveries).len() == 4).await;
    let (status, json) = sim.call("GET", "/_sim/deliveries", &[], Body::empty()).await;
    assert_eq!((status, json.as_array().map(Vec::len)), (StatusCode::OK, Some(4)));
    let (_, json) = sim.call("GET", "/_sim/transactions", &[], Body::empty()).await;
    assert_eq!(json.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn unreachable_notification_urls_are_retried_five_times() {
    let sim = Sim::new();
    // A port that was free a moment ago: connections are refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let url = format!("http://{closed}/notification");
    let auth = basic(KEY);
    let headers = [("authorization", auth.as_str()), ("x-override-notification", url.as_str())];
    sim.call("POST", "/snap/v1/transactions", &headers, json_body(&snap_body("U-1", 1000))).await;
    sim.admin("/_sim/transactions/U-1/expire", Value::Null).await;
    eventually("six attempts", || lock(&sim.state.deliveries).len() == 6).await;
    let deliveries = lock(&sim.state.deliveries).clone();
    assert!(deliveries.iter().all(|d| d.status.is_none() && d.error.is_some()));
    assert_eq!(deliveries.iter().map(|d| d.attempt).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
}
