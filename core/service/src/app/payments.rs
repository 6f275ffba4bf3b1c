//! Paying for an order through Midtrans Snap, and learning that it was paid.
//!
//! Midtrans tells us twice over: the notification webhook, and the status API
//! that the reconciliation job asks about payments left pending. Both feed
//! [`apply_status`], one state machine under the order's row lock, so
//! duplicates, concurrent deliveries to several replicas and late or
//! out-of-order statuses all end in one transition (see
//! `ticketing_domain::payments`).

use chrono::{FixedOffset, Timelike, Utc};
use scoped_futures::ScopedFutureExt;
use ticketing_domain::Reason;
use ticketing_domain::{
    Error,
    audit::AuditAction,
    identity::Principal,
    orders::OrderStatus,
    paging,
    payments::{
        NotificationOutcome as Outcome, NotificationSource as Source, PaymentStatus, ProviderOutcome,
        SnapPaymentMethod, midtrans_gross_amount, midtrans_outcome, midtrans_signature_is_valid, next_payment_status,
    },
};
use ticketing_store::{
    Conn, StoreError,
    audit::{self, NewAuditEntry},
    events,
    orders::{self as order_store, OrderWithItems},
    payments::{self as store, NewNotification, NewPayment, PaymentRow},
    users,
};
use uuid::Uuid;

use crate::{
    AppState,
    adapters::midtrans::{ChallengeDecision, CoreAnswer, SnapItem, SnapRequest, TransactionStatus},
    app::{
        catalog::{self, Access},
        orders::{self, Settled},
        refunds,
    },
    config::MasterKey,
};

const PROVIDER: &str = "midtrans";
/// A Snap page needs a little time to be useful; an order about to expire is
/// not worth a payment page.
const MIN_PAYMENT_WINDOW: chrono::Duration = chrono::Duration::seconds(30);
/// Midtrans caps item names at 50 characters.
const MAX_ITEM_NAME_CHARS: usize = 50;

/// The order's payment: the existing one, or a new Snap transaction
/// offering the event's methods (or only `method`, the buyer's pick). The
/// Snap page expires when the order's hold does: with a method given a hold
/// of its own (`Event.payment.holdMinutesByMethod`), the order's hold
/// becomes that.
#[tracing::instrument(name = "payments.create_payment", skip_all)]
pub async fn create_payment(
    state: &AppState,
    caller: &Principal,
    order_id: Uuid,
    method: Option<SnapPaymentMethod>,
) -> Result<PaymentRow, Error> {
    let user_id = caller.user_id;
    let found = state
        .db
        .read(|conn| {
            async move {
                let order = owned_order(conn, user_id, order_id).await?;
                let payment = store::find_by_order(conn, order_id).await?;
                Ok((order, payment))
            }
            .scope_boxed()
        })
        .await?;
    let order = match found {
        (_, Some(payment)) => return Ok(payment),
        (order, None) => order,
    };
    let now = Utc::now();
    if order.order.status != OrderStatus::Pending || order.order.expire_time - now < MIN_PAYMENT_WINDOW {
        return Err(Error::failed_precondition(Reason::OrderNotPending, "only a pending order can be paid"));
    }
    let (request, hold_until) = snap_request(state, &order, method, now).await?;
    let snap = state.midtrans.create_snap(&request).await?;
    let gross_amount = request.gross_amount;
    // Two concurrent first calls got the same Snap transaction (the order id
    // is its idempotency key); the first row written is the one both return.
    state
        .db
        .write(|conn| {
            async move {
                // The hold ends with the Snap page (unless the order moved on meanwhile).
                order_store::set_pending_expire_time(conn, order_id, hold_until).await?;
                let payment = NewPayment {
                    order_id,
                    provider: PROVIDER,
                    token: &snap.token,
                    redirect_url: &snap.redirect_url,
                    gross_amount,
                };
                store::insert_payment(conn, payment).await
            }
            .scope_boxed()
        })
        .await
}

