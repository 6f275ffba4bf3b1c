//! Midtrans (shared/MIDTRANS.md): Snap create, transaction status, refund.
//!
//! Every call has a deadline (`MIDTRANS_TIMEOUT_MS`, retries included) and
//! goes through one circuit breaker: after a run of failures (timeouts,
//! refused connections, 5xx) calls fail at once with UNAVAILABLE and
//! `Retry-After` until a trial call succeeds, so a Midtrans outage costs the
//! caller nothing but its payment button. Only calls that are safe to repeat
//! are retried: Snap create carries an `Idempotency-Key`, status is a read,
//! and a refund carries its `refund_key`.
//!
//! The breaker is failsafe's (`failsafe` crate: the maintained, widely used
//! circuit breaker for Rust futures, with consecutive-failure and
//! success-rate policies; no hand-written state machine), with an open
//! interval of millisecond precision ([`OpenFor`]).

use std::{sync::Arc, time::Duration};
use ticketing_domain::Reason;

use backon::{ExponentialBuilder, Retryable};
use failsafe::{Config as BreakerConfig, StateMachine, failure_policy, futures::CircuitBreaker};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use ticketing_domain::Error;

#[derive(Debug, Clone)]
pub struct MidtransSettings {
    /// Snap base URL (`https://app.sandbox.midtrans.com`, or the simulator).
    pub snap_url: String,
    /// Core API base URL (`https://api.sandbox.midtrans.com`, or the simulator).
    pub api_url: String,
    pub server_key: SecretString,
    /// Sent as `X-Override-Notification`, so one merchant account can point
    /// each deployment's notifications at its own webhook.
    pub notification_url: Option<String>,
    /// Where Snap sends the customer back after paying.
    pub finish_url: Option<String>,
    pub timeout: Duration,
    /// Consecutive failures that open the breaker, and how long it stays open
    /// before a trial call ([`OpenFor`]: half of it to all of it, growing up
    /// to 16× while trials fail).
    pub breaker_failures: u32,
    pub breaker_open: Duration,
}

/// A transaction's status as Midtrans reports it, in a notification or from
/// the status API (the same fields). Strings exactly as received: the
/// signature is computed over them.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TransactionStatus {
    pub order_id: String,
    pub status_code: String,
    pub gross_amount: String,
    pub signature_key: String,
    pub transaction_status: String,
    #[serde(default)]
    pub fraud_status: Option<String>,
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// How the customer paid (`credit_card`, `gopay`, `bank_transfer`, …).
    #[serde(default)]
    pub payment_type: Option<String>,
}

/// What Midtrans answered a Core API change (refund, approve, deny).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreAnswer {
    /// Done: the money goes back, the challenge is decided.
    Accepted,
    /// Refused (a method it cannot refund by API, an amount past what is
    /// left, a challenge already decided, …), with Midtrans's own words.
    Refused { status_code: String, message: String },
}

/// The merchant's decision on a card payment held for fraud review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeDecision {
    Approve,
    Deny,
}

impl ChallengeDecision {
    fn path(self) -> &'static str {
        match self {
            ChallengeDecision::Approve => "approve",
            ChallengeDecision::Deny => "deny",
        }
    }
}

pub struct SnapRequest {
    pub order_id: String,
    pub gross_amount: i64,
    pub items: Vec<SnapItem>,
    pub customer_email: String,
    /// Midtrans's own format, `2026-11-24 10:00:00 +0700`.
    pub start_time: String,
    pub expiry_minutes: i64,
    /// Snap's `enabled_payments`; empty offers every method.
    pub enabled_payments: Vec<String>,
}

#[derive(Serialize)]
pub struct SnapItem {
    pub id: String,
    pub price: i64,
    pub quantity: i32,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SnapTransaction {
    pub token: String,
    pub redirect_url: String,
}

/// Why a call did not get an answer worth acting on.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// Timeout, refused connection, 5xx: Midtrans is unwell (counts against
    /// the breaker, may be retried).
    #[error("Midtrans unavailable: {0}")]
    Unavailable(String),
    /// Midtrans answered and refused (4xx): retrying changes nothing.
    #[error("Midtrans refused the request ({status}): {body}")]
    Refused { status: StatusCode, body: String },
}

type Breaker = StateMachine<failure_policy::ConsecutiveFailures<OpenFor>, BreakerMetrics>;

