//! The simulator's in-memory model: transactions, their status machine, injected faults,
//! and the JSON Midtrans renders for a transaction (status reads and notifications share it).

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};
use uuid::Uuid;

/// Fixed at start-up from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    pub server_key: String,
    pub merchant_id: String,
    /// Used when a Snap create carries no `X-Override-Notification` header, like the
    /// notification URL configured in the Midtrans dashboard.
    pub notification_url: Option<String>,
    /// Base of `redirect_url`; no trailing slash.
    pub public_url: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Capture,
    Settlement,
    Deny,
    Cancel,
    Expire,
    Failure,
    Refund,
    PartialRefund,
}

impl Status {
    /// The wire name, as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Capture => "capture",
            Status::Settlement => "settlement",
            Status::Deny => "deny",
            Status::Cancel => "cancel",
            Status::Expire => "expire",
            Status::Failure => "failure",
            Status::Refund => "refund",
            Status::PartialRefund => "partial_refund",
        }
    }

    /// The `status_code` Midtrans sends beside each `transaction_status`.
    pub fn status_code(self) -> &'static str {
        match self {
            Status::Pending => "201",
            Status::Deny | Status::Expire | Status::Failure => "202",
            Status::Capture | Status::Settlement | Status::Cancel | Status::Refund | Status::PartialRefund => "200",
        }
    }

    /// MIDTRANS.md's transition table, plus pending → capture and pending → failure so every
    /// admin action has a state to start from, capture → deny for a challenge the merchant
    /// refuses, and refunds from capture and from an earlier partial refund (Midtrans allows
    /// several partial refunds up to the gross amount).
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (Pending, Settlement | Expire | Cancel | Deny | Capture | Failure)
                | (Capture, Settlement | Cancel | Deny)
                | (Settlement | Capture | PartialRefund, Refund | PartialRefund)
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Refund {
    pub refund_key: String,
    pub refund_amount: i64,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    /// The answer given when the refund was made: a repeated `refund_key` gets it again.
    #[serde(skip)]
    pub response: Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct Transaction {
    pub order_id: String,
    /// Whole rupiah: IDR has no minor unit in Midtrans, the ".00" is only formatting.
    pub gross_amount: i64,
    pub status: Status,
    pub fraud_status: String,
    /// How the customer paid (the simulator's default: QRIS).
    pub payment_type: String,
    pub transaction_id: Uuid,
    pub transaction_time: DateTime<Utc>,
    pub settlement_time: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Snap's `enabled_payments` as requested (empty: every method).
    pub enabled_payments: Vec<String>,
    pub refunds: Vec<Refund>,
    pub token: String,
    pub redirect_url: String,
    pub notification_urls: Vec<String>,
    /// The `Idempotency-Key` of the Snap create that made this transaction, if any.
    pub idempotency_key: Option<String>,
}

/// Transactions by order_id. The Core API also takes a transaction_id where an order_id
/// goes (the Python SDK's `notification()` relies on it), hence the second index.
#[derive(Default)]
pub struct Store {
    by_order_id: HashMap<String, Transaction>,
    order_ids: HashMap<Uuid, String>,
}

impl Store {
    pub fn insert(&mut self, transaction: Transaction) {
        self.order_ids.insert(transaction.transaction_id, transaction.order_id.clone());
        self.by_order_id.insert(transaction.order_id.clone(), transaction);
    }

    pub fn get(&self, order_id: &str) -> Option<&Transaction> {
        self.by_order_id.get(order_id)
    }

    pub fn get_mut(&mut self, order_id: &str) -> Option<&mut Transaction> {
        self.by_order_id.get_mut(order_id)
    }

    /// By order_id, else by transaction_id.
    pub fn find_mut(&mut self, id: &str) -> Option<&mut Transaction> {
        let order_id = if self.by_order_id.contains_key(id) {
            id
        } else {
            Uuid::parse_str(id).ok().and_then(|transaction_id| self.order_ids.get(&transaction_id))?
        };
        self.by_order_id.get_mut(order_id)
    }

    /// How many transactions it knows.
    pub fn count(&self) -> usize {
        self.by_order_id.len()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Transaction> {
        self.by_order_id.values_mut()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct TransitionError {
    pub from: Status,
    pub to: Status,
}

/// What a transaction is paid with unless a test says otherwise.
pub const DEFAULT_PAYMENT_TYPE: &str = "qris";

/// Payment types Midtrans cannot refund through the API (MIDTRANS.md): bank
/// transfer / virtual accounts and convenience stores.
pub const MANUAL_REFUND_TYPES: &[&str] = &["bank_transfer", "echannel", "permata", "cstore"];

#[derive(Debug, PartialEq, Eq)]
pub enum RefundError {
    /// Not settled (or captured), or already fully refunded.
    NotRefundable(Status),
    /// Paid by a method Midtrans refunds only by hand.
    MethodNotRefundable(String),
    ExceedsRemaining {
        remaining: i64,
    },
}

impl Transaction {
    /// Midtrans expires a pending transaction on its own; the simulator does it lazily,
    /// whenever the transaction is looked at, and sends no notification for it (so tests can
    /// exercise "the notification never came, ask the status API").
    pub fn expire_if_due(&mut self, now: DateTime<Utc>) {
        if self.status == Status::Pending && self.expires_at.is_some_and(|at| at <= now) {
            self.status = Status::Expire;
        }
    }

    pub fn transition(&mut self, to: Status, now: DateTime<Utc>) -> Result<(), TransitionError> {
        if !self.status.can_become(to) {
            return Err(TransitionError { from: self.status, to });
        }
        self.status = to;
        if to == Status::Settlement {
            self.settlement_time = Some(now);
        }
        Ok(())
    }

    pub fn refunded(&self) -> i64 {
        self.refunds.iter().map(|r| r.refund_amount).sum()
    }

    pub fn find_refund(&self, refund_key: &str) -> Option<&Refund> {
        self.refunds.iter().find(|r| r.refund_key == refund_key)
    }

    /// Refunds `amount` (default: all that is left) and returns the Core API answer.
    /// The caller handles a repeated `refund_key` first, through [`Self::find_refund`].
    pub fn refund(
        &mut self,
        refund_key: String,
        amount: Option<i64>,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<Value, RefundError> {
        if MANUAL_REFUND_TYPES.contains(&self.payment_type.as_str()) {
            return Err(RefundError::MethodNotRefundable(self.payment_type.clone()));
        }
        let remaining = self.gross_amount - self.refunded();
        if !self.status.can_become(Status::Refund) || remaining <= 0 {
            return Err(RefundError::NotRefundable(self.status));
        }
        let amount = amount.unwrap_or(remaining);
        if amount > remaining {
            return Err(RefundError::ExceedsRemaining { remaining });
        }
        let to = if amount == remaining { Status::Refund } else { Status::PartialRefund };
        self.transition(to, now).map_err(|e| RefundError::NotRefundable(e.from))?;
        let response = json!({
            "status_code": "200",
            "status_message": "Success, refund request is approved",
            "transaction_id": self.transaction_id.to_string(),
            "order_id": self.order_id,
            "gross_amount": amount_string(self.gross_amount),
            "currency": "IDR",
            "payment_type": self.payment_type,
            "transaction_time": jakarta_time(self.transaction_time),
            "transaction_status": to,
            "refund_chargeback_id": self.refunds.len() + 1,
            "refund_amount": amount_string(amount),
            "refund_key": refund_key,
        });
        self.refunds.push(Refund {
            refund_key,
            refund_amount: amount,
            reason,
            created_at: now,
            response: response.clone(),
        });
        Ok(response)
    }

    /// The notification Midtrans would send for `status` (the current one for a status
    /// read; any one for the admin `notify` endpoint), signed with the server key.
    pub fn notification(&self, status: Status, config: &Config) -> Value {
        let gross_amount = amount_string(self.gross_amount);
        let status_code = status.status_code();
        let mut body = json!({
            "transaction_time": jakarta_time(self.transaction_time),
            "transaction_status": status,
            "transaction_id": self.transaction_id.to_string(),
            "status_message": "midtrans payment notification",
            "status_code": status_code,
            "signature_key": signature_key(&self.order_id, status_code, &gross_amount, &config.server_key),
            "payment_type": self.payment_type,
            "order_id": self.order_id,
            "merchant_id": config.merchant_id,
            "gross_amount": gross_amount,
            "fraud_status": self.fraud_status,
            "currency": "IDR",
        });
        let fields = body.as_object_mut().expect("built as an object");
        // A replayed "settlement" for a transaction not settled (yet) still needs a time.
        let settled_at = match status {
            Status::Settlement => Some(self.settlement_time.unwrap_or_else(Utc::now)),
            Status::Refund | Status::PartialRefund => self.settlement_time,
            _ => None,
        };
        if let Some(at) = settled_at {
            fields.insert("settlement_time".into(), jakarta_time(at).into());
        }
        if matches!(status, Status::Refund | Status::PartialRefund) && !self.refunds.is_empty() {
            fields.insert("refund_amount".into(), amount_string(self.refunded()).into());
            let refunds = self
                .refunds
                .iter()
                .map(|r| {
                    json!({
                        "refund_key": r.refund_key,
                        "refund_amount": amount_string(r.refund_amount),
                        "reason": r.reason,
                        "created_at": jakarta_time(r.created_at),
                    })
                })
                .collect();
            fields.insert("refunds".into(), Value::Array(refunds));
        }
        body
    }
}

/// Latency and errors injected in front of the Midtrans API (not the admin API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    pub latency_ms: u64,
    pub fail_status: u16,
    /// How many of the next calls fail; -1 = all of them until reset.
    pub fail_count: i64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults { latency_ms: 0, fail_status: 503, fail_count: 0 }
    }
}

impl Faults {
    /// Counts one API call against `fail_count`; `Some(status)` if it must fail.
    pub fn take_failure(&mut self) -> Option<u16> {
        match self.fail_count {
            -1 => Some(self.fail_status),
            n if n > 0 => {
                self.fail_count -= 1;
                Some(self.fail_status)
            }
            _ => None,
        }
    }
}

/// Midtrans prints times in Jakarta local time (WIB, UTC+7) without an offset.
pub fn jakarta_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&wib()).format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn wib() -> FixedOffset {
    FixedOffset::east_opt(7 * 3600).expect("UTC+7 is a valid offset")
}

pub fn amount_string(amount: i64) -> String {
    format!("{amount}.00")
}

/// `hex(SHA512(order_id + status_code + gross_amount + server_key))`, lowercase.
pub fn signature_key(order_id: &str, status_code: &str, gross_amount: &str, server_key: &str) -> String {
    let digest = Sha512::digest(format!("{order_id}{status_code}{gross_amount}{server_key}"));
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transaction(status: Status) -> Transaction {
        Transaction {
            order_id: "ORDER-1".into(),
            gross_amount: 150_000,
            status,
            fraud_status: "accept".into(),
            payment_type: DEFAULT_PAYMENT_TYPE.into(),
            transaction_id: Uuid::new_v4(),
            transaction_time: Utc::now(),
            settlement_time: None,
            expires_at: None,
            enabled_payments: Vec::new(),
            refunds: Vec::new(),
            token: "t".into(),
            redirect_url: "r".into(),
            notification_urls: Vec::new(),
            idempotency_key: None,
        }
    }

    #[test]
    fn signature_matches_sha512sum() {
        // printf '%s' 'ORDER-1200150000.00SB-KEY' | sha512sum
        assert_eq!(
            signature_key("ORDER-1", "200", "150000.00", "SB-KEY"),
            "1534454bd6c3a79f08578687fa89c2565c8e688efd0e90f3f0d768505fcb14ed\
             02e579a073f840fad29b425cf174d1f8a704a8fcdf0062b1b2232f608362554f"
        );
    }

    #[test]
    fn wire_names_match_serde() {
        use Status::*;
        for status in [Pending, Capture, Settlement, Deny, Cancel, Expire, Failure, Refund, PartialRefund] {
            assert_eq!(json!(status), status.as_str());
        }
    }

    #[test]
    fn transitions_follow_the_table() {
        assert!(Status::Pending.can_become(Status::Settlement));
        assert!(Status::Capture.can_become(Status::Settlement));
        assert!(!Status::Settlement.can_become(Status::Settlement));
        assert!(!Status::Expire.can_become(Status::Settlement));
        assert!(!Status::Pending.can_become(Status::Refund));
        assert!(!Status::Refund.can_become(Status::PartialRefund));
    }

    #[test]
    fn partial_refunds_add_up_to_a_full_refund() {
        let now = Utc::now();
        let mut tx = transaction(Status::Settlement);
        tx.refund("a".into(), Some(50_000), String::new(), now).unwrap();
        assert_eq!(tx.status, Status::PartialRefund);
        assert_eq!(
            tx.refund("b".into(), Some(200_000), String::new(), now),
            Err(RefundError::ExceedsRemaining { remaining: 100_000 })
        );
        tx.refund("c".into(), None, String::new(), now).unwrap();
        assert_eq!((tx.status, tx.refunded()), (Status::Refund, 150_000));
        assert_eq!(tx.refund("d".into(), None, String::new(), now), Err(RefundError::NotRefundable(Status::Refund)));
    }

    #[test]
    fn pending_transactions_expire_lazily() {
        let now = Utc::now();
        let mut tx = transaction(Status::Pending);
        tx.expires_at = Some(now);
        tx.expire_if_due(now);
        assert_eq!(tx.status, Status::Expire);
    }
}