#[tracing::instrument(name = "payments.get_payment", skip_all)]
pub async fn get_payment(
    state: &AppState,
    caller: &Principal,
    order_id: Uuid,
    payment_id: Uuid,
) -> Result<PaymentRow, Error> {
    let user_id = caller.user_id;
    state
        .db
        .read(|conn| {
            async move {
                owned_order(conn, user_id, order_id).await?;
                store::find_by_order(conn, order_id)
                    .await?
                    .filter(|p| p.id == payment_id)
                    .ok_or_else(|| Error::not_found("payment").into())
            }
            .scope_boxed()
        })
        .await
}

pub struct PaymentPage {
    pub payments: Vec<PaymentRow>,
    pub next_page_token: String,
}

/// An event's payments for its organizer, oldest first, of one status or
/// all (CHALLENGED: the card payments waiting for their decision).
#[tracing::instrument(name = "payments.list_payments", skip_all)]
pub async fn list_payments(
    state: &AppState,
    caller: &Principal,
    event_id: Uuid,
    status: Option<PaymentStatus>,
    page_size: i32,
    page_token: &str,
) -> Result<PaymentPage, Error> {
    let limit = paging::page_size(page_size)?;
    let after = paging::Cursor::decode(page_token)?.map(|c| c.id);
    let payments = catalog::as_event_manager(state, caller, event_id, Access::Primary, move |conn| {
        store::list_event_payments(conn, event_id, status, after, limit).scope_boxed()
    })
    .await?;
    let next_page_token = paging::next_page_token(&payments, limit, |last| {
        paging::Cursor { time: last.created_at, id: last.id }.encode()
    });
    Ok(PaymentPage { payments, next_page_token })
}

/// The organizer's decision on a card payment held for fraud review:
/// Midtrans is told, then its status (signed, verified) is applied as a
/// notification would be — approved, the order is paid; denied, it is left
/// to expire. An order whose hold ran out is not approved (the challenge
/// expired with it).
#[tracing::instrument(name = "payments.decide_challenge", skip_all)]
pub async fn decide_challenge(
    state: &AppState,
    caller: &Principal,
    order_id: Uuid,
    payment_id: Uuid,
    decision: ChallengeDecision,
) -> Result<PaymentRow, Error> {
    let manager = caller.clone();
    let (order, payment) = state
        .db
        .read(|conn| {
            async move {
                let order = order_store::find_order(conn, order_id).await?.ok_or_else(|| Error::not_found("order"))?;
                catalog::require_event_manager(conn, &manager, order.order.event_id)
                    .await
                    .map_err(|_| Error::not_found("order"))?;
                let payment = store::find_by_order(conn, order_id).await?.filter(|p| p.id == payment_id);
                Ok((order, payment.ok_or_else(|| Error::not_found("payment"))?))
            }
            .scope_boxed()
        })
        .await?;
    if payment.status != PaymentStatus::Challenged {
        return Err(Error::failed_precondition(
            Reason::PaymentNotChallenged,
            format!("the payment is {}; only a challenged card payment is approved or denied", payment.status),
        ));
    }
    if decision == ChallengeDecision::Approve && order.order.status != OrderStatus::Pending {
        return Err(Error::failed_precondition(
            Reason::OrderNotPending,
            format!("the order is {}; its challenge expired with it", order.order.status),
        ));
    }
    let order_key = order_id.to_string();
    if let CoreAnswer::Refused { status_code, message } = state.midtrans.decide(&order_key, decision).await? {
        return Err(Error::failed_precondition(
            Reason::PaymentNotChallenged,
            format!("Midtrans refused the decision ({status_code}): {message}"),
        ));
    }
    match state.midtrans.status(&order_key).await? {
        Some(truth) if signature_is_valid(state, &truth) && truth.order_id == order_key => {
            let raw = serde_json::to_value(&truth).map_err(Error::internal)?;
            apply_status(state, &truth, raw, Source::StatusCheck).await?;
        }
        // Midtrans notifies the change too; reconciliation is the backstop.
        _ => tracing::warn!(%order_id, "no verified status after a challenge decision"),
    }
    let action = match decision {
        ChallengeDecision::Approve => AuditAction::PaymentApproved,
        ChallengeDecision::Deny => AuditAction::PaymentDenied,
    };
    let (actor, api_key_id, event_id) = (caller.user_id, caller.api_key, order.order.event_id);
    state
        .db
        .write(|conn| {
            async move {
                let now = store::find_by_order(conn, order_id).await?.ok_or_else(|| Error::not_found("payment"))?;
                let entry = NewAuditEntry {
                    event_id,
                    actor_id: Some(actor),
                    api_key_id,
                    action,
                    subject_id: &payment_id.to_string(),
                    before: Some(serde_json::json!({ "status": payment.status.as_str() })),
                    after: Some(serde_json::json!({ "status": now.status.as_str() })),
                };
                audit::record(conn, entry).await?;
                Ok(now)
            }
            .scope_boxed()
        })
        .await
}

