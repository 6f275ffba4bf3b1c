//! Refunds: what one is, where its money goes back through (Midtrans's API or
//! a person), and the checks on what an organizer writes with one.

use crate::{error::Violations, payments::PaymentStatus};

crate::vocabulary! {
    /// A refund's state. A refund's tickets are void whatever its state.
    pub enum RefundStatus {
        /// Waiting for Midtrans (the outbox job is due or running).
        Pending = "pending",
        /// Midtrans returned the money, or a person did and said so.
        Succeeded = "succeeded",
        /// Midtrans refused it or never answered: a person finishes it.
        Failed = "failed",
        /// Paid by a method Midtrans cannot refund by API: a person does.
        ManualRequired = "manual_required",
    }
}

impl RefundStatus {
    /// A person may close it with the bank's reference.
    pub fn awaits_a_person(self) -> bool {
        matches!(self, RefundStatus::ManualRequired | RefundStatus::Failed)
    }
}

crate::vocabulary! {
    /// Why a refund exists.
    pub enum RefundCause {
        /// The event's organizer (or an admin) asked for it.
        Organizer = "organizer",
        /// The event was cancelled: every paid order is refunded once.
        EventCancelled = "event_cancelled",
        /// Money arrived for an order that could not be kept (expired and
        /// sold out since, or cancelled).
        UnkeptPayment = "unkept_payment",
        /// Refunded at Midtrans itself (its dashboard, a chargeback): recorded,
        /// nothing to send.
        Provider = "provider",
    }
}

crate::vocabulary! {
    /// Midtrans's `payment_type` (shared/MIDTRANS.md), as far as a refund cares.
    pub enum PaymentMethod {
        CreditCard = "credit_card",
        Gopay = "gopay",
        Shopeepay = "shopeepay",
        Qris = "qris",
        OtherQris = "other_qris",
        Dana = "dana",
        Ovo = "ovo",
        Kredivo = "kredivo",
        Akulaku = "akulaku",
        BankTransfer = "bank_transfer",
        Echannel = "echannel",
        Permata = "permata",
        Cstore = "cstore",
    }
}

impl PaymentMethod {
    /// Midtrans refunds cards, e-wallets, QRIS and pay-later by API; bank
    /// transfers, virtual accounts and convenience stores only by hand.
    pub fn refundable_by_api(self) -> bool {
        !matches!(
            self,
            PaymentMethod::BankTransfer | PaymentMethod::Echannel | PaymentMethod::Permata | PaymentMethod::Cstore
        )
    }
}

/// Where a new refund starts: a method Midtrans cannot refund by API goes to
/// a person at once; any other (or one we were never told) goes to Midtrans,
/// which says so if it cannot.
pub fn initial_status(payment_type: Option<&str>) -> RefundStatus {
    match payment_type.and_then(PaymentMethod::parse) {
        Some(method) if !method.refundable_by_api() => RefundStatus::ManualRequired,
        _ => RefundStatus::Pending,
    }
}

/// The payment's state once a refund of `refunded` out of `paid` succeeded.
pub fn payment_after_refund(current: PaymentStatus, refunded: i64, paid: i64) -> PaymentStatus {
    if refunded >= paid && current < PaymentStatus::Refunded { PaymentStatus::Refunded } else { current }
}

pub const MAX_REASON_CHARS: usize = 500;
pub const MAX_REFERENCE_CHARS: usize = 200;

/// The reason an organizer gives: said, plain, bounded.
pub fn validate_reason(reason: &str, violations: &mut Violations) {
    let length = reason.trim().chars().count();
    violations.check((1..=MAX_REASON_CHARS).contains(&length), "reason", "must be 1 to 500 characters");
    violations.check_multiline_text("reason", reason);
}

/// The bank's (or the person's) reference for a refund paid by hand.
pub fn validate_reference(reference: &str, violations: &mut Violations) {
    let length = reference.trim().chars().count();
    violations.check((1..=MAX_REFERENCE_CHARS).contains(&length), "reference", "must be 1 to 200 characters");
    violations.check_plain_text("reference", reference);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_and_stores_go_to_a_person_everything_else_to_midtrans() {
        for manual in ["bank_transfer", "echannel", "permata", "cstore"] {
            assert_eq!(initial_status(Some(manual)), RefundStatus::ManualRequired, "{manual}");
        }
        for api in ["credit_card", "gopay", "shopeepay", "qris", "other_qris", "dana", "ovo", "kredivo", "akulaku"] {
            assert_eq!(initial_status(Some(api)), RefundStatus::Pending, "{api}");
        }
        assert_eq!(initial_status(None), RefundStatus::Pending, "unknown: Midtrans says");
        assert_eq!(initial_status(Some("new_wallet")), RefundStatus::Pending);
    }

    #[test]
    fn a_payment_is_refunded_once_its_whole_amount_is() {
        assert_eq!(payment_after_refund(PaymentStatus::Paid, 50, 100), PaymentStatus::Paid);
        assert_eq!(payment_after_refund(PaymentStatus::Paid, 100, 100), PaymentStatus::Refunded);
        assert_eq!(payment_after_refund(PaymentStatus::RefundPending, 100, 100), PaymentStatus::Refunded);
    }

    #[test]
    fn reasons_and_references_are_bounded_plain_text() {
        let check = |f: fn(&str, &mut Violations), value: &str| {
            let mut violations = Violations::default();
            f(value, &mut violations);
            violations.into_result().is_ok()
        };
        assert!(check(validate_reason, "the show moved to March"));
        assert!(!check(validate_reason, "  "));
        assert!(!check(validate_reason, &"x".repeat(501)));
        assert!(!check(validate_reason, "forged\u{1b}[2J"));
        assert!(check(validate_reference, "BCA 0012345"));
        assert!(!check(validate_reference, "line\nbreak"));
    }
}
