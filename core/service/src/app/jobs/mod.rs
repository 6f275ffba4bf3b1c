//! Outbox jobs: what `ticketing worker` does after a commit. A job is one
//! serde type ([`Job`]) with its [`JobKind`], written by the transaction that
//! asks for it (`job.enqueue(conn)`) and run later (`job.run(state)`); its
//! payload is declared once, so a renamed field fails to compile where the job
//! is enqueued. A failed attempt is retried with exponential backoff (full
//! jitter) and dead-lettered after `OUTBOX_MAX_ATTEMPTS`. Jobs run at least
//! once, so each is safe to repeat (a confirmation e-mail may, rarely, arrive
//! twice; a refund has its key).
//!
//! Use cases depend on the jobs they enqueue; jobs never call back into a use
//! case, so the worker's dispatch ([`run_due`]) is the only place that knows
//! every kind.

mod confirmation;
mod refund;
mod report;

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use scoped_futures::ScopedFutureExt;
use serde::{Serialize, de::DeserializeOwned};
use ticketing_domain::Error;
use ticketing_store::{Conn, StoreError, outbox};

pub use self::{
    confirmation::{SendOrderConfirmation, SendOrderWhatsApp},
    refund::{IssueRefund, SendRefundNotice},
    report::{BuildReport, to_csv},
};
use crate::AppState;

ticketing_domain::vocabulary! {
    /// Every kind of job, as stored in `outbox.kind`.
    pub enum JobKind {
        OrderConfirmation = "order_confirmation",
        OrderWhatsApp = "order_whatsapp",
        Refund = "refund",
        RefundNotice = "refund_notice",
        Report = "report",
    }
}

/// A background job: its payload is the type itself.
pub trait Job: Serialize + DeserializeOwned + Send + Sync {
    const KIND: JobKind;

    fn run(&self, state: &AppState) -> impl Future<Output = Result<(), Error>> + Send;

    /// After the last attempt failed: leave a trace a person or a client
    /// can see (a report turns FAILED). Nothing by default.
    fn give_up(&self, _state: &AppState, _error: &Error) -> impl Future<Output = Result<(), Error>> + Send {
        async { Ok(()) }
    }

    /// Adds the job; call it inside the transaction of the change it follows.
    fn enqueue(&self, conn: &mut Conn) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let payload = serde_json::to_value(self).map_err(Error::internal)?;
            outbox::enqueue(conn, Self::KIND.as_str(), payload).await
        }
    }

    /// Adds many jobs of this kind in one statement.
    fn enqueue_all(jobs: &[Self], conn: &mut Conn) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let payloads =
                jobs.iter().map(serde_json::to_value).collect::<Result<Vec<_>, _>>().map_err(Error::internal)?;
            outbox::enqueue_many(conn, Self::KIND.as_str(), payloads).await
        }
    }
}

/// How one attempt ended, as `ticketing_outbox_jobs_total{outcome}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Done,
    Retry,
    Dead,
}

impl Attempt {
    fn label(self) -> &'static str {
        match self {
            Attempt::Done => "done",
            Attempt::Retry => "retry",
            Attempt::Dead => "dead",
        }
    }
}

/// The metrics label of a stored kind (metrics take no arbitrary strings).
fn kind_label(kind: Option<JobKind>) -> &'static str {
    kind.map_or("unknown", JobKind::as_str)
}

/// Claims and runs one batch of due jobs; returns how many ran.
#[tracing::instrument(name = "jobs.run_due", skip_all)]
pub async fn run_due(state: &AppState) -> Result<usize, Error> {
    let lease_until = Utc::now() + chrono::Duration::from_std(state.config.outbox_lease).map_err(Error::internal)?;
    let batch = state.config.outbox_batch_size;
    let max_attempts = state.config.outbox_max_attempts;
    let claimed = state.db.write(|conn| outbox::claim(conn, lease_until, batch, max_attempts).scope_boxed()).await?;
    let count = claimed.len();
    // Jobs of a batch wait on different peers (SMTP, Midtrans, the replica): run them together.
    futures::future::join_all(claimed.into_iter().map(|job| run_one(state, job))).await;
    Ok(count)
}