/// The caller's own order; anyone else's is "not found".
async fn owned_order(conn: &mut Conn, user_id: Uuid, order_id: Uuid) -> Result<OrderWithItems, StoreError> {
    order_store::find_order(conn, order_id)
        .await?
        .filter(|o| o.order.user_id == user_id)
        .ok_or_else(|| Error::not_found("order").into())
}

/// The Snap request of an order, priced from the order itself, and when
/// the order's hold ends: the Snap page's expiry, in Midtrans's whole
/// minutes from the start time it is given, so the two always agree.
async fn snap_request(
    state: &AppState,
    order: &OrderWithItems,
    method: Option<SnapPaymentMethod>,
    now: chrono::DateTime<Utc>,
) -> Result<(SnapRequest, chrono::DateTime<Utc>), Error> {
    // Midtrans takes whole rupiah only: refuse anything else before calling it.
    midtrans_gross_amount(&order.order.total())?;
    let (event_id, user_id) = (order.order.event_id, order.order.user_id);
    let (event, categories, user) = state
        .db
        .read(|conn| {
            async move {
                let event = events::find_event(conn, event_id).await?;
                let categories = events::categories_of_event(conn, event_id).await?;
                let user = users::find_user(conn, user_id).await?;
                Ok((event, categories, user))
            }
            .scope_boxed()
        })
        .await?;
    let settings = event.map(|e| e.details.payment).unwrap_or_default();
    let enabled_payments = match method {
        Some(method) if !settings.offers(method) => {
            return Err(Error::invalid_field("paymentMethod", "is not a method this event offers"));
        }
        Some(method) => vec![method.as_str().to_owned()],
        None => settings.enabled_methods.iter().map(|m| m.as_str().to_owned()).collect(),
    };
    let items = order
        .items
        .iter()
        .map(|item| {
            let name = categories.iter().find(|c| c.id == item.ticket_category_id).map_or("Ticket", |c| &c.name);
            SnapItem {
                id: item.ticket_category_id.to_string(),
                price: item.unit_price_units,
                quantity: item.quantity,
                name: name.chars().take(MAX_ITEM_NAME_CHARS).collect(),
            }
        })
        .collect();
    let expiry = SnapExpiry::new(now, order.order.expire_time, method.and_then(|m| settings.hold_minutes(m)));
    let request = SnapRequest {
        order_id: order.order.id.to_string(),
        gross_amount: order.order.total_units,
        items,
        customer_email: user.map(|u| u.email).unwrap_or_default(),
        start_time: expiry.start_time,
        expiry_minutes: expiry.minutes,
        enabled_payments,
    };
    Ok((request, expiry.ends))
}

/// A Snap page's expiry as Midtrans takes it: a start time in Jakarta time
/// with whole seconds, and a duration in whole minutes.
#[derive(Debug, PartialEq, Eq)]
struct SnapExpiry {
    /// `2026-11-24 10:00:00 +0700`.
    start_time: String,
    minutes: i64,
    /// When the page expires, which becomes the order's hold.
    ends: chrono::DateTime<Utc>,
}

