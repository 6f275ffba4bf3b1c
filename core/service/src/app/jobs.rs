//! Outbox jobs: what `ticketing worker` does after a commit. Each kind has a
//! payload written by the transaction that asked for it; a failed attempt is
//! retried with exponential backoff (full jitter) and dead-lettered after
//! `OUTBOX_MAX_ATTEMPTS`. Jobs run at least once, so each is safe to repeat
//! (a confirmation e-mail may, rarely, arrive twice; a refund has its key).

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use scoped_futures::ScopedFutureExt;
use serde::Deserialize;
use ticketing_domain::Error;
use ticketing_store::{events, orders as order_store, outbox, users};
use uuid::Uuid;

use crate::{
    AppState,
    adapters::mail::Mail,
    app::{payments, reports},
};

pub const ORDER_CONFIRMATION: &str = "order_confirmation";
pub const ORDER_WHATSAPP: &str = "order_whatsapp";
pub const REFUND: &str = "refund";
pub const REPORT: &str = "report";

#[derive(Deserialize)]
struct OrderJob {
    order_id: Uuid,
}

#[derive(Deserialize)]
struct RefundJob {
    order_id: Uuid,
    amount: i64,
    reason: String,
}

#[derive(Deserialize)]
struct ReportJob {
    report_id: Uuid,
}

/// Claims and runs one batch of due jobs; returns how many ran.
#[tracing::instrument(name = "jobs.run_due", skip_all)]
pub async fn run_due(state: &AppState) -> Result<usize, Error> {
    let lease_until = Utc::now() + chrono::Duration::from_std(state.config.outbox_lease).map_err(Error::internal)?;
    let batch = state.config.outbox_batch_size;
    let max_attempts = state.config.outbox_max_attempts;
    let (abandoned, claimed) = state
        .db
        .write(|conn| {
            async move {
                let abandoned = outbox::dead_letter_abandoned(conn, max_attempts).await?;
                Ok((abandoned, outbox::claim(conn, lease_until, batch).await?))
            }
            .scope_boxed()
        })
        .await?;
    if abandoned > 0 {
        tracing::error!(jobs = abandoned, "outbox jobs dead-lettered: their last attempt never reported back");
        metrics::counter!("ticketing_outbox_jobs_total", "kind" => "unknown", "outcome" => "dead")
            .increment(abandoned as u64);
    }
    let count = claimed.len();
    // Jobs of a batch wait on different peers (SMTP, Midtrans, the replica): run them together.
    futures::future::join_all(claimed.into_iter().map(|job| run_one(state, job))).await;
    Ok(count)
}

/// A job's payload as its kind's struct.
fn payload<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|e| Error::internal(format!("payload: {e}")))
}

/// Does one job of a known kind.
async fn dispatch(state: &AppState, kind: &'static str, job: &outbox::Job) -> Result<(), Error> {
    let value = job.payload.clone();
    match kind {
        ORDER_CONFIRMATION => send_confirmation(state, payload::<OrderJob>(value)?.order_id).await,
        ORDER_WHATSAPP => send_whatsapp(state, payload::<OrderJob>(value)?.order_id).await,
        REFUND => {
            let refund: RefundJob = payload(value)?;
            payments::refund(state, refund.order_id, refund.amount, &refund.reason).await
        }
        REPORT => {
            let report_id = payload::<ReportJob>(value)?.report_id;
            match reports::build(state, report_id).await {
                Err(error) if job.attempts >= state.config.outbox_max_attempts => {
                    reports::mark_failed(state, report_id, error.to_string()).await.and(Err(error))
                }
                other => other,
            }
        }
        _ => Err(Error::internal(format!("unknown job kind {:?}", job.kind))),
    }
}