/// Dead-letters jobs whose worker died during their last attempt (they are
/// never claimed again); run on a timer. Returns how many.
#[tracing::instrument(name = "jobs.dead_letter_abandoned", skip_all)]
pub async fn dead_letter_abandoned(state: &AppState) -> Result<usize, Error> {
    let max_attempts = state.config.outbox_max_attempts;
    let abandoned = state.db.write(|conn| outbox::dead_letter_abandoned(conn, max_attempts).scope_boxed()).await?;
    if abandoned > 0 {
        tracing::error!(jobs = abandoned, "outbox jobs dead-lettered: their last attempt never reported back");
        metrics::counter!("ticketing_outbox_jobs_total", "kind" => kind_label(None), "outcome" => Attempt::Dead.label())
            .increment(abandoned as u64);
    }
    Ok(abandoned)
}

/// The registry: each kind's payload type.
async fn dispatch(state: &AppState, kind: JobKind, job: &outbox::Job, last_attempt: bool) -> Result<(), Error> {
    match kind {
        JobKind::OrderConfirmation => attempt::<SendOrderConfirmation>(state, job, last_attempt).await,
        JobKind::OrderWhatsApp => attempt::<SendOrderWhatsApp>(state, job, last_attempt).await,
        JobKind::Refund => attempt::<IssueRefund>(state, job, last_attempt).await,
        JobKind::RefundNotice => attempt::<SendRefundNotice>(state, job, last_attempt).await,
        JobKind::Report => attempt::<BuildReport>(state, job, last_attempt).await,
    }
}

/// Runs one stored job as `J`; on its last attempt a failure gives up.
async fn attempt<J: Job>(state: &AppState, job: &outbox::Job, last_attempt: bool) -> Result<(), Error> {
    let payload: J =
        serde_json::from_value(job.payload.clone()).map_err(|e| Error::internal(format!("payload: {e}")))?;
    match payload.run(state).await {
        Err(error) if last_attempt => payload.give_up(state, &error).await.and(Err(error)),
        other => other,
    }
}

async fn run_one(state: &AppState, job: outbox::Job) {
    let kind = JobKind::parse(&job.kind);
    let (id, attempts) = (job.id, job.attempts);
    let last_attempt = attempts >= state.config.outbox_max_attempts;
    // Within its lease: a job that overran it may be running twice already,
    // and one stuck peer must not hold the rest of its batch.
    let result = match kind {
        Some(kind) => tokio::time::timeout(state.config.outbox_lease, dispatch(state, kind, &job, last_attempt))
            .await
            .unwrap_or_else(|_| {
                Err(Error::internal(format!("no result within the lease ({:?})", state.config.outbox_lease)))
            }),
        None => Err(Error::internal(format!("unknown job kind {:?}", job.kind))),
    };
    let outcome = match &result {
        Ok(()) => Attempt::Done,
        Err(_) if last_attempt => Attempt::Dead,
        Err(_) => Attempt::Retry,
    };
    let label = kind_label(kind);
    metrics::counter!("ticketing_outbox_jobs_total", "kind" => label, "outcome" => outcome.label()).increment(1);
    let recorded = match result {
        Ok(()) => state.db.write(|conn| outbox::complete(conn, id, attempts).scope_boxed()).await,
        Err(error) => {
            let retry_at = (outcome == Attempt::Retry).then(|| Utc::now() + backoff(state, attempts));
            if retry_at.is_none() {
                tracing::error!(job = id, kind = label, %error, "outbox job dead-lettered");
            } else {
                tracing::warn!(job = id, kind = label, attempts, %error, "outbox job failed; will retry");
            }
            let message = error.to_string();
            state
                .db
                .write(|conn| async move { outbox::fail(conn, id, attempts, &message, retry_at).await }.scope_boxed())
                .await
        }
    };
    // Unrecorded, the lease runs out and the job runs again: at least once.
    if let Err(error) = recorded {
        tracing::warn!(job = id, %error, "could not record an outbox job's result");
    }
}

/// Exponential backoff with full jitter, capped.
fn backoff(state: &AppState, attempts: i32) -> chrono::Duration {
    let base = state.config.outbox_retry_base.as_millis() as u64;
    let cap = state.config.outbox_retry_max.as_millis() as u64;
    let ceiling = base.saturating_mul(1u64 << attempts.clamp(0, 30)).min(cap).max(1);
    let delay = Duration::from_millis(rand::thread_rng().gen_range(ceiling / 2..=ceiling));
    chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
}