/// How long the breaker stays open each time: between half and all of
/// `MIDTRANS_BREAKER_OPEN_MS` at random (equal jitter, so replicas that
/// opened together do not all probe at once), doubling while trials fail,
/// up to 16×. failsafe's own `equal_jittered` counts whole seconds: it
/// opened a 1-second breaker for 0 s, and 1.5 s for 0 or 1.
#[derive(Debug, Clone)]
struct OpenFor {
    next: Duration,
    max: Duration,
}

impl Iterator for OpenFor {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let half = self.next / 2;
        let open = half + half.mul_f64(rand::random::<f64>());
        self.next = (self.next * 2).min(self.max);
        Some(open)
    }
}

#[derive(Clone)]
pub struct Midtrans {
    http: reqwest::Client,
    settings: Arc<MidtransSettings>,
    breaker: Breaker,
}

const OPERATION_SNAP: &str = "snap_create";
const OPERATION_STATUS: &str = "status";
const OPERATION_REFUND: &str = "refund";
const OPERATION_DECIDE: &str = "decide_challenge";

impl Midtrans {
    pub fn new(settings: MidtransSettings) -> Midtrans {
        // Each attempt gets half the call's deadline, so a timed-out first
        // attempt leaves room for a retry.
        let http = reqwest::Client::builder()
            .timeout(settings.timeout / 2)
            .connect_timeout(settings.timeout.min(Duration::from_secs(2)))
            .build()
            .expect("a TLS backend is compiled in");
        let open = OpenFor { next: settings.breaker_open, max: settings.breaker_open * 16 };
        let policy = failure_policy::consecutive_failures(settings.breaker_failures, open);
        let breaker = BreakerConfig::new().failure_policy(policy).instrument(BreakerMetrics).build();
        BreakerMetrics::set_state(0.0);
        Midtrans { http, settings: Arc::new(settings), breaker }
    }

    pub fn server_key(&self) -> &str {
        self.settings.server_key.expose_secret()
    }

    /// Creates the Snap transaction of an order. The order id is the
    /// idempotency key: a retry, or a second request for the same order,
    /// gets the first transaction back.
    pub async fn create_snap(&self, request: &SnapRequest) -> Result<SnapTransaction, Error> {
        let mut body = serde_json::json!({
            "transaction_details": { "order_id": request.order_id, "gross_amount": request.gross_amount },
            "item_details": request.items,
            "customer_details": { "email": request.customer_email },
            "expiry": { "start_time": request.start_time, "unit": "minute", "duration": request.expiry_minutes },
        });
        if let Some(finish) = &self.settings.finish_url {
            body["callbacks"] = serde_json::json!({ "finish": finish });
        }
        if !request.enabled_payments.is_empty() {
            body["enabled_payments"] = serde_json::json!(request.enabled_payments);
        }
        let url = format!("{}/snap/v1/transactions", self.settings.snap_url);
        let idempotency_key = request.order_id.clone();
        let answer = self
            .call(OPERATION_SNAP, || {
                let mut call = self.http.post(&url).json(&body).header("Idempotency-Key", &idempotency_key);
                if let Some(notify) = &self.settings.notification_url {
                    call = call.header("X-Override-Notification", notify);
                }
                call
            })
            .await?;
        match answer {
            Answer::Found(body) => {
                serde_json::from_slice(&body).map_err(|e| Error::internal(format!("Snap answer: {e}")))
            }
            Answer::NotFound => Err(Error::internal("Snap create answered 404")),
        }
    }

    /// The transaction's status; `None` when Midtrans does not know it (a
    /// Snap page opened but no payment method chosen).
    pub async fn status(&self, order_id: &str) -> Result<Option<TransactionStatus>, Error> {
        let url = format!("{}/v2/{order_id}/status", self.settings.api_url);
        match self.call(OPERATION_STATUS, || self.http.get(&url)).await? {
            Answer::Found(body) => {
                serde_json::from_slice(&body).map(Some).map_err(|e| Error::internal(format!("status answer: {e}")))
            }
            Answer::NotFound => Ok(None),
        }
    }

    /// Refunds a settled transaction, wholly or in part; `refund_key` makes
    /// a repeat harmless.
    pub async fn refund(
        &self,
        order_id: &str,
        refund_key: &str,
        amount: i64,
        reason: &str,
    ) -> Result<CoreAnswer, Error> {
        let url = format!("{}/v2/{order_id}/refund", self.settings.api_url);
        let body = serde_json::json!({ "refund_key": refund_key, "amount": amount, "reason": reason });
        self.change(OPERATION_REFUND, Repeat::Safe, &url, Some(body)).await
    }

