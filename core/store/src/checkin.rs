//! Scanners, check-ins, the gate log and the offline manifest.

use chrono::{DateTime, Utc};
use diesel::{
    pg::Pg,
    prelude::*,
    query_builder::{BoxedSqlQuery, SqlQuery},
    sql_types::{Bool, Int8, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::RunQueryDsl;
use ticketing_domain::{Error, checkin::ScanResult};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::{
    Conn, Database, StoreError,
    lanes::{Batch, request_index},
    orders::TicketRow,
    schema::scanners,
    words::{self, Word},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = scanners)]
pub struct ScannerRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub name: String,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub async fn insert_scanner(
    conn: &mut Conn,
    id: Uuid,
    event_id: Uuid,
    name: &str,
    token_hash: &[u8],
    created_by: Uuid,
) -> Result<ScannerRow, StoreError> {
    Ok(diesel::insert_into(scanners::table)
        .values((
            scanners::id.eq(id),
            scanners::event_id.eq(event_id),
            scanners::name.eq(name),
            scanners::token_hash.eq(token_hash),
            scanners::created_by.eq(created_by),
        ))
        .returning(ScannerRow::as_returning())
        .get_result(conn)
        .await?)
}

/// Revokes a scanner of `event_id` (idempotent: keeps the first revocation time).
pub async fn revoke_scanner(conn: &mut Conn, event_id: Uuid, id: Uuid) -> Result<Option<ScannerRow>, StoreError> {
    Ok(diesel::update(scanners::table.filter(scanners::id.eq(id)).filter(scanners::event_id.eq(event_id)))
        .set(scanners::revoked_at.eq(diesel::dsl::sql::<Nullable<Timestamptz>>("coalesce(revoked_at, now())")))
        .returning(ScannerRow::as_returning())
        .get_result(conn)
        .await
        .optional()?)
}

/// The scanner a device credential names, if its token matches and it is not revoked.
pub async fn active_scanner(conn: &mut Conn, id: Uuid, token_hash: &[u8]) -> Result<Option<ScannerRow>, StoreError> {
    Ok(scanners::table
        .filter(scanners::id.eq(id))
        .filter(scanners::token_hash.eq(token_hash))
        .filter(scanners::revoked_at.is_null())
        .select(ScannerRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The check-in that admitted a ticket.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct FirstCheckin {
    #[diesel(sql_type = Timestamptz)]
    pub scan_time: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub gate: String,
    #[diesel(sql_type = SqlUuid)]
    pub scanner_id: Uuid,
}

/// What a scan decided, the ticket (its status after the scan), and the
/// first check-in when it was already in.
#[derive(Debug, Clone)]
pub struct Redeemed {
    pub result: ScanResult,
    pub ticket: Option<TicketRow>,
    pub first_checkin: Option<FirstCheckin>,
}

/// One scan to decide at the gate.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    pub scanner_id: Uuid,
    pub token_hash: [u8; 32],
    pub ticket_id: Uuid,
    /// The SHA-256 of the code as scanned: admitted only if it is the digest
    /// of the code issued for `ticket_id`. Never the code itself, which would
    /// be a ticket in any log of the statement's parameters.
    pub code_digest: [u8; 32],
    pub gate: String,
    pub scan_time: DateTime<Utc>,
    /// The scanner's own id for the scan: a retry with it gets the first answer.
    pub scan_id: Option<String>,
}

/// Online scans, decided by the `redeem_tickets` database function
/// (migrations `redeem_as_one_statement`, `redeem_by_issued_code`,
/// `gate_answers_without_a_nested_join`): the
/// scanners' credentials are checked, each code compared with the one issued
/// for its ticket, the tickets and their orders read, admissible tickets inserted
/// into `checkins` (whose primary key admits each ticket once), and the
/// scans logged. Scans go in batches ([`lanes`](crate::lanes)), one call
/// each, on the gate's own connections (ci/bench checkin: the per-scan
/// commit was most of the database's CPU).
pub struct Redeem;

/// `None` answers a scan whose credential matches no active scanner.
impl Batch for Redeem {
    type Request = ScanRequest;
    type Answer = Option<Redeemed>;
    /// Ticket order: concurrent batches (and offline syncs, which lock in
    /// the same order) take the check-in rows alike and cannot deadlock.
    type Key = Uuid;
    const NAME: &'static str = "redeem";
    /// The spare is for a call stuck on a row lock (an offline sync
    /// admitting the same ticket).
    const LANES: usize = 2;
    const MAX_BATCH: usize = 128;

    fn key(scan: &ScanRequest) -> Uuid {
        scan.ticket_id
    }

    async fn decide(&self, db: &Database, scans: &[ScanRequest]) -> Result<Vec<Option<Redeemed>>, StoreError> {
        redeem_batch(db, scans).await
    }
}

/// Scan i's decision at i; `None` where the credential matched no active
/// scanner (the function returns no row for it).
async fn redeem_batch(db: &Database, scans: &[ScanRequest]) -> Result<Vec<Option<Redeemed>>, StoreError> {
    let scanners: Vec<Uuid> = scans.iter().map(|s| s.scanner_id).collect();
    let hashes: Vec<&[u8]> = scans.iter().map(|s| s.token_hash.as_slice()).collect();
    let tickets: Vec<Uuid> = scans.iter().map(|s| s.ticket_id).collect();
    let code_digests: Vec<&[u8]> = scans.iter().map(|s| s.code_digest.as_slice()).collect();
    let gates: Vec<&str> = scans.iter().map(|s| s.gate.as_str()).collect();
    let times: Vec<DateTime<Utc>> = scans.iter().map(|s| s.scan_time).collect();
    let scan_ids: Vec<Option<&str>> = scans.iter().map(|s| s.scan_id.as_deref()).collect();
    let rows = db
        .gate_statement(
            "SELECT * FROM redeem_tickets($1, $2, $3, $4, $5, $6, $7)",
            &[
                (&scanners, Type::UUID_ARRAY),
                (&hashes, Type::BYTEA_ARRAY),
                (&tickets, Type::UUID_ARRAY),
                (&code_digests, Type::BYTEA_ARRAY),
                (&gates, Type::TEXT_ARRAY),
                (&times, Type::TIMESTAMPTZ_ARRAY),
                (&scan_ids, Type::TEXT_ARRAY),
            ],
        )
        .await?;
    let mut decided = vec![None; scans.len()];
    for row in rows {
        let index = request_index(row.try_get::<_, i32>("out_index")?.into(), scans.len())?;
        let ticket = match row.try_get::<_, Option<Uuid>>("out_ticket_id")? {
            Some(id) => Some(TicketRow {
                id,
                order_id: row.try_get("out_order_id")?,
                event_id: row.try_get("out_event_id")?,
                ticket_category_id: row.try_get("out_category_id")?,
                code: row.try_get("out_code")?,
                status: words::column(&row, "out_status")?,
            }),
            None => None,
        };
        let first_checkin = match row.try_get::<_, Option<DateTime<Utc>>>("out_first_scan_time")? {
            Some(scan_time) => Some(FirstCheckin {
                scan_time,
                gate: row.try_get("out_first_gate")?,
                scanner_id: row.try_get("out_first_scanner")?,
            }),
            None => None,
        };
        decided[index] = Some(Redeemed { result: words::column(&row, "out_result")?, ticket, first_checkin });
    }
    Ok(decided)
}

#[derive(QueryableByName)]
struct Verdict {
    #[diesel(sql_type = Text)]
    verdict: String,
}

/// What the ticket's state says at a scanner of `scanner_event`: the
/// `scan_verdict` function, as `redeem_tickets` asks it for online scans
/// (migration `scan_verdict`). `None`: admissible, if nobody was let in on it.
pub async fn scan_verdict(
    conn: &mut Conn,
    ticket_id: Uuid,
    scanner_event: Uuid,
) -> Result<Option<ScanResult>, StoreError> {
    let verdict: Verdict = diesel::sql_query(
        "SELECT scan_verdict(t.id, t.event_id, $2, t.status, o.status) AS verdict
           FROM (SELECT $1::uuid AS id) wanted
           LEFT JOIN tickets t ON t.id = wanted.id
           LEFT JOIN orders o ON o.id = t.order_id",
    )
    .bind::<SqlUuid, _>(ticket_id)
    .bind::<SqlUuid, _>(scanner_event)
    .get_result(conn)
    .await?;
    match verdict.verdict.as_str() {
        ADMISSIBLE => Ok(None),
        other => words::parse(other).map(Some).map_err(|e| Error::internal(e).into()),
    }
}

/// `scan_verdict`'s answer for a ticket that may be let in.
const ADMISSIBLE: &str = "ADMISSIBLE";

/// The admitting check-in with the scanner's own id for the scan.
#[derive(Debug, Clone, QueryableByName)]
pub struct Winner {
    #[diesel(embed)]
    pub checkin: FirstCheckin,
    #[diesel(sql_type = Nullable<Text>)]
    pub scan_id: Option<String>,
}

/// The admitting check-in of a ticket, locked until the transaction ends:
/// offline scans of one ticket are settled one at a time.
pub async fn lock_winner(conn: &mut Conn, ticket_id: Uuid) -> Result<Option<Winner>, StoreError> {
    Ok(diesel::sql_query("SELECT scan_time, gate, scanner_id, scan_id FROM checkins WHERE ticket_id = $1 FOR UPDATE")
        .bind::<SqlUuid, _>(ticket_id)
        .get_result(conn)
        .await
        .optional()?)
}

pub struct NewCheckin<'a> {
    pub ticket_id: Uuid,
    pub event_id: Uuid,
    pub scanner_id: Uuid,
    pub gate: &'a str,
    pub scan_time: DateTime<Utc>,
    pub scan_id: Option<&'a str>,
}

/// Admits a ticket unless someone just did; true when this one did.
pub async fn insert_checkin(conn: &mut Conn, checkin: &NewCheckin<'_>) -> Result<bool, StoreError> {
    let inserted = bind_checkin(
        "INSERT INTO checkins (ticket_id, event_id, scanner_id, gate, scan_time, scan_id)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ticket_id) DO NOTHING",
        checkin,
    )
    .execute(conn)
    .await?;
    Ok(inserted == 1)
}

/// `sql` with a check-in's fields bound as `$1` … `$6`, in `checkins`'
/// column order (ticket, event, scanner, gate, scan time, scan id).
fn bind_checkin<'a>(sql: &str, checkin: &NewCheckin<'a>) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
    diesel::sql_query(sql)
        .into_boxed()
        .bind::<SqlUuid, _>(checkin.ticket_id)
        .bind::<SqlUuid, _>(checkin.event_id)
        .bind::<SqlUuid, _>(checkin.scanner_id)
        .bind::<Text, _>(checkin.gate)
        .bind::<Timestamptz, _>(checkin.scan_time)
        .bind::<Nullable<Text>, _>(checkin.scan_id)
}

