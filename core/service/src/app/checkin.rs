//! Check-in at the gates. An online scan is decided in this order: the
//! code's form (no database work for a malformed one), then one statement
//! that checks the scanner, compares the code with the one issued for its
//! ticket, admits it at most once and logs the scan. Offline scans are
//! settled later, their signatures checked here: the earliest admission
//! wins, the others are conflicts the organizer sees.

use std::{sync::Arc, time::Duration};
use ticketing_domain::Reason;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt, stream};
use rand::RngCore;
use scoped_futures::ScopedFutureExt;
use sha2::{Digest, Sha256};
use ticketing_domain::{
    Error,
    audit::AuditAction,
    checkin::{self, DeviceCredential, ScanResult},
    error::Violations,
    identity::Principal,
    ticket_code::{self, EventKey, UnverifiedCode},
};
use ticketing_store::{
    Conn, StoreError,
    audit::{self, NewAuditEntry},
    checkin::{self as store, FirstCheckin, GateCount, NewCheckin, NewScan, ScanRequest, ScannerRow, Winner},
    orders::TicketRow,
};
use uuid::Uuid;

use crate::{
    AppState,
    app::{
        catalog::{Access, as_event_manager},
        limits::{self, Limit},
        tickets,
    },
};

/// What a scan decided, as the scanner is told.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    pub result: ScanResult,
    pub ticket: Option<TicketRow>,
    pub first_checkin: Option<FirstCheckin>,
    /// An offline admission of a ticket admitted elsewhere too.
    pub conflict: bool,
}

impl ScanOutcome {
    fn bare(result: ScanResult) -> ScanOutcome {
        ScanOutcome { result, ticket: None, first_checkin: None, conflict: false }
    }
}

/// Events' signing keys, opened, for checking offline scans' codes (see
/// `UnverifiedCode::verify_by_signing`). Keys never change, so found keys
/// are kept; an event without a key is remembered briefly, so a flood of
/// codes naming random events costs no database work after the first.
/// Lookups of one event coalesce: when the network comes back and a gate's
/// scanners upload at once, their syncs wait on one query instead of each
/// sending its own.
#[derive(Clone)]
pub struct GateKeys {
    keys: moka::future::Cache<Uuid, Option<Arc<EventKey>>>,
}

/// How long a found key (for ever) and an event without one are kept.
struct KeyExpiry;

impl moka::Expiry<Uuid, Option<Arc<EventKey>>> for KeyExpiry {
    fn expire_after_create(
        &self,
        _event_id: &Uuid,
        key: &Option<Arc<EventKey>>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        key.is_none().then_some(Duration::from_secs(5))
    }
}

impl Default for GateKeys {
    fn default() -> Self {
        GateKeys { keys: moka::future::Cache::builder().max_capacity(100_000).expire_after(KeyExpiry).build() }
    }
}

impl GateKeys {
    async fn get(&self, state: &AppState, event_id: Uuid) -> Result<Option<Arc<EventKey>>, Error> {
        self.keys
            .try_get_with(event_id, async {
                // The primary: a key made a moment ago may not be on the replica yet.
                let Some(sealed) = store::event_sealed_key(&state.db, event_id).await? else { return Ok(None) };
                // An error is not cached: every scan of the event fails loudly until the configuration is mended.
                let key = tickets::open_event_key(&state.config.ticket_key_encryption_key, event_id, &sealed)?;
                Ok::<_, Error>(Some(Arc::new(key)))
            })
            .await
            .map_err(|error: Arc<Error>| error.reissue())
    }
}

/// The claims of a code signed by its event's key; `None` for anything else.
async fn verified(state: &AppState, code: &str) -> Result<Option<ticket_code::TicketClaims>, Error> {
    let Ok(code) = UnverifiedCode::parse(code) else { return Ok(None) };
    let Some(key) = state.gate_keys.get(state, code.claimed_event()).await? else { return Ok(None) };
    Ok(code.verify_by_signing(&key).ok())
}

fn count_scan(mode: &'static str, result: ScanResult) {
    metrics::counter!("ticketing_checkins_total", "mode" => mode, "result" => result.as_str()).increment(1);
}

const SCAN_WINDOW: Duration = Duration::from_secs(60);
/// How far ahead a scanner's clock may run.
const MAX_CLOCK_AHEAD: chrono::Duration = chrono::Duration::minutes(5);