    /// Approves or denies a card payment held for fraud review; Midtrans
    /// then notifies the new status like any other change.
    pub async fn decide(&self, order_id: &str, decision: ChallengeDecision) -> Result<CoreAnswer, Error> {
        let url = format!("{}/v2/{order_id}/{}", self.settings.api_url, decision.path());
        // Not repeated: a decision that was made but whose answer was lost
        // would come back "already decided" and read as a refusal.
        self.change(OPERATION_DECIDE, Repeat::Once, &url, None).await
    }

    /// A Core API change. Midtrans answers a refusal either with a 4xx or
    /// with HTTP 200 and its own `status_code` in the body: both are
    /// [`CoreAnswer::Refused`], never retried.
    async fn change(
        &self,
        operation: &'static str,
        repeat: Repeat,
        url: &str,
        body: Option<serde_json::Value>,
    ) -> Result<CoreAnswer, Error> {
        let send = || {
            let call = self.http.post(url);
            match &body {
                Some(body) => call.json(body),
                None => call,
            }
        };
        let answer = match self.call_raw(operation, repeat, send).await {
            Ok(Answer::Found(body)) => body,
            Ok(Answer::NotFound) => {
                return Ok(CoreAnswer::Refused {
                    status_code: "404".into(),
                    message: "Midtrans does not know this transaction".into(),
                });
            }
            Err(MidtransError::Refused { status, body }) => {
                let (status_code, message) = core_api_status(&body).unwrap_or((status.as_str().to_owned(), body));
                return Ok(CoreAnswer::Refused { status_code, message });
            }
            Err(MidtransError::Other(error)) => return Err(error),
        };
        let text = String::from_utf8_lossy(&answer);
        match core_api_status(&text) {
            Some((code, _)) if code == "200" || code == "201" => Ok(CoreAnswer::Accepted),
            Some((status_code, message)) => Ok(CoreAnswer::Refused { status_code, message }),
            None => Err(Error::internal("Midtrans's answer has no status_code")),
        }
    }

    /// [`Self::call_raw`], a refusal as an internal error.
    async fn call(
        &self,
        operation: &'static str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer, Error> {
        // Snap's create carries an idempotency key, the status is a read.
        self.call_raw(operation, Repeat::Safe, build).await.map_err(|error| match error {
            MidtransError::Refused { status, body } => Error::internal(CallError::Refused { status, body }.to_string()),
            MidtransError::Other(error) => error,
        })
    }

    /// One logical call: breaker, deadline, bounded retries of transient
    /// failures (of a call that may be repeated), metrics.
    async fn call_raw(
        &self,
        operation: &'static str,
        repeat: Repeat,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer, MidtransError> {
        let started = std::time::Instant::now();
        let attempt = || async {
            let response = build()
                .basic_auth(self.server_key(), Some(""))
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| CallError::Unavailable(e.without_url().to_string()))?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| CallError::Unavailable(e.without_url().to_string()))?;
            classify(status, body)
        };
        let retried = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_times(match repeat {
                        Repeat::Safe => RETRIES,
                        Repeat::Once => 0,
                    })
                    .with_jitter(),
            )
            .when(|e| matches!(e, CallError::Unavailable(_)));
        let deadline = async {
            tokio::time::timeout(self.settings.timeout, retried).await.unwrap_or_else(|_| {
                Err(CallError::Unavailable(format!("no answer within {:?}", self.settings.timeout)))
            })
        };
        let result = self.breaker.call_with(|e: &CallError| matches!(e, CallError::Unavailable(_)), deadline).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(failsafe::Error::Rejected) => "breaker_open",
            Err(failsafe::Error::Inner(CallError::Unavailable(_))) => "unavailable",
            Err(failsafe::Error::Inner(CallError::Refused { .. })) => "refused",
        };
        metrics::histogram!("ticketing_midtrans_request_seconds", "operation" => operation, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result.map_err(|error| match error {
            failsafe::Error::Rejected => MidtransError::Other(
                Error::unavailable(
                    "the payment provider is unavailable; try again shortly",
                    self.settings.breaker_open,
                )
                .with_reason(Reason::PaymentProviderUnavailable),
            ),
            failsafe::Error::Inner(CallError::Unavailable(cause)) => {
                tracing::warn!(operation, %cause, "Midtrans call failed");
                MidtransError::Other(
                    Error::unavailable(
                        "the payment provider did not answer; try again shortly",
                        self.settings.breaker_open,
                    )
                    .with_reason(Reason::PaymentProviderUnavailable),
                )
            }
            failsafe::Error::Inner(CallError::Refused { status, body }) => MidtransError::Refused { status, body },
        })
    }
}