/// Makes an earlier offline scan the admitting one, and marks the scan it
/// displaces as a conflict.
pub async fn replace_winner(conn: &mut Conn, checkin: &NewCheckin<'_>, displaced: &Winner) -> Result<(), StoreError> {
    // The event is the ticket's either way ($2 keeps the binding shared).
    bind_checkin(
        "UPDATE checkins SET scanner_id = $3, gate = $4, scan_time = $5, scan_id = $6
          WHERE ticket_id = $1 AND event_id = $2",
        checkin,
    )
    .execute(conn)
    .await?;
    mark_conflict(conn, checkin.ticket_id, displaced.checkin.scanner_id, displaced.checkin.scan_time).await
}

/// Flags the scan a scanner made of a ticket at `scan_time` as a conflict.
pub async fn mark_conflict(
    conn: &mut Conn,
    ticket_id: Uuid,
    scanner_id: Uuid,
    scan_time: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::sql_query("UPDATE scans SET conflict = true WHERE ticket_id = $1 AND scanner_id = $2 AND scan_time = $3")
        .bind::<SqlUuid, _>(ticket_id)
        .bind::<SqlUuid, _>(scanner_id)
        .bind::<Timestamptz, _>(scan_time)
        .execute(conn)
        .await?;
    Ok(())
}

