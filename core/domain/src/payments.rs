//! Payments: what a Midtrans transaction status means for an order, the
//! notification signature, and the rule that a payment never moves backwards.

use crate::Reason;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::{Error, money::Money};

crate::vocabulary! {
    /// Our view of a payment. Ranked (declaration order): a notification
    /// applies only when it moves the payment forward, so duplicates and late
    /// deliveries change nothing.
    #[derive(PartialOrd, Ord)]
    pub enum PaymentStatus {
        Pending = "pending",
        /// A card capture held for the merchant's fraud review
        /// (`fraud_status=challenge`): the organizer approves or denies it.
        Challenged = "challenged",
        Failed = "failed",
        Paid = "paid",
        /// Paid, but the order could not be kept (sold out after expiry): the
        /// money goes back through the refund job.
        RefundPending = "refund_pending",
        Refunded = "refunded",
    }
}

crate::vocabulary! {
    /// Snap's `enabled_payments` names (shared/MIDTRANS.md): what an event may
    /// offer on its payment page.
    #[derive(PartialOrd, Ord)]
    pub enum SnapPaymentMethod {
        CreditCard = "credit_card",
        Gopay = "gopay",
        Shopeepay = "shopeepay",
        OtherQris = "other_qris",
        BcaVa = "bca_va",
        BniVa = "bni_va",
        BriVa = "bri_va",
        CimbVa = "cimb_va",
        PermataVa = "permata_va",
        OtherVa = "other_va",
        Echannel = "echannel",
        Indomaret = "indomaret",
        Alfamart = "alfamart",
        Akulaku = "akulaku",
        Kredivo = "kredivo",
    }
}

/// An event's payment page: the methods it offers (none listed: every one
/// active on the merchant account) and how long a buyer who picks a method
/// has to pay (unlisted: the order's usual hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentSettings {
    pub enabled_methods: Vec<SnapPaymentMethod>,
    pub hold_minutes_by_method: std::collections::BTreeMap<SnapPaymentMethod, i32>,
}

/// The longest a payment page may stay open: a week.
pub const MAX_HOLD_MINUTES: i32 = 7 * 24 * 60;

impl PaymentSettings {
    pub fn offers(&self, method: SnapPaymentMethod) -> bool {
        self.enabled_methods.is_empty() || self.enabled_methods.contains(&method)
    }

    pub fn hold_minutes(&self, method: SnapPaymentMethod) -> Option<i32> {
        self.hold_minutes_by_method.get(&method).copied()
    }

    pub fn validate(&self, violations: &mut crate::error::Violations) {
        let mut seen = std::collections::BTreeSet::new();
        violations.check(
            self.enabled_methods.iter().all(|m| seen.insert(*m)),
            "payment.enabledMethods",
            "lists a method twice",
        );
        for (method, minutes) in &self.hold_minutes_by_method {
            let field = format!("payment.holdMinutesByMethod.{method}");
            violations.check((1..=MAX_HOLD_MINUTES).contains(minutes), &field, "must be 1 to 10080 minutes");
            violations.check(self.offers(*method), &field, "names a method the event does not offer");
        }
    }
}

crate::vocabulary! {
    /// Where a payment status came from.
    pub enum NotificationSource {
        /// Midtrans's webhook.
        Notification = "notification",
        /// Our reconciliation asking the status API.
        StatusCheck = "status_check",
    }
}

crate::vocabulary! {
    /// What a received status did, as stored with it and counted
    /// (`ticketing_payment_notifications_total{outcome}`).
    pub enum NotificationOutcome {
        Paid = "paid",
        Revived = "revived",
        Unchanged = "unchanged",
        /// Paid for an order that could not be kept: a refund job is queued.
        RefundRequested = "refund_requested",
        Refunded = "refunded",
        Failed = "failed",
        Pending = "pending",
        /// A card payment held for the organizer's decision.
        Challenged = "challenged",
        PartialRefund = "partial_refund",
        UnknownStatus = "unknown_status",
        UnknownOrder = "unknown_order",
        AmountMismatch = "amount_mismatch",
        /// Signed, but Midtrans could not be asked to confirm it: stored for
        /// reconciliation, Midtrans told to deliver again.
        Deferred = "deferred",
        /// Refused before storing: not JSON, or a field missing.
        Malformed = "malformed",
        /// Refused before storing: the signature does not match.
        Forged = "forged",
    }
}

impl NotificationOutcome {
    /// Outcomes a person should look at (alerted through the logs).
    pub fn needs_attention(self) -> bool {
        matches!(
            self,
            NotificationOutcome::RefundRequested
                | NotificationOutcome::AmountMismatch
                | NotificationOutcome::PartialRefund
        )
    }
}