/// Per device token, shared by the replicas: a stuck or stolen scanner
/// cannot flood the gate's database. Keyed by the token's hash, not the
/// scanner id it names (checked only later, with the scan): forged tokens
/// naming a real scanner use up their own budget, never the gate's. Taken
/// from Redis in blocks: a busy gate's scanners each ask Redis about once
/// a second instead of once a scan.
async fn check_scan_rate(state: &AppState, device: &DeviceCredential) -> Result<(), Error> {
    let limit = Limit { name: "scans_scanner", quota: state.config.scan_limit_per_scanner, window: SCAN_WINDOW };
    limits::check_leased(state, limit, &URL_SAFE_NO_PAD.encode(&device.token_hash[..16])).await
}

/// A new scanner device for an event (its organizer or an admin). The token
/// is returned once; only its hash is kept.
#[tracing::instrument(name = "checkin.create_scanner", skip_all)]
pub async fn create_scanner(
    state: &AppState,
    caller: &Principal,
    event_id: Uuid,
    name: &str,
) -> Result<(ScannerRow, String), Error> {
    let name = name.trim().to_owned();
    let mut violations = Violations::default();
    violations.check(!name.is_empty() && name.chars().count() <= 100, "name", "must be 1 to 100 characters");
    violations.check_plain_text("name", &name);
    violations.into_result()?;
    let scanner_id = Uuid::now_v7();
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let (token, token_hash) = checkin::issue_device_token(scanner_id, secret);
    let (created_by, actor) = (caller.user_id, caller.clone());
    let scanner = as_event_manager(state, caller, event_id, Access::Write, move |conn| {
        async move {
            let scanner = store::insert_scanner(conn, scanner_id, event_id, &name, &token_hash, created_by).await?;
            record_scanner_change(conn, &actor, AuditAction::ScannerCreated, &scanner).await?;
            Ok(scanner)
        }
        .scope_boxed()
    })
    .await?;
    Ok((scanner, token))
}

#[tracing::instrument(name = "checkin.revoke_scanner", skip_all)]
pub async fn revoke_scanner(
    state: &AppState,
    caller: &Principal,
    event_id: Uuid,
    scanner_id: Uuid,
) -> Result<ScannerRow, Error> {
    let actor = caller.clone();
    as_event_manager(state, caller, event_id, Access::Write, move |conn| {
        async move {
            let scanner = store::revoke_scanner(conn, event_id, scanner_id).await?;
            let scanner = scanner.ok_or_else(|| Error::not_found("scanner"))?;
            record_scanner_change(conn, &actor, AuditAction::ScannerRevoked, &scanner).await?;
            Ok(scanner)
        }
        .scope_boxed()
    })
    .await
}

/// A scanner made or revoked, in the audit trail (never its token).
async fn record_scanner_change(
    conn: &mut Conn,
    actor: &Principal,
    action: AuditAction,
    scanner: &ScannerRow,
) -> Result<(), StoreError> {
    let state = serde_json::json!({ "name": scanner.name, "revoked": scanner.revoked_at.is_some() });
    audit::record(
        conn,
        NewAuditEntry {
            event_id: scanner.event_id,
            actor_id: Some(actor.user_id),
            api_key_id: actor.api_key,
            action,
            subject_id: &scanner.id.to_string(),
            before: None,
            after: Some(state),
        },
    )
    .await
}

/// The device's scanner, while it is active.
async fn active_scanner(conn: &mut Conn, device: &DeviceCredential) -> Result<ScannerRow, StoreError> {
    let scanner = store::active_scanner(conn, device.scanner_id, &device.token_hash).await?;
    scanner.ok_or_else(|| revoked_or_unknown().into())
}

fn revoked_or_unknown() -> Error {
    Error::unauthenticated("this scanner is unknown or was revoked").with_reason(Reason::InvalidToken)
}

