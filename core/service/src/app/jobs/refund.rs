//! Giving the money back for a payment whose order could not be kept.

use scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use ticketing_domain::{
    Error,
    payments::{MidtransStatus, ProviderOutcome, next_payment_status},
};
use ticketing_store::payments as store;
use uuid::Uuid;

use super::{Job, JobKind};
use crate::AppState;

/// Asks Midtrans to return `amount` of the order's payment, then records
/// it. The refund key makes a repeated attempt harmless.
#[derive(Debug, Serialize, Deserialize)]
pub struct RefundPayment {
    pub order_id: Uuid,
    pub amount: i64,
    pub reason: String,
}

impl Job for RefundPayment {
    const KIND: JobKind = JobKind::Refund;

    async fn run(&self, state: &AppState) -> Result<(), Error> {
        let order_id = self.order_id;
        let refund_key = format!("refund-{order_id}");
        state.midtrans.refund(&order_id.to_string(), &refund_key, self.amount, &self.reason).await?;
        state
            .db
            .write(|conn| {
                async move {
                    if let Some(payment) = store::find_by_order(conn, order_id).await?
                        && let Some(next) = next_payment_status(payment.status, ProviderOutcome::Refunded)
                    {
                        store::set_status(conn, payment.id, next, MidtransStatus::Refund.as_str()).await?;
                    }
                    Ok(())
                }
                .scope_boxed()
            })
            .await
    }
}