impl SnapExpiry {
    /// The remaining hold (`hold_ends`) in whole minutes, at least one (what
    /// Midtrans accepts), or the chosen method's own hold.
    fn new(now: chrono::DateTime<Utc>, hold_ends: chrono::DateTime<Utc>, method_minutes: Option<i32>) -> SnapExpiry {
        let jakarta = FixedOffset::east_opt(7 * 3600).expect("UTC+7 is a valid offset");
        let start = now.with_nanosecond(0).unwrap_or(now);
        let minutes = match method_minutes {
            Some(minutes) => i64::from(minutes),
            None => (hold_ends - start).num_minutes().max(1),
        };
        SnapExpiry {
            start_time: start.with_timezone(&jakarta).format("%Y-%m-%d %H:%M:%S %z").to_string(),
            minutes,
            ends: start + chrono::Duration::minutes(minutes),
        }
    }
}

/// The webhook: verify, then ask. Midtrans signs only `order_id`,
/// `status_code` and `gross_amount`, so a captured notification can be
/// re-sent with another `transaction_status` or `fraud_status` and a valid
/// signature: a notification is a hint that something changed. What is
/// applied is what the status API (signed, verified) says now. A forged
/// notification is refused and leaves no trace (an unsigned caller writes
/// nothing); a signed one is stored whatever its effect. When Midtrans
/// cannot be asked, the notification is stored, the answer tells Midtrans to
/// retry, and reconciliation asks later.
#[tracing::instrument(name = "payments.midtrans_notification", skip_all)]
pub async fn receive_midtrans_notification(state: &AppState, body: &[u8]) -> Result<(), Error> {
    let raw: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        count_notification(Source::Notification, Outcome::Malformed);
        Error::invalid_argument(format!("the notification is not valid JSON: {e}"))
    })?;
    let status: TransactionStatus = serde_json::from_value(raw.clone()).map_err(|e| {
        count_notification(Source::Notification, Outcome::Malformed);
        Error::invalid_argument(format!("the notification lacks a field Midtrans always sends: {e}"))
    })?;
    if !signature_is_valid(state, &status) {
        count_notification(Source::Notification, Outcome::Forged);
        // The forger chose every byte: log a bounded excerpt, never the body.
        tracing::warn!(order_id = %excerpt(&status.order_id), "Midtrans notification with a bad signature");
        return Err(
            Error::unauthenticated("the notification signature does not match").with_reason(Reason::InvalidSignature)
        );
    }
    // Our orders are UUIDs; anything else is no order of ours and never
    // reaches the status API's path.
    if Uuid::parse_str(&status.order_id).is_err() {
        count_notification(Source::Notification, Outcome::UnknownOrder);
        return Err(Error::not_found("order"));
    }
    match state.midtrans.status(&status.order_id).await {
        Ok(Some(truth)) if signature_is_valid(state, &truth) && truth.order_id == status.order_id => {
            apply_status(state, &truth, raw, Source::Notification).await
        }
        Ok(Some(_)) => {
            tracing::error!(order_id = %status.order_id, "Midtrans status answer with a bad signature; ignored");
            Err(Error::internal("the payment provider's answer could not be verified"))
        }
        Ok(None) => {
            // Signed with our key, yet Midtrans knows no such transaction: kept, refused.
            record(state, &status, raw, Outcome::UnknownOrder).await?;
            count_notification(Source::Notification, Outcome::UnknownOrder);
            Err(Error::not_found("order"))
        }
        Err(error) => {
            defer(state, &status, raw).await?;
            tracing::warn!(order_id = %status.order_id, %error, "notification stored until Midtrans can be asked");
            Err(Error::unavailable("the payment provider cannot be reached to confirm this; retry", DEFER_RETRY)
                .with_reason(Reason::PaymentProviderUnavailable))
        }
    }
}