/// What a provider's transaction status says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderOutcome {
    /// Waiting for the customer.
    Pending,
    /// A card captured, held for the merchant's fraud review.
    Challenged,
    /// Money received.
    Paid,
    /// Denied, cancelled, expired or failed: the order is left to expire.
    Failed,
    /// Money returned in full (refund or chargeback).
    Refunded,
    /// Part of the money returned: the order keeps its tickets; a person
    /// decides what the part was for (logged, counted, no state change).
    PartiallyRefunded,
}

crate::vocabulary! {
    /// Midtrans's `transaction_status` (shared/MIDTRANS.md).
    pub enum MidtransStatus {
        Settlement = "settlement",
        Capture = "capture",
        Pending = "pending",
        Authorize = "authorize",
        Deny = "deny",
        Cancel = "cancel",
        Expire = "expire",
        Failure = "failure",
        Refund = "refund",
        Chargeback = "chargeback",
        PartialRefund = "partial_refund",
        PartialChargeback = "partial_chargeback",
    }
}

/// Midtrans's `status_code`, `transaction_status` and `fraud_status` as an
/// outcome; `None` for a status Midtrans does not document. Paid means
/// `status_code` 200 with `settlement`, or with `capture` and `fraud_status`
/// `accept` (shared/MIDTRANS.md): anything less is not money yet.
pub fn midtrans_outcome(
    status_code: &str,
    transaction_status: &str,
    fraud_status: Option<&str>,
) -> Option<ProviderOutcome> {
    let ok = status_code == "200";
    Some(match MidtransStatus::parse(transaction_status)? {
        MidtransStatus::Settlement if ok => ProviderOutcome::Paid,
        // A settlement without 200 is nothing Midtrans documents.
        MidtransStatus::Settlement => return None,
        // A card capture is money only once fraud review accepted it;
        // `challenge` (or no verdict) waits for the merchant's decision.
        MidtransStatus::Capture => match fraud_status {
            Some("accept") if ok => ProviderOutcome::Paid,
            Some("deny") => ProviderOutcome::Failed,
            Some("challenge") if ok => ProviderOutcome::Challenged,
            _ => ProviderOutcome::Pending,
        },
        MidtransStatus::Pending | MidtransStatus::Authorize => ProviderOutcome::Pending,
        MidtransStatus::Deny | MidtransStatus::Cancel | MidtransStatus::Expire | MidtransStatus::Failure => {
            ProviderOutcome::Failed
        }
        MidtransStatus::Refund | MidtransStatus::Chargeback => ProviderOutcome::Refunded,
        MidtransStatus::PartialRefund | MidtransStatus::PartialChargeback => ProviderOutcome::PartiallyRefunded,
    })
}

/// Where a payment in `current` goes on `outcome`, or `None` when the
/// outcome is old news (a duplicate, or a late `pending` after `settlement`).
pub fn next_payment_status(current: PaymentStatus, outcome: ProviderOutcome) -> Option<PaymentStatus> {
    let next = match outcome {
        ProviderOutcome::Pending => PaymentStatus::Pending,
        ProviderOutcome::Challenged => PaymentStatus::Challenged,
        ProviderOutcome::Failed => PaymentStatus::Failed,
        ProviderOutcome::Paid => PaymentStatus::Paid,
        ProviderOutcome::Refunded => PaymentStatus::Refunded,
        ProviderOutcome::PartiallyRefunded => return None,
    };
    // A refund the provider confirms settles a pending refund too.
    (next > current).then_some(next)
}

/// Midtrans's amount string: whole rupiah with two decimals ("150000.00").
/// Rupiah have no minor unit in use, so nanos must be zero.
pub fn midtrans_gross_amount(total: &Money) -> Result<String, Error> {
    if total.currency_code != "IDR" || total.nanos != 0 {
        return Err(Error::failed_precondition(
            Reason::UnsupportedCurrency,
            format!("Midtrans takes whole IDR amounts, not {} {}.{:09}", total.currency_code, total.units, total.nanos),
        ));
    }
    Ok(format!("{}.00", total.units))
}

/// `hex(SHA512(order_id + status_code + gross_amount + server_key))`, over
/// the strings exactly as received.
pub fn midtrans_signature(order_id: &str, status_code: &str, gross_amount: &str, server_key: &str) -> String {
    let mut digest = Sha512::new();
    for part in [order_id, status_code, gross_amount, server_key] {
        digest.update(part.as_bytes());
    }
    hex(&digest.finalize())
}

