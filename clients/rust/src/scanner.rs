//! A gate scanner that keeps admitting people when the network does not.
//!
//! Online, every scan is a `Redeem` and the server's answer is final. While
//! the server cannot be reached, the scanner decides from what it synced
//! last: the event's public key (a code that does not verify is INVALID, as
//! on the server) and the void list from the manifest. Admitted scans are
//! queued and uploaded by [`Scanner::sync`] once the server answers again;
//! the server then settles each ticket on the earliest scan across all gates
//! and reports conflicts. The state (manifest and queue) is plain JSON, so a
//! restart of the device loses nothing.

use std::{collections::BTreeSet, path::Path};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ticketing_domain::ticket_code::{self, UnverifiedCode, VerifyingKey};
use uuid::Uuid;

use crate::{ApiError, Connection, v1};

/// What the scanner remembers between runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScannerState {
    /// The event's Ed25519 public key, URL-safe base64 (from the manifest).
    pub event_public_key: String,
    /// Manifest version synced so far; the next sync asks only for changes.
    pub manifest_version: i64,
    pub valid_tickets: BTreeSet<Uuid>,
    pub void_tickets: BTreeSet<Uuid>,
    /// Tickets this device admitted while offline, so a second scan here is
    /// turned away even before the server knows.
    pub admitted_offline: BTreeSet<Uuid>,
    /// Offline admissions not yet accepted by the server.
    pub pending: Vec<PendingScan>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingScan {
    pub scan_id: Uuid,
    pub code: String,
    pub gate: String,
    pub scan_time: DateTime<Utc>,
}

/// The answer shown at the gate.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The server decided.
    Online(Box<v1::RedeemResponse>),
    /// Decided here without the server.
    Offline(OfflineVerdict),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfflineVerdict {
    /// Let in; queued for [`Scanner::sync`].
    Admitted,
    /// This device already let this ticket in.
    AlreadyAdmitted,
    /// Void or revoked as of the last manifest.
    Void,
}

impl Verdict {
    /// Whether the holder may pass the gate.
    pub fn admits(&self) -> bool {
        match self {
            Verdict::Online(response) => response.result() == v1::RedeemResult::Accepted,
            Verdict::Offline(verdict) => *verdict == OfflineVerdict::Admitted,
        }
    }
}

/// Why a scan could not be decided at all.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Forged, damaged or not a ticket code; the server would say INVALID.
    #[error("invalid ticket code: {0}")]
    Invalid(ticket_code::CodeError),
    /// A genuine ticket of another event; the server would say WRONG_EVENT.
    #[error("ticket of another event")]
    WrongEvent,
    /// No manifest yet: offline decisions need the event key.
    #[error("no manifest synced yet; sync while online first")]
    NoManifest,
    /// The server answered with an error (revoked device, rate limit, …).
    #[error(transparent)]
    Api(#[from] ApiError),
}

pub struct Scanner {
    connection: Connection,
    event_id: Uuid,
    gate: String,
    state: ScannerState,
    /// The state's public key, decoded once (not per scan).
    verifying_key: Option<VerifyingKey>,
}

impl Scanner {
    /// `connection` must carry the scanner's device token.
    pub fn new(connection: Connection, event_id: Uuid, gate: &str, state: ScannerState) -> Scanner {
        let verifying_key = decode_key(&state.event_public_key);
        Scanner { connection, event_id, gate: gate.to_owned(), state, verifying_key }
    }

    pub fn state(&self) -> &ScannerState {
        &self.state
    }

    /// Streams the manifest changes since the last sync (all of it the first
    /// time) and applies them.
    pub async fn refresh_manifest(&mut self) -> Result<(), ApiError> {
        let request = v1::StreamManifestRequest {
            event_id: self.event_id.to_string(),
            since_version: self.state.manifest_version,
            ..Default::default()
        };
        let mut stream = self
            .connection
            .call(self.connection.checkin(), request, |mut c, r| async move { c.stream_manifest(r).await })
            .await?;
        while let Some(chunk) = stream.message().await? {
            self.apply(chunk);
        }
        Ok(())
    }

    fn apply(&mut self, chunk: v1::ManifestChunk) {
        if !chunk.event_public_key.is_empty() && chunk.event_public_key != self.state.event_public_key {
            self.verifying_key = decode_key(&chunk.event_public_key);
            self.state.event_public_key = chunk.event_public_key;
        }
        for id in chunk.valid_ticket_ids.iter().filter_map(|id| id.parse().ok()) {
            self.state.void_tickets.remove(&id);
            self.state.valid_tickets.insert(id);
        }
        for id in chunk.void_ticket_ids.iter().filter_map(|id| id.parse().ok()) {
            self.state.valid_tickets.remove(&id);
            self.state.void_tickets.insert(id);
        }
        self.state.manifest_version = self.state.manifest_version.max(chunk.version);
    }

    /// Checks the code's signature here, then asks the server; when the
    /// server cannot be reached, decides offline and queues the admission.
    pub async fn scan(&mut self, code: &str) -> Result<Verdict, ScanError> {
        let ticket_id = self.verify(code)?;
        let scan_id = Uuid::now_v7();
        let scan_time = Utc::now();
        let request = v1::RedeemRequest {
            code: code.to_owned(),
            gate: self.gate.clone(),
            scan_time: Some(scan_time.into()),
            scan_id: scan_id.to_string(),
        };
        // One attempt: a person is waiting, and the offline answer is good.
        match self.connection.checkin().redeem(request).await.map_err(ApiError::from) {
            Ok(response) => Ok(Verdict::Online(Box::new(response.into_inner()))),
            Err(error) if error.is_unreachable() => {
                Ok(Verdict::Offline(self.decide_offline(ticket_id, code, scan_id, scan_time)))
            }
            Err(error) => Err(error.into()),
        }
    }