async fn run_one(state: &AppState, job: outbox::Job) {
    let kind = job_kind(&job.kind);
    let result = dispatch(state, kind, &job).await;
    let (id, attempts) = (job.id, job.attempts);
    let outcome = match &result {
        Ok(()) => "done",
        Err(_) if attempts >= state.config.outbox_max_attempts => "dead",
        Err(_) => "retry",
    };
    metrics::counter!("ticketing_outbox_jobs_total", "kind" => kind, "outcome" => outcome).increment(1);
    let recorded = match result {
        Ok(()) => state.db.write(|conn| outbox::complete(conn, id, attempts).scope_boxed()).await,
        Err(error) => {
            let retry_at = (outcome == "retry").then(|| Utc::now() + backoff(state, attempts));
            if retry_at.is_none() {
                tracing::error!(job = id, kind, %error, "outbox job dead-lettered");
            } else {
                tracing::warn!(job = id, kind, attempts, %error, "outbox job failed; will retry");
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

/// The kind as a static label (metrics take no arbitrary strings).
fn job_kind(kind: &str) -> &'static str {
    [ORDER_CONFIRMATION, ORDER_WHATSAPP, REFUND, REPORT].into_iter().find(|k| *k == kind).unwrap_or("unknown")
}

/// Exponential backoff with full jitter, capped.
fn backoff(state: &AppState, attempts: i32) -> chrono::Duration {
    let base = state.config.outbox_retry_base.as_millis() as u64;
    let cap = state.config.outbox_retry_max.as_millis() as u64;
    let ceiling = base.saturating_mul(1u64 << attempts.clamp(0, 30)).min(cap).max(1);
    let delay = Duration::from_millis(rand::thread_rng().gen_range(ceiling / 2..=ceiling));
    chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
}

/// What a confirmation says, by e-mail or WhatsApp.
struct Confirmation {
    email: String,
    phone: Option<String>,
    subject: String,
    body: String,
}

/// The buyer's tickets and their codes, from the primary (the order was
/// just paid).
async fn confirmation(state: &AppState, order_id: Uuid) -> Result<Confirmation, Error> {
    let (order, tickets, event, user) = state
        .db
        .read(|conn| {
            async move {
                let order = order_store::find_order(conn, order_id).await?.ok_or_else(|| Error::not_found("order"))?;
                let tickets = order_store::tickets_of_order(conn, order_id).await?;
                let event = events::find_event(conn, order.order.event_id).await?;
                let user = users::find_user(conn, order.order.user_id).await?;
                Ok((order, tickets, event, user))
            }
            .scope_boxed()
        })
        .await?;
    let user = user.ok_or_else(|| Error::internal("order without a user"))?;
    let event_name = event.map_or_else(|| "your event".to_owned(), |e| e.name);
    let total = order.order.total();
    let mut body = format!(
        "Thank you for your order {order_id}.\n\nEvent: {event_name}\nTotal: {} {}\n\nYour tickets (show the code at the gate):\n",
        total.currency_code, total.units
    );
    for ticket in &tickets {
        body.push_str(&format!("\n- Ticket {}\n  Code: {}\n", ticket.id, ticket.code));
    }
    Ok(Confirmation { email: user.email, phone: user.phone, subject: format!("Your tickets for {event_name}"), body })
}

async fn send_confirmation(state: &AppState, order_id: Uuid) -> Result<(), Error> {
    let Some(mailer) = &state.mailer else {
        return Err(Error::internal("SMTP_URL is not configured; the e-mail waits in the outbox"));
    };
    let message = confirmation(state, order_id).await?;
    mailer.send(Mail { to: message.email, subject: message.subject, body: message.body }).await
}

/// Only buyers who left a phone number get one; for the others the job is done.
async fn send_whatsapp(state: &AppState, order_id: Uuid) -> Result<(), Error> {
    let Some(whatsapp) = &state.whatsapp else {
        return Err(Error::internal("WHATSAPP_API_URL is not configured; the message waits in the outbox"));
    };
    let message = confirmation(state, order_id).await?;
    match message.phone {
        Some(phone) => whatsapp.send_text(&phone, &format!("{}\n\n{}", message.subject, message.body)).await,
        None => Ok(()),
    }
}