/// One scan at the gate, online: one database round trip for a well-formed code.
#[tracing::instrument(name = "checkin.redeem", skip_all)]
pub async fn redeem(
    state: &AppState,
    device: &DeviceCredential,
    code: &str,
    gate: &str,
    scan_time: Option<DateTime<Utc>>,
    scan_id: Option<&str>,
) -> Result<ScanOutcome, Error> {
    let mut violations = Violations::default();
    checkin::validate_gate("gate", gate, &mut violations);
    if let Some(scan_id) = scan_id {
        checkin::validate_scan_id("scanId", scan_id, &mut violations);
    }
    violations.into_result()?;
    check_scan_rate(state, device).await?;
    // Well-formed is all that is checked here: the database compares the
    // whole code with the one issued for the ticket it names (migration
    // `redeem_by_issued_code`), instead of this replica re-signing it.
    let Ok(parsed) = UnverifiedCode::parse(code) else {
        count_scan("online", ScanResult::Invalid);
        return Ok(ScanOutcome::bare(ScanResult::Invalid));
    };
    let scan_time = scan_time.unwrap_or_else(Utc::now);
    let scan = ScanRequest {
        scanner_id: device.scanner_id,
        token_hash: device.token_hash,
        ticket_id: parsed.claimed_ticket(),
        code_digest: Sha256::digest(code.as_bytes()).into(),
        gate: gate.to_owned(),
        scan_time,
        scan_id: scan_id.map(str::to_owned),
    };
    let redeemed = state.redeem_queue.decide(scan).await?.ok_or_else(revoked_or_unknown)?;
    let result = redeemed.result;
    let ticket = match result {
        // Another event's ticket is not this scanner's to show.
        ScanResult::WrongEvent | ScanResult::Invalid => None,
        _ => redeemed.ticket,
    };
    count_scan("online", result);
    Ok(ScanOutcome { result, ticket, first_checkin: redeemed.first_checkin, conflict: false })
}

pub struct OfflineScan {
    pub code: String,
    pub gate: String,
    pub scan_time: Option<DateTime<Utc>>,
    pub scan_id: String,
}

/// Scans made offline, uploaded later. Each gets a result; the earliest
/// admission of a ticket wins, a later one is a conflict; a scan uploaded
/// again (same `scan_id`) changes nothing and reports the current state.
#[tracing::instrument(name = "checkin.sync_offline_scans", skip_all)]
pub async fn sync_offline_scans(
    state: &AppState,
    device: &DeviceCredential,
    scans: Vec<OfflineScan>,
) -> Result<Vec<(String, ScanOutcome)>, Error> {
    checkin::validate_sync_size(scans.len())?;
    let mut violations = Violations::default();
    for (i, scan) in scans.iter().enumerate() {
        checkin::validate_gate(&format!("scans[{i}].gate"), &scan.gate, &mut violations);
        checkin::validate_scan_id(&format!("scans[{i}].scanId"), &scan.scan_id, &mut violations);
        violations.check(scan.scan_time.is_some(), &format!("scans[{i}].scanTime"), "is required for offline scans");
        violations.check(
            scan.scan_time.is_none_or(|t| t <= Utc::now() + MAX_CLOCK_AHEAD),
            &format!("scans[{i}].scanTime"),
            "is in the future",
        );
    }
    violations.into_result()?;
    check_scan_rate(state, device).await?;

    let mut decided = Vec::with_capacity(scans.len());
    for scan in scans {
        let claims = verified(state, &scan.code).await?;
        decided.push((scan, claims));
    }
    // Ticket order: concurrent uploads lock check-ins alike.
    decided.sort_by_key(|(_, claims)| claims.map(|c| c.ticket_id));
    let device = device.clone();
    let outcomes = state
        .db
        .write(|conn| {
            async move {
                let scanner = active_scanner(conn, &device).await?;
                let mut outcomes = Vec::with_capacity(decided.len());
                for (scan, claims) in &decided {
                    let outcome = match claims {
                        None => ScanOutcome::bare(ScanResult::Invalid),
                        Some(claims) => settle_offline(conn, &scanner, scan, claims.ticket_id).await?,
                    };
                    outcomes.push((scan.scan_id.clone(), outcome));
                }
                Ok(outcomes)
            }
            .scope_boxed()
        })
        .await?;
    for (_, outcome) in &outcomes {
        count_scan("offline", outcome.result);
    }
    Ok(outcomes)
}

async fn settle_offline(
    conn: &mut Conn,
    scanner: &ScannerRow,
    scan: &OfflineScan,
    ticket_id: Uuid,
) -> Result<ScanOutcome, StoreError> {
    // The earliest scan wins, so a scanner's clock must not reach back before
    // the scanner existed: a backdated clock cannot beat honest gates by more.
    let scan_time = scan.scan_time.expect("validated").max(scanner.created_at);
    if let Some(logged) = store::find_offline_scan(conn, scanner.id, &scan.scan_id).await? {
        return replayed(conn, scanner, scan, logged).await;
    }
    let Some(result) = store::scan_verdict(conn, ticket_id, scanner.event_id).await? else {
        return admit_offline(conn, scanner, scan, ticket_id, scan_time).await;
    };
    record(conn, scanner, scan, (ticket_id, scan_time), result, false).await?;
    Ok(ScanOutcome::bare(result))
}

