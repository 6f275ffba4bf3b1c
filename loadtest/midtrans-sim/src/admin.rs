//! The admin API under `/_sim` (no auth): drive transactions through their statuses, send
//! notifications (also duplicated, late, or out of order), inject faults, inspect state.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{AppState, lock};
use crate::notify::{self, DeliveryAttempt};
use crate::state::{DEFAULT_PAYMENT_TYPE, Faults, Status, Transaction};

fn admin_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn unknown_order(order_id: &str) -> Response {
    admin_error(StatusCode::NOT_FOUND, format!("no transaction with order_id {order_id:?}"))
}

/// An empty body means all defaults, so `curl -X POST` works without `-d`.
fn parse_body<T: DeserializeOwned + Default>(body: &Bytes) -> serde_json::Result<T> {
    if body.trim_ascii().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
}

fn invalid_body(error: serde_json::Error) -> Response {
    admin_error(StatusCode::BAD_REQUEST, format!("invalid body: {error}"))
}

pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn list_transactions(State(app): State<AppState>) -> Json<Vec<Transaction>> {
    let now = Utc::now();
    let mut all: Vec<Transaction> = lock(&app.transactions)
        .values_mut()
        .map(|transaction| {
            transaction.expire_if_due(now);
            transaction.clone()
        })
        .collect();
    all.sort_by(|a, b| (a.transaction_time, &a.order_id).cmp(&(b.transaction_time, &b.order_id)));
    Json(all)
}

pub async fn get_transaction(State(app): State<AppState>, Path(order_id): Path<String>) -> Response {
    let mut transactions = lock(&app.transactions);
    let Some(transaction) = transactions.get_mut(&order_id) else {
        return unknown_order(&order_id);
    };
    transaction.expire_if_due(Utc::now());
    Json(transaction.clone()).into_response()
}

/// A transaction as Midtrans would know it, for tests that deliver
/// notifications themselves: the status API then answers what they claim.
#[derive(Deserialize)]
pub struct PutTransaction {
    status: Status,
    gross_amount: i64,
    #[serde(default = "accepted")]
    fraud_status: String,
    #[serde(default = "default_payment_type")]
    payment_type: String,
}

fn default_payment_type() -> String {
    DEFAULT_PAYMENT_TYPE.into()
}

fn accepted() -> String {
    "accept".into()
}

/// `PUT /_sim/transactions/{order_id}`: make (or overwrite) the transaction's
/// state without a Snap create and without notifying anyone.
pub async fn put_transaction(State(app): State<AppState>, Path(order_id): Path<String>, body: Bytes) -> Response {
    let request: PutTransaction = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return invalid_body(e),
    };
    let now = Utc::now();
    let mut transactions = lock(&app.transactions);
    let transaction = known_as(transactions.get_mut(&order_id).map(|t| t.clone()), order_id, request, now);
    transactions.insert(transaction.clone());
    Json(transaction).into_response()
}

/// The transaction (the existing one, or a new one) in the state `request` says.
fn known_as(
    existing: Option<Transaction>,
    order_id: String,
    request: PutTransaction,
    now: DateTime<Utc>,
) -> Transaction {
    let mut transaction = existing.unwrap_or_else(|| Transaction {
        order_id,
        gross_amount: request.gross_amount,
        status: Status::Pending,
        fraud_status: String::new(),
        payment_type: DEFAULT_PAYMENT_TYPE.into(),
        transaction_id: Uuid::new_v4(),
        transaction_time: now,
        settlement_time: None,
        expires_at: None,
        enabled_payments: Vec::new(),
        refunds: Vec::new(),
        token: String::new(),
        redirect_url: String::new(),
        notification_urls: Vec::new(),
        idempotency_key: None,
    });
    transaction.status = request.status;
    transaction.gross_amount = request.gross_amount;
    transaction.fraud_status = request.fraud_status;
    transaction.payment_type = request.payment_type;
    transaction.settlement_time = (request.status == Status::Settlement).then_some(now);
    transaction
}

/// One transaction of an import: what Midtrans knows of a payment made
/// elsewhere (a benchmark's seeded sales).
#[derive(Deserialize)]
pub struct ImportedTransaction {
    order_id: String,
    #[serde(flatten)]
    state: PutTransaction,
}

/// `POST /_sim/transactions:import`: many [`put_transaction`]s at once, without
/// notifying anyone; answers how many it holds now.
pub async fn import_transactions(State(app): State<AppState>, body: Bytes) -> Response {
    let imported: Vec<ImportedTransaction> = match serde_json::from_slice(&body) {
        Ok(imported) => imported,
        Err(e) => return invalid_body(e),
    };
    let now = Utc::now();
    let mut transactions = lock(&app.transactions);
    for ImportedTransaction { order_id, state } in imported {
        let transaction = known_as(transactions.get_mut(&order_id).map(|t| t.clone()), order_id, state, now);
        transactions.insert(transaction);
    }
    Json(json!({ "transactions": transactions.count() })).into_response()
}

pub async fn list_deliveries(State(app): State<AppState>) -> Json<Vec<DeliveryAttempt>> {
    Json(lock(&app.deliveries).clone())
}

