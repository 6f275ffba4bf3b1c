//! Paying a refund back through Midtrans, and telling the buyer.

use scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use ticketing_domain::{
    Error,
    payments::PaymentStatus,
    refunds::{RefundStatus, payment_after_refund},
};
use ticketing_store::{Conn, StoreError, events, orders as order_store, payments, refunds as store, users};
use uuid::Uuid;

use super::{Job, JobKind};
use crate::{
    AppState,
    adapters::{mail::Mail, midtrans::CoreAnswer},
};

/// Asks Midtrans to pay a PENDING refund back, with the refund's key (a
/// repeated attempt returns the first answer), and records what it said.
#[derive(Debug, Serialize, Deserialize)]
pub struct IssueRefund {
    pub refund_id: Uuid,
}

impl Job for IssueRefund {
    const KIND: JobKind = JobKind::Refund;

    async fn run(&self, state: &AppState) -> Result<(), Error> {
        let refund_id = self.refund_id;
        let refund = state.db.read(|conn| store::find_refund(conn, refund_id).scope_boxed()).await?;
        let refund = refund.ok_or_else(|| Error::internal(format!("refund {refund_id} is gone")))?;
        if refund.status != RefundStatus::Pending {
            return Ok(());
        }
        let answer = state
            .midtrans
            .refund(&refund.order_id.to_string(), &refund.refund_key, refund.amount_units, &refund.reason)
            .await?;
        let (next, error) = match answer {
            CoreAnswer::Accepted => (RefundStatus::Succeeded, None),
            CoreAnswer::Refused { status_code, message } => {
                tracing::warn!(%refund_id, %status_code, %message, "Midtrans refused a refund; a person pays it back");
                (RefundStatus::ManualRequired, Some(format!("Midtrans {status_code}: {message}")))
            }
        };
        state.db.write(|conn| settle(conn, refund_id, next, error).scope_boxed()).await
    }

    /// Midtrans never answered: a person looks at it (it may or may not have
    /// been paid; its key makes a later retry safe).
    async fn give_up(&self, state: &AppState, error: &Error) -> Result<(), Error> {
        let (refund_id, message) = (self.refund_id, error.to_string());
        state.db.write(|conn| settle(conn, refund_id, RefundStatus::Failed, Some(message)).scope_boxed()).await
    }
}

/// PENDING → `next`, once: the payment shows a whole refund, the buyer is told.
async fn settle(conn: &mut Conn, refund_id: Uuid, next: RefundStatus, error: Option<String>) -> Result<(), StoreError> {
    let Some(refund) = store::move_refund(conn, refund_id, &[RefundStatus::Pending], next, error.as_deref()).await?
    else {
        return Ok(());
    };
    metrics::counter!("ticketing_refund_outcomes_total", "status" => next.as_str()).increment(1);
    if next == RefundStatus::Succeeded
        && let Some(order) = order_store::find_order(conn, refund.order_id).await?
        && let Some(payment) = payments::find_by_order(conn, refund.order_id).await?
    {
        let after = payment_after_refund(payment.status, order.order.refunded_units, order.order.total_units);
        if after != payment.status && payment.status >= PaymentStatus::Paid {
            payments::set_status(conn, payment.id, after, &payment.provider_status).await?;
        }
    }
    SendRefundNotice { refund_id, status: next }.enqueue(conn).await
}

/// E-mails the buyer where their refund stands.
#[derive(Debug, Serialize, Deserialize)]
pub struct SendRefundNotice {
    pub refund_id: Uuid,
    #[serde(with = "status_word")]
    pub status: RefundStatus,
}

impl Job for SendRefundNotice {
    const KIND: JobKind = JobKind::RefundNotice;

    async fn run(&self, state: &AppState) -> Result<(), Error> {
        let Some(mailer) = &state.mailer else {
            return Err(Error::internal("SMTP_URL is not configured; the e-mail waits in the outbox"));
        };
        let refund_id = self.refund_id;
        let (refund, event, user) = state
            .db
            .read(|conn| {
                async move {
                    let refund =
                        store::find_refund(conn, refund_id).await?.ok_or_else(|| Error::not_found("refund"))?;
                    let order = order_store::find_order(conn, refund.order_id).await?;
                    let order = order.ok_or_else(|| Error::internal("a refund without its order"))?;
                    let event = events::find_event(conn, refund.event_id).await?;
                    let user = users::find_user(conn, order.order.user_id).await?;
                    Ok((refund, event, user))
                }
                .scope_boxed()
            })
            .await?;
        let user = user.ok_or_else(|| Error::internal("order without a user"))?;
        let event_name = event.map_or_else(|| "your event".to_owned(), |e| e.details.name);
        let amount = format!("{} {}", refund.currency_code, refund.amount_units);
        let (subject, news) = match self.status {
            RefundStatus::Pending => ("Your refund is on its way", "We have asked the payment provider to return it."),
            RefundStatus::Succeeded => ("Your refund is done", "The money has been returned."),
            RefundStatus::ManualRequired => (
                "Your refund will be paid by bank transfer",
                "Your payment method cannot be refunded automatically; the organizer will transfer the money to you.",
            ),
            RefundStatus::Failed => {
                ("Your refund is delayed", "The payment provider did not confirm it; the organizer is looking into it.")
            }
        };
        let mut body = format!(
            "{news}\n\nEvent: {event_name}\nOrder: {}\nAmount: {amount}\nReason: {}\n",
            refund.order_id, refund.reason
        );
        if !refund.ticket_ids.is_empty() {
            body.push_str("\nThese tickets are no longer valid:\n");
            for ticket in &refund.ticket_ids {
                body.push_str(&format!("- {ticket}\n"));
            }
        }
        if let Some(reference) = refund.manual_reference.as_deref().filter(|_| self.status == RefundStatus::Succeeded) {
            body.push_str(&format!("\nTransfer reference: {reference}\n"));
        }
        mailer
            .send(Mail {
                to: user.email,
                subject: format!("{subject}: {event_name}"),
                body,
                // One notice per refund and step: a repeat after a crash is
                // the same message to the buyer's mail client.
                message_id: Some(format!("<refund-{refund_id}-{}@ticketing>", self.status.as_str())),
            })
            .await
    }
}

/// A status in a job's payload, by its word.
mod status_word {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use ticketing_domain::refunds::RefundStatus;

    pub fn serialize<S: Serializer>(status: &RefundStatus, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(status.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<RefundStatus, D::Error> {
        let word = String::deserialize(deserializer)?;
        RefundStatus::parse(&word).ok_or_else(|| D::Error::custom(format!("{word:?} is not a refund status")))
    }
}
