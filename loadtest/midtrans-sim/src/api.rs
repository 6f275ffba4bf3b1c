//! The Midtrans API as the backend's adapter calls it: Snap create, Core API status and refund.
//! Every call passes [`guard`] first: injected latency and failures, then the server key.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{AppState, lock};
use crate::notify;
use crate::state::{DEFAULT_PAYMENT_TYPE, RefundError, Status, Transaction, amount_string};

const UNAUTHORIZED: &str = "Access denied due to unauthorized transaction, please check client or server key";
const MAX_ORDER_ID_CHARS: usize = 50;
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 36;

/// Snap reports errors as `error_messages`, the Core API (`/v2`) as `status_message`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Snap,
    Core,
}

impl Api {
    fn of_path(path: &str) -> Self {
        if path.starts_with("/snap/") { Api::Snap } else { Api::Core }
    }

    fn error(self, status: StatusCode, message: String) -> Response {
        match self {
            Api::Snap => snap_error(status, vec![message]),
            Api::Core => core_error(status, message),
        }
    }
}

fn snap_error(status: StatusCode, messages: Vec<String>) -> Response {
    (status, Json(json!({ "status_code": status.as_str(), "error_messages": messages }))).into_response()
}

fn core_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "status_code": status.as_str(), "status_message": message.into() }))).into_response()
}

fn unknown_transaction() -> Response {
    core_error(StatusCode::NOT_FOUND, "Transaction doesn't exist.")
}

pub async fn guard(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let api = Api::of_path(request.uri().path());
    // Counted on arrival, so N concurrent calls consume exactly N failures.
    let (latency_ms, failure) = {
        let mut faults = lock(&app.faults);
        (faults.latency_ms, faults.take_failure())
    };
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    if let Some(code) = failure {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let reason = status.canonical_reason().unwrap_or("Error");
        return api.error(status, format!("{reason} (simulated fault)"));
    }
    if !authorized(request.headers(), &app.config.server_key) {
        // The documented body has `error_messages`; Core API clients read `status_message`,
        // so the /v2 answer carries both.
        let mut body = json!({ "status_code": "401", "error_messages": [UNAUTHORIZED] });
        if api == Api::Core {
            body["status_message"] = UNAUTHORIZED.into();
        }
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    next.run(request).await
}

/// `Authorization: Basic base64("<server key>:")`; the password is ignored, as by Midtrans.
fn authorized(headers: &HeaderMap, server_key: &str) -> bool {
    let Some((scheme, credentials)) =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.split_once(' '))
    else {
        return false;
    };
    let decoded = BASE64.decode(credentials.trim()).ok().and_then(|bytes| String::from_utf8(bytes).ok());
    scheme.eq_ignore_ascii_case("basic")
        && decoded.is_some_and(|d| d.split_once(':').is_some_and(|(user, _)| user == server_key))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// `POST /snap/v1/transactions`.
///
/// Simplification: the transaction is `pending` at once, as if the customer had opened the
/// Snap page and picked bank transfer straight away (Midtrans only records it then).
pub async fn create_snap_transaction(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return snap_error(StatusCode::BAD_REQUEST, vec!["Request body is not valid JSON".into()]);
    };
    let now = Utc::now();
    let request = match SnapRequest::parse(&body, now) {
        Ok(request) => request,
        Err(messages) => return snap_error(StatusCode::BAD_REQUEST, messages),
    };
    let idempotency_key = header_str(&headers, "idempotency-key");
    if idempotency_key.is_some_and(|key| key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS) {
        let message = format!("Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY_CHARS} characters");
        return snap_error(StatusCode::BAD_REQUEST, vec![message]);
    }
    // A real Midtrans header: its comma-separated URLs (Midtrans takes up to three) replace the
    // dashboard setting, here `--notification-url`.
    let notification_urls = match header_str(&headers, "x-override-notification") {
        Some(urls) => urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect(),
        None => app.config.notification_url.iter().cloned().collect(),
    };

    let mut transactions = lock(&app.transactions);
    if let Some(existing) = transactions.get(&request.order_id) {
        if idempotency_key.is_some() && existing.idempotency_key.as_deref() == idempotency_key {
            return created(existing);
        }
        let message = "transaction_details.order_id has already been taken".to_string();
        return snap_error(StatusCode::BAD_REQUEST, vec![message]);
    }
    let token = Uuid::new_v4().to_string();
    let transaction = Transaction {
        order_id: request.order_id,
        gross_amount: request.gross_amount,
        status: Status::Pending,
        fraud_status: "accept".into(),
        payment_type: DEFAULT_PAYMENT_TYPE.into(),
        transaction_id: Uuid::new_v4(),
        transaction_time: now,
        settlement_time: None,
        expires_at: request.expires_at,
        enabled_payments: request.enabled_payments,
        refunds: Vec::new(),
        redirect_url: format!("{}/snap/v4/redirection/{token}", app.config.public_url),
        token,
        notification_urls,
        idempotency_key: idempotency_key.map(String::from),
    };
    let response = created(&transaction);
    transactions.insert(transaction);
    response
}