pub struct NewScan<'a> {
    pub event_id: Uuid,
    pub ticket_id: Uuid,
    pub scanner_id: Uuid,
    pub gate: &'a str,
    pub result: ScanResult,
    pub scan_time: DateTime<Utc>,
    pub scan_id: Option<&'a str>,
    pub conflict: bool,
}

/// Logs a scan; false when an offline scan with this id was already logged
/// (a retried upload), in which case nothing is written.
pub async fn record_scan(conn: &mut Conn, scan: &NewScan<'_>) -> Result<bool, StoreError> {
    let written = diesel::sql_query(
        "INSERT INTO scans (event_id, ticket_id, scanner_id, gate, result, scan_time, scan_id, conflict)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (scanner_id, scan_id) WHERE scan_id IS NOT NULL DO NOTHING",
    )
    .bind::<SqlUuid, _>(scan.event_id)
    .bind::<SqlUuid, _>(scan.ticket_id)
    .bind::<SqlUuid, _>(scan.scanner_id)
    .bind::<Text, _>(scan.gate)
    .bind::<Text, _>(scan.result.as_str())
    .bind::<Timestamptz, _>(scan.scan_time)
    .bind::<Nullable<Text>, _>(scan.scan_id)
    .bind::<Bool, _>(scan.conflict)
    .execute(conn)
    .await?;
    Ok(written == 1)
}