enum Answer {
    Found(bytes::Bytes),
    NotFound,
}

/// Whether a call may be sent again after a transient failure: only when a
/// repeat has the first one's effect (a read, an idempotency key).
#[derive(Debug, Clone, Copy)]
enum Repeat {
    Safe,
    Once,
}

/// Retries of a safe call after its first attempt (5xx, 429, no answer).
const RETRIES: usize = 2;

/// A call that got no answer worth acting on.
enum MidtransError {
    /// Midtrans answered 4xx: its status and (bounded) body.
    Refused { status: StatusCode, body: String },
    /// Unavailable, breaker open: retry later.
    Other(Error),
}

/// The Core API's `status_code` and `status_message` in an answer's body.
fn core_api_status(body: &str) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let code = value.get("status_code")?.as_str()?.to_owned();
    let message = value.get("status_message").and_then(|m| m.as_str()).unwrap_or_default();
    Some((code, message.chars().take(200).collect()))
}

fn classify(status: StatusCode, body: bytes::Bytes) -> Result<Answer, CallError> {
    if status.is_success() {
        return Ok(Answer::Found(body));
    }
    if status == StatusCode::NOT_FOUND {
        return Ok(Answer::NotFound);
    }
    let body = String::from_utf8_lossy(&body).chars().take(500).collect();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Err(CallError::Unavailable(format!("{status}: {body}")))
    } else {
        Err(CallError::Refused { status, body })
    }
}

/// `ticketing_midtrans_breaker_state`: 0 closed, 1 half open, 2 open.
#[derive(Debug, Clone, Copy)]
pub struct BreakerMetrics;

impl BreakerMetrics {
    fn set_state(state: f64) {
        metrics::gauge!("ticketing_midtrans_breaker_state").set(state);
    }
}

impl failsafe::Instrument for BreakerMetrics {
    fn on_call_rejected(&self) {
        metrics::counter!("ticketing_midtrans_breaker_rejections_total").increment(1);
    }

    fn on_open(&self) {
        tracing::warn!("Midtrans circuit breaker opened");
        BreakerMetrics::set_state(2.0);
    }

    fn on_half_open(&self) {
        BreakerMetrics::set_state(1.0);
    }

    fn on_closed(&self) {
        tracing::debug!("Midtrans circuit breaker closed");
        BreakerMetrics::set_state(0.0);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::Instant,
    };

    use ticketing_domain::Code;

    use super::*;

    /// A Midtrans that answers the n-th request with the n-th status of its
    /// script (the last one repeats), and notes when each request came.
    struct Scripted {
        url: String,
        seen: Arc<Mutex<Vec<Instant>>>,
    }

    impl Scripted {
        async fn start(script: &[u16]) -> Scripted {
            let script = Arc::new(script.to_vec());
            let seen: Arc<Mutex<Vec<Instant>>> = Arc::default();
            let noted = seen.clone();
            let router = axum::Router::new().fallback(move || {
                let (script, noted) = (script.clone(), noted.clone());
                async move {
                    let n = {
                        let mut noted = noted.lock().unwrap();
                        noted.push(Instant::now());
                        noted.len() - 1
                    };
                    let status = script[n.min(script.len() - 1)];
                    // Fits both a status read and a Core API change's answer.
                    let body = serde_json::json!({
                        "status_code": status.to_string(), "status_message": "scripted", "order_id": "o",
                        "gross_amount": "1.00", "signature_key": "s", "transaction_status": "settlement",
                    });
                    (axum::http::StatusCode::from_u16(status).unwrap(), axum::Json(body))
                }
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, router).await });
            Scripted { url, seen }
        }

        fn requests(&self) -> usize {
            self.seen.lock().unwrap().len()
        }