#[derive(Deserialize)]
#[serde(default)]
struct ActionRequest {
    notify: bool,
    copies: u32,
    delay_ms: u64,
    fraud_status: Option<String>,
    /// How the customer paid (settle, capture): `gopay`, `bank_transfer`, ….
    payment_type: Option<String>,
}

impl Default for ActionRequest {
    fn default() -> Self {
        ActionRequest { notify: true, copies: 1, delay_ms: 0, fraud_status: None, payment_type: None }
    }
}

/// `POST /_sim/transactions/{order_id}/{action}`: apply the transition, then (unless
/// `notify: false`) post the notification in the background.
pub async fn apply_action(
    State(app): State<AppState>,
    Path((order_id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let request: ActionRequest = match parse_body(&body) {
        Ok(request) => request,
        Err(e) => return invalid_body(e),
    };
    let target = match action.as_str() {
        "settle" => Some(Status::Settlement),
        "capture" => Some(Status::Capture),
        "expire" => Some(Status::Expire),
        "deny" => Some(Status::Deny),
        "cancel" => Some(Status::Cancel),
        "failure" => Some(Status::Failure),
        "refund" => None,
        _ => {
            let message = format!(
                "unknown action {action:?}; use settle, capture, expire, deny, cancel, refund, failure or notify"
            );
            return admin_error(StatusCode::NOT_FOUND, message);
        }
    };

    let now = Utc::now();
    let mut transactions = lock(&app.transactions);
    let Some(transaction) = transactions.get_mut(&order_id) else {
        return unknown_order(&order_id);
    };
    transaction.expire_if_due(now);
    let from = transaction.status;
    let applied = match target {
        Some(to) => transaction.transition(to, now).is_ok(),
        // The refund action refunds whatever is left, like a full refund from the dashboard.
        None => transaction.refund(format!("sim-{}", Uuid::new_v4()), None, "simulator".into(), now).is_ok(),
    };
    if !applied {
        let to = target.unwrap_or(Status::Refund);
        let body = json!({
            "error": format!("transaction {order_id:?} is {}; it cannot become {}", from.as_str(), to.as_str()),
            "from": from,
            "to": to,
        });
        return (StatusCode::CONFLICT, Json(body)).into_response();
    }
    if let Some(fraud_status) = request.fraud_status {
        transaction.fraud_status = fraud_status;
    }
    if let Some(payment_type) = request.payment_type {
        transaction.payment_type = payment_type;
    }
    let notification = transaction.notification(transaction.status, &app.config);
    let urls = transaction.notification_urls.clone();
    drop(transactions);

    if request.notify {
        notify::spawn(&app, &urls, notification.clone(), request.copies, Duration::from_millis(request.delay_ms));
    }
    Json(json!({ "notification": notification, "notification_urls": urls })).into_response()
}

#[derive(Deserialize)]
struct NotifyRequest {
    transaction_status: Status,
    #[serde(default = "one")]
    copies: u32,
    #[serde(default)]
    delay_ms: u64,
    /// Overrides the stored fraud status in this notification only.
    #[serde(default)]
    fraud_status: Option<String>,
}

fn one() -> u32 {
    1
}

/// `POST /_sim/transactions/{order_id}/notify`: a correctly signed notification for any
/// status, state untouched — for duplicate, late and out-of-order delivery.
pub async fn notify(State(app): State<AppState>, Path(order_id): Path<String>, body: Bytes) -> Response {
    let request: NotifyRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return invalid_body(e),
    };
    let (notification, urls) = {
        let transactions = lock(&app.transactions);
        let Some(transaction) = transactions.get(&order_id) else {
            return unknown_order(&order_id);
        };
        let mut view = transaction.clone();
        if let Some(fraud_status) = request.fraud_status {
            view.fraud_status = fraud_status;
        }
        (view.notification(request.transaction_status, &app.config), view.notification_urls)
    };
    notify::spawn(&app, &urls, notification.clone(), request.copies, Duration::from_millis(request.delay_ms));
    Json(json!({ "notification": notification, "notification_urls": urls })).into_response()
}

pub async fn get_faults(State(app): State<AppState>) -> Json<Faults> {
    Json(*lock(&app.faults))
}

pub async fn set_faults(State(app): State<AppState>, body: Bytes) -> Response {
    let faults: Faults = match parse_body(&body) {
        Ok(faults) => faults,
        Err(e) => return invalid_body(e),
    };
    if !(400..=599).contains(&faults.fail_status) {
        return admin_error(StatusCode::BAD_REQUEST, "fail_status must be an HTTP error status (400-599)");
    }
    if faults.fail_count < -1 {
        return admin_error(StatusCode::BAD_REQUEST, "fail_count must be -1 (always) or a count ≥ 0");
    }
    *lock(&app.faults) = faults;
    Json(faults).into_response()
}

pub async fn reset_faults(State(app): State<AppState>) -> Json<Faults> {
    let faults = Faults::default();
    *lock(&app.faults) = faults;
    Json(faults)
}