/// The scanner let the holder in while offline: the earliest such admission
/// (or online check-in) of the ticket wins.
async fn admit_offline(
    conn: &mut Conn,
    scanner: &ScannerRow,
    scan: &OfflineScan,
    ticket_id: Uuid,
    scan_time: DateTime<Utc>,
) -> Result<ScanOutcome, StoreError> {
    let checkin = NewCheckin {
        ticket_id,
        event_id: scanner.event_id,
        scanner_id: scanner.id,
        gate: &scan.gate,
        scan_time,
        scan_id: Some(&scan.scan_id),
    };
    let mut winner = store::lock_winner(conn, ticket_id).await?;
    if winner.is_none() {
        if store::insert_checkin(conn, &checkin).await? {
            record(conn, scanner, scan, (ticket_id, scan_time), ScanResult::Accepted, false).await?;
            return Ok(ScanOutcome::bare(ScanResult::Accepted));
        }
        // Admitted by someone else a moment ago.
        winner = store::lock_winner(conn, ticket_id).await?;
    }
    let winner = winner.ok_or_else(|| Error::internal("check-in vanished"))?;
    if scan_time < winner.checkin.scan_time {
        store::replace_winner(conn, &checkin, &winner).await?;
        record(conn, scanner, scan, (ticket_id, scan_time), ScanResult::Accepted, true).await?;
        return Ok(ScanOutcome { result: ScanResult::Accepted, ticket: None, first_checkin: None, conflict: true });
    }
    record(conn, scanner, scan, (ticket_id, scan_time), ScanResult::AlreadyCheckedIn, true).await?;
    Ok(ScanOutcome {
        result: ScanResult::AlreadyCheckedIn,
        ticket: None,
        first_checkin: Some(winner.checkin),
        conflict: true,
    })
}

async fn record(
    conn: &mut Conn,
    scanner: &ScannerRow,
    scan: &OfflineScan,
    (ticket_id, scan_time): (Uuid, DateTime<Utc>),
    result: ScanResult,
    conflict: bool,
) -> Result<(), StoreError> {
    let row = NewScan {
        event_id: scanner.event_id,
        ticket_id,
        scanner_id: scanner.id,
        gate: &scan.gate,
        result,
        scan_time,
        scan_id: Some(&scan.scan_id),
        conflict,
    };
    store::record_scan(conn, &row).await?;
    Ok(())
}

/// A scan uploaded before: nothing changes; the answer is today's truth
/// (an admission may since have lost to an earlier one).
async fn replayed(
    conn: &mut Conn,
    scanner: &ScannerRow,
    scan: &OfflineScan,
    logged: store::LoggedScan,
) -> Result<ScanOutcome, StoreError> {
    let result = logged.result;
    if !matches!(result, ScanResult::Accepted | ScanResult::AlreadyCheckedIn) {
        return Ok(ScanOutcome::bare(result));
    }
    let winner: Option<Winner> = store::lock_winner(conn, logged.ticket_id).await?;
    let won = winner
        .as_ref()
        .is_some_and(|w| w.checkin.scanner_id == scanner.id && w.scan_id.as_deref() == Some(&scan.scan_id));
    Ok(if won {
        ScanOutcome { result: ScanResult::Accepted, ticket: None, first_checkin: None, conflict: logged.conflict }
    } else {
        ScanOutcome {
            result: ScanResult::AlreadyCheckedIn,
            ticket: None,
            first_checkin: winner.map(|w| w.checkin),
            conflict: logged.conflict,
        }
    })
}

/// One chunk of the offline manifest.
#[derive(Debug, Clone, Default)]
pub struct ManifestPage {
    pub public_key: String,
    pub valid: Vec<Uuid>,
    pub void: Vec<Uuid>,
    pub version: i64,
    pub cursor: String,
}

const DEFAULT_MANIFEST_PAGE: i64 = 1_000;
const MAX_MANIFEST_PAGE: i64 = 10_000;

/// Where a manifest stream stands: the version it brings the scanner to, and
/// the last ticket sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ManifestCursor {
    since: i64,
    until: i64,
    after: (i64, Uuid),
}

impl ManifestCursor {
    fn encode(self) -> String {
        let text = format!("{}.{}.{}.{}", self.since, self.until, self.after.0, self.after.1);
        URL_SAFE_NO_PAD.encode(text)
    }