        fn midtrans(&self, breaker_failures: u32) -> Midtrans {
            Midtrans::new(MidtransSettings {
                snap_url: self.url.clone(),
                api_url: self.url.clone(),
                server_key: SecretString::from("SB-Mid-server-unit"),
                notification_url: None,
                finish_url: None,
                timeout: Duration::from_secs(10),
                breaker_failures,
                breaker_open: Duration::from_secs(1),
            })
        }
    }

    #[test]
    fn the_breaker_stays_open_half_to_all_of_its_interval_doubling_up_to_sixteen_times() {
        let open = Duration::from_millis(1_500);
        let intervals: Vec<Duration> = OpenFor { next: open, max: open * 16 }.take(7).collect();
        for (n, interval) in intervals.iter().enumerate() {
            let full = open * (1 << n.min(4));
            assert!(*interval >= full / 2 && *interval <= full, "{n}: {interval:?} outside {:?}..={full:?}", full / 2);
        }
        let first: std::collections::BTreeSet<Duration> =
            (0..20).filter_map(|_| OpenFor { next: open, max: open }.next()).collect();
        assert!(first.len() > 1, "jittered: {first:?}");
    }

    #[tokio::test]
    async fn a_read_is_retried_after_5xx_and_429_with_a_pause_before_each_retry() {
        let midtrans = Scripted::start(&[503, 429, 200]).await;
        let status = midtrans.midtrans(100).status("o").await.expect("answered on the third attempt");
        assert_eq!(status.expect("known").transaction_status, "settlement");
        let seen = midtrans.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        for pair in seen.windows(2) {
            // backon's least delay (100 ms) plus its jitter, never less.
            assert!(pair[1] - pair[0] >= Duration::from_millis(95), "{:?}", pair[1] - pair[0]);
        }
    }

    #[tokio::test]
    async fn retries_are_bounded_and_end_unavailable_with_a_retry_after() {
        let midtrans = Scripted::start(&[502]).await;
        let error = midtrans.midtrans(100).status("o").await.expect_err("never answered");
        assert_eq!(midtrans.requests(), 1 + RETRIES);
        assert_eq!(error.code, Code::Unavailable);
        assert_eq!(error.reason, Some(Reason::PaymentProviderUnavailable));
        assert_eq!(error.retry_after, Some(Duration::from_secs(1)));
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried() {
        let midtrans = Scripted::start(&[400, 200]).await;
        let error = midtrans.midtrans(100).status("o").await.expect_err("refused");
        assert_eq!(midtrans.requests(), 1);
        assert_eq!(error.code, Code::Internal);
    }

    #[tokio::test]
    async fn a_refund_is_retried_under_its_refund_key_and_a_decision_is_sent_once() {
        let refunds = Scripted::start(&[503, 200]).await;
        let answer = refunds.midtrans(100).refund("o", "refund-1", 1, "r").await.expect("answered");
        assert_eq!((answer, refunds.requests()), (CoreAnswer::Accepted, 2));

        let decisions = Scripted::start(&[503, 200]).await;
        let error = decisions.midtrans(100).decide("o", ChallengeDecision::Approve).await.expect_err("failed");
        assert_eq!(error.code, Code::Unavailable);
        assert_eq!(decisions.requests(), 1, "a decision is not repeated");
    }

    #[tokio::test]
    async fn the_breaker_opens_after_its_failures_turns_calls_away_then_lets_a_trial_through() {
        // Two failed calls (three attempts each) open it; Midtrans is back after them.
        let midtrans = Scripted::start(&[503, 503, 503, 503, 503, 503, 200]).await;
        let client = midtrans.midtrans(2);
        for _ in 0..2 {
            client.status("o").await.expect_err("Midtrans is down");
        }
        let opened = Instant::now();
        assert_eq!(midtrans.requests(), 6);
        let turned_away = client.status("o").await.expect_err("the breaker is open");
        assert_eq!(turned_away.reason, Some(Reason::PaymentProviderUnavailable));
        assert_eq!(midtrans.requests(), 6, "an open breaker calls nobody");
        // Calls keep coming; the first one let through is the trial, and it
        // closes the breaker again.
        let mut trial = None;
        for _ in 0..100 {
            if client.status("o").await.is_ok() {
                trial = Some(opened.elapsed());
                break;
            }
            assert_eq!(midtrans.requests(), 6, "turned away without a call");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let trial = trial.expect("a trial call went through");
        // Open for the interval's equal-jittered part at least (half of 1 s).
        assert!(trial >= Duration::from_millis(500), "trial after {trial:?}");
        assert!(client.status("o").await.is_ok(), "closed again");
        assert_eq!(midtrans.requests(), 8);
    }
}