/// How long Midtrans is asked to wait before delivering again.
const DEFER_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// A signed notification Midtrans could not confirm: stored as received,
/// and its order given a pending payment if it has none, so that
/// reconciliation (which asks about pending payments) applies the truth.
async fn defer(state: &AppState, status: &TransactionStatus, raw: serde_json::Value) -> Result<(), Error> {
    state
        .db
        .write(|conn| {
            async move {
                if let Ok(order_id) = Uuid::parse_str(&status.order_id)
                    && let Some(order) = order_store::find_order(conn, order_id).await?
                    && store::find_by_order(conn, order_id).await?.is_none()
                {
                    store::insert_payment(conn, untracked_payment(&order)).await?;
                }
                store::record_notification(
                    conn,
                    notification_record(status, Source::Notification, raw, Outcome::Deferred),
                )
                .await
            }
            .scope_boxed()
        })
        .await?;
    count_notification(Source::Notification, Outcome::Deferred);
    Ok(())
}

/// Stores a signed notification that changed nothing.
async fn record(
    state: &AppState,
    status: &TransactionStatus,
    raw: serde_json::Value,
    outcome: Outcome,
) -> Result<(), Error> {
    state
        .db
        .write(|conn| {
            store::record_notification(conn, notification_record(status, Source::Notification, raw, outcome))
                .scope_boxed()
        })
        .await
}

/// A received status as stored, with what it did.
fn notification_record(
    status: &TransactionStatus,
    source: Source,
    body: serde_json::Value,
    outcome: Outcome,
) -> NewNotification<'_> {
    NewNotification {
        provider: PROVIDER,
        source: source.as_str(),
        order_id: &status.order_id,
        transaction_status: &status.transaction_status,
        body,
        outcome: outcome.as_str(),
    }
}

/// At most this many characters of a caller's text reach a log line.
const LOG_EXCERPT_CHARS: usize = 64;

/// `text` cut to [`LOG_EXCERPT_CHARS`], control characters escaped, with a
/// marker when cut.
fn excerpt(text: &str) -> String {
    let mut excerpt: String = text.chars().take(LOG_EXCERPT_CHARS).flat_map(char::escape_default).collect();
    if text.chars().nth(LOG_EXCERPT_CHARS).is_some() {
        excerpt.push_str(&format!("… ({} bytes)", text.len()));
    }
    excerpt
}

fn signature_is_valid(state: &AppState, status: &TransactionStatus) -> bool {
    midtrans_signature_is_valid(
        &status.order_id,
        &status.status_code,
        &status.gross_amount,
        state.midtrans.server_key(),
        &status.signature_key,
    )
}

/// What applying one status did: the outcome stored with it and counted,
/// and the error to answer with when it was refused.
struct Applied {
    outcome: Outcome,
    refusal: Option<Error>,
    /// The event whose tickets on sale it changed (a revived order took
    /// them again, a refund at the provider gave them back).
    changed_availability_of: Option<Uuid>,
}

impl Applied {
    fn done(outcome: Outcome) -> Applied {
        Applied { outcome, refusal: None, changed_availability_of: None }
    }

    fn refused(outcome: Outcome, refusal: Error) -> Applied {
        Applied { outcome, refusal: Some(refusal), changed_availability_of: None }
    }
}

/// Stores a verified status and applies it in one transaction. Refusals
/// (unknown order, wrong amount) are stored too, and change nothing else.
async fn apply_status(
    state: &AppState,
    status: &TransactionStatus,
    raw: serde_json::Value,
    source: Source,
) -> Result<(), Error> {
    let master = state.config.ticket_key_encryption_key.clone();
    let whatsapp = state.whatsapp.is_some();
    let applied = state
        .db
        .write(|conn| {
            async move {
                let applied = apply_to_order(conn, &master, whatsapp, status).await?;
                store::record_notification(conn, notification_record(status, source, raw, applied.outcome)).await?;
                Ok(applied)
            }
            .scope_boxed()
        })
        .await?;
    count_notification(source, applied.outcome);
    if let Some(event) = applied.changed_availability_of {
        state.live.availability_changed(event);
    }
    if applied.outcome.needs_attention() {
        tracing::warn!(order_id = %status.order_id, outcome = %applied.outcome, "payment needs attention");
    }
    applied.refusal.map_or(Ok(()), Err)
}