fn created(transaction: &Transaction) -> Response {
    let body = json!({ "token": transaction.token, "redirect_url": transaction.redirect_url });
    (StatusCode::CREATED, Json(body)).into_response()
}

/// The parts of a Snap request the simulator keeps, once validated.
struct SnapRequest {
    order_id: String,
    gross_amount: i64,
    expires_at: Option<DateTime<Utc>>,
    /// The payment types the Snap page offers; empty offers all.
    enabled_payments: Vec<String>,
}

impl SnapRequest {
    /// Collects every problem, as Midtrans lists them all in `error_messages`.
    fn parse(body: &Value, now: DateTime<Utc>) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let details = &body["transaction_details"];

        let order_id = match &details["order_id"] {
            Value::String(id) if id.chars().count() > MAX_ORDER_ID_CHARS => {
                errors.push(format!("transaction_details.order_id must be at most {MAX_ORDER_ID_CHARS} characters"));
                None
            }
            Value::String(id) if !id.is_empty() => Some(id.clone()),
            Value::Null | Value::String(_) => {
                errors.push("transaction_details.order_id is required".into());
                None
            }
            _ => {
                errors.push("transaction_details.order_id must be a string".into());
                None
            }
        };

        let gross_amount = match &details["gross_amount"] {
            Value::Null => {
                errors.push("transaction_details.gross_amount is required".into());
                None
            }
            value => match whole_number(value) {
                Some(amount) if amount > 0 => Some(amount),
                Some(_) => {
                    errors.push("transaction_details.gross_amount must be greater than 0".into());
                    None
                }
                None => {
                    errors.push("transaction_details.gross_amount must be a whole number".into());
                    None
                }
            },
        };

        if let Some(items_total) = items_total(&body["item_details"], &mut errors)
            && let Some(gross_amount) = gross_amount
            && items_total != i128::from(gross_amount)
        {
            errors.push("transaction_details.gross_amount is not equal to the sum of item_details".into());
        }

        let expires_at = expiry(&body["expiry"], now, &mut errors);
        let enabled_payments = match &body["enabled_payments"] {
            Value::Null => Vec::new(),
            Value::Array(methods) if methods.iter().all(Value::is_string) => {
                methods.iter().filter_map(Value::as_str).map(str::to_owned).collect()
            }
            _ => {
                errors.push("enabled_payments must be an array of payment type names".into());
                Vec::new()
            }
        };

        match (order_id, gross_amount) {
            (Some(order_id), Some(gross_amount)) if errors.is_empty() => {
                Ok(SnapRequest { order_id, gross_amount, expires_at, enabled_payments })
            }
            _ => Err(errors),
        }
    }
}

/// Sum of price × quantity, or `None` when there are no items (or they are invalid).
fn items_total(items: &Value, errors: &mut Vec<String>) -> Option<i128> {
    let items = match items {
        Value::Null => return None,
        Value::Array(items) => items,
        _ => {
            errors.push("item_details must be an array".into());
            return None;
        }
    };
    let mut total = Some(0_i128);
    for (i, item) in items.iter().enumerate() {
        // A negative price is a discount line, which Midtrans allows.
        let price = whole_number(&item["price"]);
        if price.is_none() {
            errors.push(format!("item_details[{i}].price must be a whole number"));
        }
        let quantity = whole_number(&item["quantity"]).filter(|&q| q > 0);
        if quantity.is_none() {
            errors.push(format!("item_details[{i}].quantity must be a whole number greater than 0"));
        }
        total = match (total, price, quantity) {
            (Some(total), Some(price), Some(quantity)) => Some(total + i128::from(price) * i128::from(quantity)),
            _ => None,
        };
    }
    total
}

/// When a pending transaction expires: `start_time` (default now) + `duration` × `unit`.
fn expiry(expiry: &Value, now: DateTime<Utc>, errors: &mut Vec<String>) -> Option<DateTime<Utc>> {
    if expiry.is_null() {
        return None;
    }
    let start = match &expiry["start_time"] {
        Value::Null => Some(now),
        Value::String(s) => DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S %z").ok().map(|t| t.to_utc()),
        _ => None,
    };
    if start.is_none() {
        errors.push("expiry.start_time must look like \"2026-11-24 10:00:00 +0700\"".into());
    }
    let unit_seconds = match expiry["unit"].as_str().map(|u| u.trim_end_matches('s')) {
        Some("second") => Some(1),
        Some("minute") => Some(60),
        Some("hour") => Some(3600),
        Some("day") => Some(86_400),
        _ => {
            errors.push("expiry.unit must be one of second, minute, hour, day".into());
            None
        }
    };
    let duration = whole_number(&expiry["duration"]).filter(|&d| d > 0);
    if duration.is_none() {
        errors.push("expiry.duration must be a whole number greater than 0".into());
    }
    let (Some(start), Some(unit_seconds), Some(duration)) = (start, unit_seconds, duration) else {
        return None;
    };
    let expires_at = duration
        .checked_mul(unit_seconds)
        .and_then(TimeDelta::try_seconds)
        .and_then(|length| start.checked_add_signed(length));
    if expires_at.is_none() {
        errors.push("expiry.duration is too large".into());
    }
    expires_at
}