    fn decode(cursor: &str) -> Result<ManifestCursor, Error> {
        let invalid = || Error::invalid_field("cursor", "is not a cursor this service issued");
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?).map_err(|_| invalid())?;
        let parts: Vec<&str> = text.split('.').collect();
        let [since, until, version, id] = parts[..] else { return Err(invalid()) };
        Ok(ManifestCursor {
            since: since.parse().map_err(|_| invalid())?,
            until: until.parse().map_err(|_| invalid())?,
            after: (version.parse().map_err(|_| invalid())?, id.parse().map_err(|_| invalid())?),
        })
    }
}

/// The manifest of the scanner's event, in pages: every ticket changed at
/// or after `since_version`, by its latest state, up to a horizon below
/// which no transaction is still running.
#[tracing::instrument(name = "checkin.stream_manifest", skip_all)]
pub async fn stream_manifest(
    state: &AppState,
    device: &DeviceCredential,
    event_id: Uuid,
    cursor: &str,
    since_version: i64,
    page_size: i32,
) -> Result<impl Stream<Item = Result<ManifestPage, Error>> + Send + 'static, Error> {
    let limit = match i64::from(page_size) {
        0 => DEFAULT_MANIFEST_PAGE,
        n if (1..=MAX_MANIFEST_PAGE).contains(&n) => n,
        _ => return Err(Error::invalid_field("pageSize", "must be between 0 and 10000")),
    };
    if since_version < 0 {
        return Err(Error::invalid_field("sinceVersion", "must not be negative"));
    }
    let resume = (!cursor.is_empty()).then(|| ManifestCursor::decode(cursor)).transpose()?;
    let device = device.clone();
    let master = state.config.ticket_key_encryption_key.clone();
    let (public_key, start) = state
        .db
        .write(|conn| {
            async move {
                let scanner = active_scanner(conn, &device).await?;
                if scanner.event_id != event_id {
                    return Err(Error::permission_denied("this scanner belongs to another event").into());
                }
                let key = tickets::event_key(conn, &master, event_id).await?.public_key();
                let start = match resume {
                    Some(cursor) => cursor,
                    None => ManifestCursor {
                        since: since_version,
                        until: store::manifest_horizon(conn).await?,
                        after: (i64::MIN, Uuid::nil()),
                    },
                };
                Ok((URL_SAFE_NO_PAD.encode(key), start))
            }
            .scope_boxed()
        })
        .await?;
    let state = Arc::new(state.clone());
    Ok(stream::unfold(Some(start), move |position| {
        let (state, public_key) = (state.clone(), public_key.clone());
        async move {
            let position = position?;
            let page = state
                .db
                .read(|conn| {
                    store::manifest_page(conn, event_id, position.since, position.until, position.after, limit)
                        .scope_boxed()
                })
                .await;
            let entries = match page {
                Ok(entries) => entries,
                Err(error) => return Some((Err(error), None)),
            };
            let next = (entries.len() as i64 == limit)
                .then(|| entries.last().map(|e| ManifestCursor { after: (e.version, e.id), ..position }))
                .flatten();
            let (valid, void): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.valid);
            let page = ManifestPage {
                public_key,
                valid: valid.into_iter().map(|e| e.id).collect(),
                void: void.into_iter().map(|e| e.id).collect(),
                version: position.until,
                cursor: next.map(ManifestCursor::encode).unwrap_or_default(),
            };
            Some((Ok(page), next))
        }
    })
    .boxed())
}

pub struct CheckinStats {
    pub counts: Vec<GateCount>,
    pub checked_in: i64,
    pub issued: i64,
}

/// The gate dashboard, from the replica (seconds behind is fine here).
#[tracing::instrument(name = "checkin.stats", skip_all)]
pub async fn checkin_stats(state: &AppState, caller: &Principal, event_id: Uuid) -> Result<CheckinStats, Error> {
    as_event_manager(state, caller, event_id, Access::Replica, move |conn| {
        async move {
            let counts = store::gate_counts(conn, event_id).await?;
            let (checked_in, issued) = store::ticket_totals(conn, event_id).await?;
            Ok(CheckinStats { counts, checked_in, issued })
        }
        .scope_boxed()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_cursors_round_trip_and_reject_garbage() {
        let cursor = ManifestCursor { since: 5, until: 900, after: (17, Uuid::now_v7()) };
        assert_eq!(ManifestCursor::decode(&cursor.encode()).unwrap(), cursor);
        for garbage in ["", "!!!", &URL_SAFE_NO_PAD.encode("1.2.3"), &URL_SAFE_NO_PAD.encode("a.b.c.d")] {
            assert!(ManifestCursor::decode(garbage).is_err(), "{garbage}");
        }
    }
}