    fn verify(&self, code: &str) -> Result<Uuid, ScanError> {
        let key = self.verifying_key.as_ref().ok_or(ScanError::NoManifest)?;
        let code = UnverifiedCode::parse(code).map_err(ScanError::Invalid)?;
        // Another event's ticket is signed with a key this device does not
        // hold: tell it apart before the signature check, which it would fail.
        if code.claimed_event() != self.event_id {
            return Err(ScanError::WrongEvent);
        }
        Ok(code.verify(key).map_err(ScanError::Invalid)?.ticket_id)
    }

    // A verified signature proves the ticket was issued (codes exist only for
    // paid orders), so a ticket sold after the last manifest sync is let in
    // too; only the void list and this device's own admissions turn it away.
    fn decide_offline(
        &mut self,
        ticket_id: Uuid,
        code: &str,
        scan_id: Uuid,
        scan_time: DateTime<Utc>,
    ) -> OfflineVerdict {
        if self.state.void_tickets.contains(&ticket_id) {
            return OfflineVerdict::Void;
        }
        if !self.state.admitted_offline.insert(ticket_id) {
            return OfflineVerdict::AlreadyAdmitted;
        }
        self.state.pending.push(PendingScan { scan_id, code: code.to_owned(), gate: self.gate.clone(), scan_time });
        OfflineVerdict::Admitted
    }

    /// Uploads the queued offline scans (retrying while the server is busy)
    /// and returns the server's verdict on each. Uploading the same scans
    /// twice changes nothing on the server, so a sync cut off half-way is
    /// simply run again.
    pub async fn sync(&mut self) -> Result<Vec<v1::OfflineScanResult>, ApiError> {
        let mut results = Vec::with_capacity(self.state.pending.len());
        while !self.state.pending.is_empty() {
            let batch = self.state.pending.len().min(SYNC_BATCH);
            let request = v1::SyncOfflineScansRequest {
                scans: self.state.pending[..batch]
                    .iter()
                    .map(|scan| v1::OfflineScan {
                        code: scan.code.clone(),
                        gate: scan.gate.clone(),
                        scan_time: Some(scan.scan_time.into()),
                        scan_id: scan.scan_id.to_string(),
                    })
                    .collect(),
            };
            let response = self
                .connection
                .call(self.connection.checkin(), request, |mut c, r| async move { c.sync_offline_scans(r).await })
                .await?;
            results.extend(response.results);
            self.state.pending.drain(..batch);
        }
        Ok(results)
    }

    pub async fn save(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(&self.state).map_err(std::io::Error::other)?;
        // Written beside and renamed, so a crash never leaves half a queue.
        let partial = path.with_extension("partial");
        tokio::fs::write(&partial, json).await?;
        tokio::fs::rename(&partial, path).await
    }

    pub async fn load(path: &Path) -> std::io::Result<ScannerState> {
        match tokio::fs::read(path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(ScannerState::default()),
            Err(error) => Err(error),
        }
    }
}

/// The manifest's key (URL-safe base64); `None` when absent or malformed:
/// offline decisions then wait for a manifest.
fn decode_key(encoded: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(encoded).ok()?.try_into().ok()?;
    ticket_code::verifying_key(&bytes).ok()
}

/// Offline scans per upload, well under the server's request size limit.
const SYNC_BATCH: usize = 500;

#[cfg(test)]
mod tests {
    use ticketing_domain::ticket_code::{EventKey, TicketClaims};

    use super::*;

    #[tokio::test]
    async fn another_events_ticket_is_wrong_event_and_a_forgery_of_ours_is_invalid() {
        let (ours, theirs) = (EventKey::from_seed([1; 32]), EventKey::from_seed([2; 32]));
        let (event_id, other_event) = (Uuid::now_v7(), Uuid::now_v7());
        let state =
            ScannerState { event_public_key: URL_SAFE_NO_PAD.encode(ours.public_key()), ..ScannerState::default() };
        let scanner = Scanner::new(Connection::lazy("http://127.0.0.1:9").unwrap(), event_id, "A", state);

        let foreign = theirs.sign(TicketClaims { ticket_id: Uuid::now_v7(), event_id: other_event });
        assert!(matches!(scanner.verify(&foreign), Err(ScanError::WrongEvent)));
        let forged = theirs.sign(TicketClaims { ticket_id: Uuid::now_v7(), event_id });
        assert!(matches!(scanner.verify(&forged), Err(ScanError::Invalid(ticket_code::CodeError::BadSignature))));
        let ticket_id = Uuid::now_v7();
        assert_eq!(scanner.verify(&ours.sign(TicketClaims { ticket_id, event_id })).unwrap(), ticket_id);
    }

    #[tokio::test]
    async fn codes_verify_with_the_key_of_the_latest_manifest() {
        let key = EventKey::from_seed([3; 32]);
        let event_id = Uuid::now_v7();
        let mut scanner =
            Scanner::new(Connection::lazy("http://127.0.0.1:9").unwrap(), event_id, "A", ScannerState::default());
        let ticket_id = Uuid::now_v7();
        let code = key.sign(TicketClaims { ticket_id, event_id });
        assert!(matches!(scanner.verify(&code), Err(ScanError::NoManifest)));

        scanner.apply(v1::ManifestChunk {
            event_public_key: URL_SAFE_NO_PAD.encode(key.public_key()),
            version: 1,
            ..Default::default()
        });

        assert_eq!(scanner.verify(&code).unwrap(), ticket_id, "the code's own ticket, verified by the manifest's key");
    }
}