/// A JSON number without a fractional part (`150000` or `150000.0`); anything else is `None`.
fn whole_number(value: &Value) -> Option<i64> {
    if let Some(n) = value.as_i64() {
        return Some(n);
    }
    // Beyond 2^53 a float no longer holds whole numbers exactly.
    let f = value.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// `GET /v2/{order_id or transaction_id}/status`: the notification body for the current status.
pub async fn get_status(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let mut transactions = lock(&app.transactions);
    let Some(transaction) = transactions.find_mut(&id) else {
        return unknown_transaction();
    };
    transaction.expire_if_due(Utc::now());
    Json(transaction.notification(transaction.status, &app.config)).into_response()
}

#[derive(Default, Deserialize)]
struct RefundRequest {
    refund_key: Option<String>,
    amount: Option<Value>,
    reason: Option<String>,
}

/// `POST /v2/{order_id or transaction_id}/refund`. Like Midtrans, it also sends a notification for the new status.
pub async fn refund(State(app): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let request = if body.trim_ascii().is_empty() {
        RefundRequest::default()
    } else {
        match serde_json::from_slice::<RefundRequest>(&body) {
            Ok(request) => request,
            Err(e) => return core_error(StatusCode::BAD_REQUEST, format!("Invalid refund request: {e}")),
        }
    };
    let amount = match request.amount {
        None | Some(Value::Null) => None,
        Some(value) => match whole_number(&value) {
            Some(amount) if amount > 0 => Some(amount),
            _ => return core_error(StatusCode::BAD_REQUEST, "amount must be a whole number greater than 0"),
        },
    };
    let now = Utc::now();
    let mut transactions = lock(&app.transactions);
    let Some(transaction) = transactions.find_mut(&id) else {
        return unknown_transaction();
    };
    transaction.expire_if_due(now);
    if let Some(key) = &request.refund_key
        && let Some(earlier) = transaction.find_refund(key)
    {
        return Json(earlier.response.clone()).into_response();
    }
    let refund_key = request.refund_key.unwrap_or_else(|| format!("sim-{}", Uuid::new_v4()));
    match transaction.refund(refund_key, amount, request.reason.unwrap_or_default(), now) {
        Ok(response) => {
            let notification = transaction.notification(transaction.status, &app.config);
            let urls = transaction.notification_urls.clone();
            drop(transactions);
            notify::spawn(&app, &urls, notification, 1, Duration::ZERO);
            Json(response).into_response()
        }
        Err(RefundError::MethodNotRefundable(payment_type)) => core_error(
            StatusCode::PRECONDITION_FAILED,
            format!("Refund is not supported for payment type {payment_type}; refund it to the customer manually."),
        ),
        Err(RefundError::NotRefundable(_)) => {
            core_error(StatusCode::PRECONDITION_FAILED, "Transaction status cannot be updated.")
        }
        Err(RefundError::ExceedsRemaining { remaining }) => core_error(
            StatusCode::PRECONDITION_FAILED,
            format!("Refund amount exceeds the refundable amount of {}", amount_string(remaining)),
        ),
    }
}

/// `POST /v2/{order_id or transaction_id}/approve`: accepts a card capture held for fraud
/// review (`fraud_status: challenge`); Midtrans then notifies `capture` with `accept`.
pub async fn approve(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    decide_challenge(&app, &id, true)
}

/// `POST /v2/{order_id or transaction_id}/deny`: refuses it; Midtrans notifies `deny`.
pub async fn deny(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    decide_challenge(&app, &id, false)
}

fn decide_challenge(app: &AppState, id: &str, approve: bool) -> Response {
    let now = Utc::now();
    let mut transactions = lock(&app.transactions);
    let Some(transaction) = transactions.find_mut(id) else {
        return unknown_transaction();
    };
    if transaction.status != Status::Capture || transaction.fraud_status != "challenge" {
        return core_error(StatusCode::PRECONDITION_FAILED, "Transaction status cannot be updated.");
    }
    if approve {
        transaction.fraud_status = "accept".into();
    } else {
        transaction.fraud_status = "deny".into();
        if transaction.transition(Status::Deny, now).is_err() {
            return core_error(StatusCode::PRECONDITION_FAILED, "Transaction status cannot be updated.");
        }
    }
    let notification = transaction.notification(transaction.status, &app.config);
    let urls = transaction.notification_urls.clone();
    // The API call itself succeeded (200), whatever status code the new transaction status has.
    let mut answer = notification.clone();
    answer["status_code"] = "200".into();
    answer["status_message"] =
        if approve { "Success, transaction is approved" } else { "Success, transaction is denied" }.into();
    drop(transactions);
    notify::spawn(app, &urls, notification, 1, Duration::ZERO);
    Json(answer).into_response()
}