/// An offline scan logged before: its ticket and result.
#[derive(Debug, Clone, QueryableByName)]
pub struct LoggedScan {
    #[diesel(sql_type = SqlUuid)]
    pub ticket_id: Uuid,
    #[diesel(sql_type = Text, deserialize_as = Word<ScanResult>)]
    pub result: ScanResult,
    #[diesel(sql_type = Bool)]
    pub conflict: bool,
}

pub async fn find_offline_scan(
    conn: &mut Conn,
    scanner_id: Uuid,
    scan_id: &str,
) -> Result<Option<LoggedScan>, StoreError> {
    Ok(diesel::sql_query("SELECT ticket_id, result, conflict FROM scans WHERE scanner_id = $1 AND scan_id = $2")
        .bind::<SqlUuid, _>(scanner_id)
        .bind::<Text, _>(scan_id)
        .get_result(conn)
        .await
        .optional()?)
}

/// The manifest's upper bound: every transaction below it has finished, so
/// no ticket change below it can still appear.
pub async fn manifest_horizon(conn: &mut Conn) -> Result<i64, StoreError> {
    #[derive(QueryableByName)]
    struct Horizon {
        #[diesel(sql_type = Int8)]
        horizon: i64,
    }
    let row: Horizon = diesel::sql_query("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon")
        .get_result(conn)
        .await?;
    Ok(row.horizon)
}

#[derive(Debug, Clone, QueryableByName)]
pub struct ManifestEntry {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Bool)]
    pub valid: bool,
    #[diesel(sql_type = Int8)]
    pub version: i64,
}

/// Tickets of an event changed in `[since, until)`, after `(after_version,
/// after_id)`, in (version, id) order.
pub async fn manifest_page(
    conn: &mut Conn,
    event_id: Uuid,
    since: i64,
    until: i64,
    after: (i64, Uuid),
    limit: i64,
) -> Result<Vec<ManifestEntry>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT t.id, (t.status <> 'void' AND o.status = 'paid') AS valid, t.version
           FROM tickets t JOIN orders o ON o.id = t.order_id
          WHERE t.event_id = $1 AND t.version >= $2 AND t.version < $3 AND (t.version, t.id) > ($4, $5)
          ORDER BY t.version, t.id
          LIMIT $6",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<Int8, _>(since)
    .bind::<Int8, _>(until)
    .bind::<Int8, _>(after.0)
    .bind::<SqlUuid, _>(after.1)
    .bind::<Int8, _>(limit)
    .load(conn)
    .await?)
}

#[derive(Debug, Clone, QueryableByName)]
pub struct GateCount {
    #[diesel(sql_type = Text)]
    pub gate: String,
    #[diesel(sql_type = Text)]
    pub result: String,
    #[diesel(sql_type = Int8)]
    pub count: i64,
    #[diesel(sql_type = Int8)]
    pub conflicts: i64,
}

/// The gate dashboard: scans by gate and result (index `scans_by_event`).
pub async fn gate_counts(conn: &mut Conn, event_id: Uuid) -> Result<Vec<GateCount>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT gate, result, count(*) AS count, count(*) FILTER (WHERE conflict) AS conflicts
           FROM scans WHERE event_id = $1 GROUP BY gate, result ORDER BY gate, result",
    )
    .bind::<SqlUuid, _>(event_id)
    .load(conn)
    .await?)
}

/// Tickets checked in and issued (not void) for an event.
pub async fn ticket_totals(conn: &mut Conn, event_id: Uuid) -> Result<(i64, i64), StoreError> {
    #[derive(QueryableByName)]
    struct Totals {
        #[diesel(sql_type = Int8)]
        checked_in: i64,
        #[diesel(sql_type = Int8)]
        issued: i64,
    }
    let totals: Totals = diesel::sql_query(
        "SELECT (SELECT count(*) FROM checkins WHERE event_id = $1) AS checked_in,
                (SELECT count(*) FROM tickets WHERE event_id = $1 AND status <> 'void') AS issued",
    )
    .bind::<SqlUuid, _>(event_id)
    .get_result(conn)
    .await?;
    Ok((totals.checked_in, totals.issued))
}

/// The sealed key that signs an event's ticket codes, with which the gate
/// checks them. A single statement on the gate's own connections: the
/// gate's path never waits behind a sale's orders.
pub async fn event_sealed_key(db: &Database, event_id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
    let rows = db
        .gate_statement(
            "SELECT sealed_private_key FROM event_signing_keys WHERE event_id = $1",
            &[(&event_id, Type::UUID)],
        )
        .await?;
    rows.into_iter().next().map(|row| row.try_get("sealed_private_key").map_err(StoreError::from)).transpose()
}