/// Checks a notification's `signature_key` in constant time.
pub fn midtrans_signature_is_valid(
    order_id: &str,
    status_code: &str,
    gross_amount: &str,
    server_key: &str,
    signature_key: &str,
) -> bool {
    let expected = midtrans_signature(order_id, status_code, gross_amount, server_key);
    expected.as_bytes().ct_eq(signature_key.to_ascii_lowercase().as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paid_means_code_200_with_settlement_or_accepted_capture() {
        assert_eq!(midtrans_outcome("200", "settlement", None), Some(ProviderOutcome::Paid));
        assert_eq!(midtrans_outcome("200", "capture", Some("accept")), Some(ProviderOutcome::Paid));
        assert_eq!(midtrans_outcome("201", "settlement", None), None, "settlement without 200 is not money");
        assert_eq!(midtrans_outcome("201", "capture", Some("accept")), Some(ProviderOutcome::Pending));
        assert_eq!(midtrans_outcome("200", "capture", None), Some(ProviderOutcome::Pending), "no fraud verdict yet");
        assert_eq!(midtrans_outcome("200", "capture", Some("challenge")), Some(ProviderOutcome::Challenged));
        assert_eq!(
            next_payment_status(PaymentStatus::Pending, ProviderOutcome::Challenged),
            Some(PaymentStatus::Challenged)
        );
        assert_eq!(next_payment_status(PaymentStatus::Challenged, ProviderOutcome::Paid), Some(PaymentStatus::Paid));
        assert_eq!(
            next_payment_status(PaymentStatus::Challenged, ProviderOutcome::Failed),
            Some(PaymentStatus::Failed)
        );
        assert_eq!(next_payment_status(PaymentStatus::Challenged, ProviderOutcome::Pending), None);
        assert_eq!(midtrans_outcome("200", "capture", Some("deny")), Some(ProviderOutcome::Failed));
        for failed in ["deny", "cancel", "expire", "failure"] {
            assert_eq!(midtrans_outcome("202", failed, None), Some(ProviderOutcome::Failed));
        }
        assert_eq!(midtrans_outcome("200", "refund", None), Some(ProviderOutcome::Refunded));
        assert_eq!(midtrans_outcome("200", "partial_refund", None), Some(ProviderOutcome::PartiallyRefunded));
        assert_eq!(next_payment_status(PaymentStatus::Paid, ProviderOutcome::PartiallyRefunded), None);
        assert_eq!(midtrans_outcome("200", "teleported", None), None);
    }

    #[test]
    fn payments_only_move_forward() {
        use PaymentStatus::*;
        assert_eq!(next_payment_status(Pending, ProviderOutcome::Paid), Some(Paid));
        assert_eq!(next_payment_status(Paid, ProviderOutcome::Paid), None, "duplicate settlement");
        assert_eq!(next_payment_status(Paid, ProviderOutcome::Pending), None, "late pending after settlement");
        assert_eq!(next_payment_status(Paid, ProviderOutcome::Failed), None);
        assert_eq!(next_payment_status(Failed, ProviderOutcome::Paid), Some(Paid), "money is never ignored");
        assert_eq!(next_payment_status(Paid, ProviderOutcome::Refunded), Some(Refunded));
        assert_eq!(next_payment_status(RefundPending, ProviderOutcome::Refunded), Some(Refunded));
        assert_eq!(next_payment_status(Refunded, ProviderOutcome::Paid), None);
    }

    #[test]
    fn gross_amount_has_two_decimals_and_whole_rupiah() {
        let idr = |units, nanos| Money { currency_code: "IDR".into(), units, nanos };
        assert_eq!(midtrans_gross_amount(&idr(150_000, 0)).unwrap(), "150000.00");
        assert!(midtrans_gross_amount(&idr(1, 500_000_000)).is_err());
        assert!(midtrans_gross_amount(&Money { currency_code: "USD".into(), units: 1, nanos: 0 }).is_err());
    }

    #[test]
    fn signature_matches_midtrans_documentation() {
        // Python: hashlib.sha512(b"order-1" b"200" b"150000.00" b"server-key").hexdigest()
        let signature = midtrans_signature("order-1", "200", "150000.00", "server-key");
        assert_eq!(
            signature,
            "6f91a6d00ec9df2ba1c3edfbad185989fb799bbe6c6c2fdd5a0c24e104848b0a\
             be1781e9f0a21a2ca703f09ba437bdc027ee4dce5eda372680d1020fab4c946f"
        );
        assert!(midtrans_signature_is_valid("order-1", "200", "150000.00", "server-key", &signature));
        assert!(midtrans_signature_is_valid("order-1", "200", "150000.00", "server-key", &signature.to_uppercase()));
        assert!(!midtrans_signature_is_valid("order-1", "200", "150000.00", "other-key", &signature));
        assert!(!midtrans_signature_is_valid("order-1", "200", "150001.00", "server-key", &signature));
        assert!(!midtrans_signature_is_valid("order-1", "200", "150000.00", "server-key", ""));
    }
}