async fn apply_to_order(
    conn: &mut Conn,
    master: &MasterKey,
    whatsapp: bool,
    status: &TransactionStatus,
) -> Result<Applied, StoreError> {
    let outcome = midtrans_outcome(&status.status_code, &status.transaction_status, status.fraud_status.as_deref());
    let Some(outcome) = outcome else {
        let message = format!("unknown transaction_status {:?}", status.transaction_status);
        return Ok(Applied::refused(Outcome::UnknownStatus, Error::invalid_argument(message)));
    };
    let order = match Uuid::parse_str(&status.order_id) {
        Ok(order_id) => order_store::lock_order(conn, order_id).await?,
        Err(_) => None,
    };
    let Some(order) = order else {
        return Ok(Applied::refused(Outcome::UnknownOrder, Error::not_found("order")));
    };
    if midtrans_gross_amount(&order.order.total()).ok().as_deref() != Some(status.gross_amount.as_str()) {
        let refusal = Error::invalid_argument("gross_amount does not match the order's total")
            .with_reason(Reason::AmountMismatch)
            .with_metadata("orderId", order.order.id.to_string());
        return Ok(Applied::refused(Outcome::AmountMismatch, refusal));
    }
    let mut payment = match store::find_by_order(conn, order.order.id).await? {
        Some(payment) => payment,
        // Paid before our own record was written (a crash between Snap and
        // the insert): the money is what counts.
        None => store::insert_payment(conn, untracked_payment(&order)).await?,
    };
    // How the customer paid decides how a refund goes back.
    if let Some(payment_type) = status.payment_type.as_deref().filter(|t| !t.is_empty() && t.len() <= 64)
        && payment.payment_type.as_deref() != Some(payment_type)
    {
        store::set_payment_type(conn, payment.id, payment_type).await?;
        payment.payment_type = Some(payment_type.to_owned());
    }
    if outcome == ProviderOutcome::PartiallyRefunded {
        // The order keeps its tickets; a person settles what the part was for.
        return Ok(Applied::done(Outcome::PartialRefund));
    }
    let Some(next) = next_payment_status(payment.status, outcome) else {
        return Ok(Applied::done(Outcome::Unchanged));
    };
    let (next, label) = match outcome {
        ProviderOutcome::Paid => match orders::settle(conn, master, whatsapp, &order).await? {
            Settled::Paid => (next, Outcome::Paid),
            Settled::Revived => (next, Outcome::Revived),
            Settled::AlreadySettled => (next, Outcome::Unchanged),
            Settled::Unkeepable => {
                let reason = format!("The order was {} before the payment arrived.", order.order.status);
                refunds::refund_unkept_payment(conn, &order, &payment, &reason).await?;
                (PaymentStatus::RefundPending, Outcome::RefundRequested)
            }
        },
        ProviderOutcome::Refunded => {
            if order.order.status == OrderStatus::Paid {
                refunds::record_provider_refund(conn, &order).await?;
            }
            (next, Outcome::Refunded)
        }
        ProviderOutcome::Failed => (next, Outcome::Failed),
        ProviderOutcome::Pending => (next, Outcome::Pending),
        ProviderOutcome::Challenged => (next, Outcome::Challenged),
        ProviderOutcome::PartiallyRefunded => (next, Outcome::PartialRefund),
    };
    store::set_status(conn, payment.id, next, &status.transaction_status).await?;
    let changed_availability = matches!(label, Outcome::Revived | Outcome::Refunded);
    Ok(Applied {
        changed_availability_of: changed_availability.then_some(order.order.event_id),
        ..Applied::done(label)
    })
}

