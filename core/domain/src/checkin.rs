//! Check-in at the gates: scan results, scanner device tokens, and the
//! limits on what a scanner may send.

use uuid::Uuid;

use crate::{Error, error::Violations, secret_token};

crate::vocabulary! {
    /// What a scan decided. Every one is an answer, not an error.
    pub enum ScanResult {
        Accepted = "ACCEPTED",
        AlreadyCheckedIn = "ALREADY_CHECKED_IN",
        /// Not a ticket code, or not signed by the event's key.
        Invalid = "INVALID",
        /// The ticket was voided (refunded or cancelled order).
        Void = "VOID",
        WrongEvent = "WRONG_EVENT",
        NotPaid = "NOT_PAID",
    }
}

/// A scanner's credential as presented: which scanner, and the hash of the
/// whole token (what the database keeps). Checked against the database by
/// the call that uses it, in the same round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCredential {
    pub scanner_id: Uuid,
    pub token_hash: [u8; 32],
}

const TOKEN_PREFIX: &str = "tks_";

/// A new device token for `scanner_id` from 32 random bytes (the caller's
/// CSPRNG): `tks_…` (shown once) and its hash (stored).
pub fn issue_device_token(scanner_id: Uuid, secret: [u8; secret_token::SECRET_BYTES]) -> (String, [u8; 32]) {
    secret_token::issue(TOKEN_PREFIX, scanner_id, secret)
}

/// Whether a bearer token is meant as a device token.
pub fn is_device_token(token: &str) -> bool {
    token.starts_with(TOKEN_PREFIX)
}

/// The credential a device token carries, if it is well formed.
pub fn parse_device_token(token: &str) -> Option<DeviceCredential> {
    let (scanner_id, token_hash) = secret_token::parse(TOKEN_PREFIX, token)?;
    Some(DeviceCredential { scanner_id, token_hash })
}

const MAX_GATE_CHARS: usize = 64;
/// Scans in one offline upload.
pub const MAX_SCANS_PER_SYNC: usize = 500;
const MAX_SCAN_ID_CHARS: usize = 128;

/// A gate name: printable, short (it is shown on dashboards and logs).
pub fn validate_gate(field: &str, gate: &str, violations: &mut Violations) {
    let ok = !gate.trim().is_empty() && gate.chars().count() <= MAX_GATE_CHARS && !gate.chars().any(char::is_control);
    violations.check(ok, field, "must be a gate name of 1 to 64 printable characters");
}

pub fn validate_scan_id(field: &str, scan_id: &str, violations: &mut Violations) {
    let ok = !scan_id.is_empty() && scan_id.len() <= MAX_SCAN_ID_CHARS && scan_id.chars().all(|c| c.is_ascii_graphic());
    violations.check(ok, field, "must be 1 to 128 visible ASCII characters, unique per scanner");
}

pub fn validate_sync_size(count: usize) -> Result<(), Error> {
    if count == 0 || count > MAX_SCANS_PER_SYNC {
        return Err(Error::invalid_field("scans", format!("must hold 1 to {MAX_SCANS_PER_SYNC} scans")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_token_names_its_scanner_and_hashes_to_what_was_stored() {
        let scanner_id = Uuid::now_v7();
        let (token, stored) = issue_device_token(scanner_id, [7; 32]);
        assert!(is_device_token(&token));
        let credential = parse_device_token(&token).expect("well formed");
        assert_eq!(credential, DeviceCredential { scanner_id, token_hash: stored });
        let (other, _) = issue_device_token(scanner_id, [8; 32]);
        assert_ne!(parse_device_token(&other).unwrap().token_hash, stored, "another secret, another hash");
    }

    #[test]
    fn malformed_device_tokens_are_refused() {
        for token in ["tks_", "tks_!!!!", "tks_AAAA", "eyJhbGciOi.jwt.token", &format!("tks_{}", "A".repeat(500))] {
            assert!(parse_device_token(token).is_none(), "{token}");
        }
    }

    #[test]
    fn gates_and_scan_ids_are_checked() {
        let mut v = Violations::default();
        validate_gate("gate", "North 1", &mut v);
        validate_scan_id("scanId", "scan-0001", &mut v);
        assert!(v.into_result().is_ok());
        for (gate, scan_id) in [("", "a b"), (&"g".repeat(65)[..], ""), ("bad\ngate", &"x".repeat(129)[..])] {
            let mut v = Violations::default();
            validate_gate("gate", gate, &mut v);
            validate_scan_id("scanId", scan_id, &mut v);
            assert_eq!(v.into_result().unwrap_err().field_violations.len(), 2, "{gate:?} {scan_id:?}");
        }
        assert!(validate_sync_size(0).is_err() && validate_sync_size(501).is_err() && validate_sync_size(1).is_ok());
    }

    #[test]
    fn results_have_stable_names() {
        for &result in ScanResult::ALL {
            assert_eq!(ScanResult::parse(result.as_str()), Some(result));
        }
    }
}