/// A payment Midtrans told us of before our own record was written.
fn untracked_payment(order: &OrderWithItems) -> NewPayment<'static> {
    NewPayment {
        order_id: order.order.id,
        provider: PROVIDER,
        token: "",
        redirect_url: "",
        gross_amount: order.order.total_units,
    }
}

/// `ticketing_payment_notifications_total{source, outcome}`.
fn count_notification(source: Source, outcome: Outcome) {
    metrics::counter!("ticketing_payment_notifications_total", "source" => source.as_str(), "outcome" => outcome.as_str())
        .increment(1);
}

/// One batch of the reconciliation job: pending payments old enough that a
/// notification should have come are checked with the status API, and what
/// it says is applied like a notification. Returns how many were checked.
#[tracing::instrument(name = "payments.reconcile", skip_all)]
pub async fn reconcile_pending(state: &AppState, batch: i64) -> Result<usize, Error> {
    let now = Utc::now();
    let older_than = now - chrono::Duration::from_std(state.config.reconcile_after).map_err(Error::internal)?;
    let checked_before = now - chrono::Duration::from_std(state.config.reconcile_interval).map_err(Error::internal)?;
    let due = state
        .db
        .write(|conn| store::claim_for_reconciliation(conn, older_than, checked_before, batch).scope_boxed())
        .await?;
    for order_id in &due {
        // One payment's trouble (breaker open, a bad answer) does not stop
        // the others; this one is asked again after the interval.
        let status = match state.midtrans.status(&order_id.to_string()).await {
            Ok(Some(status)) => status,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(%order_id, %error, "reconciliation could not read a payment's status");
                continue;
            }
        };
        if !signature_is_valid(state, &status) {
            tracing::error!(%order_id, "Midtrans status answer with a bad signature; ignored");
            continue;
        }
        let raw = serde_json::to_value(&status).map_err(Error::internal)?;
        if let Err(error) = apply_status(state, &status, raw, Source::StatusCheck).await {
            tracing::warn!(%order_id, %error, "reconciliation could not apply a status");
        }
    }
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> chrono::DateTime<Utc> {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn the_snap_page_expires_in_whole_minutes_of_the_remaining_hold_from_a_jakarta_start() {
        // From the whole second, 14 min 59.9 s of hold left: 14 whole minutes.
        let expiry = SnapExpiry::new(at("2026-11-24T03:00:00.750Z"), at("2026-11-24T03:14:59.900Z"), None);
        assert_eq!(
            expiry,
            SnapExpiry {
                start_time: "2026-11-24 10:00:00 +0700".into(),
                minutes: 14,
                ends: at("2026-11-24T03:14:00Z")
            }
        );
        // Past 17:00 UTC the Jakarta date is the next day.
        let late = SnapExpiry::new(at("2026-11-24T20:30:05Z"), at("2026-11-24T20:45:05Z"), None);
        assert_eq!((late.start_time.as_str(), late.minutes), ("2026-11-25 03:30:05 +0700", 15));
        // Under a minute left: Midtrans's least, one minute.
        let last = SnapExpiry::new(at("2026-11-24T03:00:00Z"), at("2026-11-24T03:00:20Z"), None);
        assert_eq!((last.minutes, last.ends), (1, at("2026-11-24T03:01:00Z")));
        // A method with a hold of its own (a virtual account's day).
        let day = SnapExpiry::new(at("2026-11-24T03:00:00Z"), at("2026-11-24T03:15:00Z"), Some(1440));
        assert_eq!((day.minutes, day.ends), (1440, at("2026-11-25T03:00:00Z")));
    }

    #[test]
    fn a_forged_field_reaches_the_log_as_a_bounded_excerpt() {
        let huge = "x".repeat(1 << 20);
        let logged = excerpt(&huge);
        assert!(logged.len() < 100, "{} bytes logged", logged.len());
        assert!(logged.ends_with("… (1048576 bytes)"));
        assert_eq!(excerpt("order-1\nforged log line"), "order-1\\nforged log line", "no line of its own");
        assert_eq!(excerpt("0191f0e2-order"), "0191f0e2-order");
    }
}
