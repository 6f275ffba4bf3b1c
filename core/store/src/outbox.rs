//! The transactional outbox: jobs written in the same transaction as the
//! change that asks for them, done later by `ticketing worker`.
//!
//! A worker claims due rows by leasing them (pushing `next_attempt_at` past
//! the lease and counting the attempt) in a short transaction with
//! `FOR UPDATE SKIP LOCKED`, then does the work outside any transaction, then
//! records the result. A worker that dies mid-job leaves the row to come
//! back when its lease runs out: delivery is at least once.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{Int8, Timestamptz},
};
use diesel_async::RunQueryDsl;

use crate::{Conn, StoreError, schema::outbox};

ticketing_domain::vocabulary! {
    /// A job's state in the outbox.
    enum JobStatus {
        /// Due at `next_attempt_at` (or leased until then).
        Pending = "pending",
        Done = "done",
        /// Gave up after the last attempt: alerted, kept for a person.
        Dead = "dead",
    }
}

#[derive(Debug, Clone, QueryableByName)]
#[diesel(table_name = outbox)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    /// Including the attempt this claim starts.
    pub attempts: i32,
}

/// Adds a job; call it inside the transaction of the change it follows.
pub async fn enqueue(conn: &mut Conn, kind: &str, payload: serde_json::Value) -> Result<(), StoreError> {
    diesel::insert_into(outbox::table)
        .values((outbox::kind.eq(kind), outbox::payload.eq(payload)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds many jobs of one kind in one statement.
pub async fn enqueue_many(conn: &mut Conn, kind: &str, payloads: Vec<serde_json::Value>) -> Result<(), StoreError> {
    if payloads.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> =
        payloads.into_iter().map(|payload| (outbox::kind.eq(kind), outbox::payload.eq(payload))).collect();
    diesel::insert_into(outbox::table).values(rows).execute(conn).await?;
    Ok(())
}

/// Leases up to `limit` due jobs until `lease_until`. A job that has had
/// `max_attempts` is never claimed again: its last attempt reported back
/// (done or dead), or its worker died and [`dead_letter_abandoned`] buries it.
pub async fn claim(
    conn: &mut Conn,
    lease_until: DateTime<Utc>,
    limit: i64,
    max_attempts: i32,
) -> Result<Vec<Job>, StoreError> {
    Ok(diesel::sql_query(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1
          WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= now() AND attempts < $3
                        ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING id, kind, payload, attempts",
    )
    .bind::<Timestamptz, _>(lease_until)
    .bind::<Int8, _>(limit)
    .bind::<diesel::sql_types::Int4, _>(max_attempts)
    .load(conn)
    .await?)
}

/// Dead-letters jobs whose last attempt never reported back (its worker
/// died after claiming it). It reads every due pending row, so it runs on a
/// timer, not before each claim: under a backlog of thousands of jobs that
/// scan per batch cost more than the jobs.
pub async fn dead_letter_abandoned(conn: &mut Conn, max_attempts: i32) -> Result<usize, StoreError> {
    Ok(diesel::update(
        outbox::table
            .filter(outbox::status.eq(JobStatus::Pending.as_str()))
            .filter(outbox::attempts.ge(max_attempts))
            .filter(outbox::next_attempt_at.le(diesel::dsl::now)),
    )
    .set((
        outbox::status.eq(JobStatus::Dead.as_str()),
        outbox::last_error.eq("the worker stopped during the last attempt"),
        outbox::processed_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?)
}

/// The job as this worker claimed it: a result is recorded only while the
/// claim is still this worker's (same attempt, still pending), so a worker
/// that overran its lease cannot overwrite the next one's outcome.
#[diesel::dsl::auto_type]
fn claimed(id: i64, attempts: i32) -> _ {
    let pending: &'static str = JobStatus::Pending.as_str();
    outbox::table.find(id).filter(outbox::attempts.eq(attempts)).filter(outbox::status.eq(pending))
}

pub async fn complete(conn: &mut Conn, id: i64, attempts: i32) -> Result<(), StoreError> {
    diesel::update(claimed(id, attempts))
        .set((
            outbox::status.eq(JobStatus::Done.as_str()),
            outbox::processed_at.eq(diesel::dsl::now),
            outbox::last_error.eq(None::<String>),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a failed attempt: retried at `retry_at`, or dead-lettered when
/// `retry_at` is `None`.
pub async fn fail(
    conn: &mut Conn,
    id: i64,
    attempts: i32,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    let update = diesel::update(claimed(id, attempts));
    match retry_at {
        Some(at) => update.set((outbox::next_attempt_at.eq(at), outbox::last_error.eq(error))).execute(conn).await?,
        None => {
            update
                .set((
                    outbox::status.eq(JobStatus::Dead.as_str()),
                    outbox::last_error.eq(error),
                    outbox::processed_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?
        }
    };
    Ok(())
}

/// Pending rows and the age of the oldest, for the metrics.
pub async fn backlog(conn: &mut Conn) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
    Ok(outbox::table
        .filter(outbox::status.eq(JobStatus::Pending.as_str()))
        .select((diesel::dsl::count_star(), diesel::dsl::min(outbox::created_at)))
        .first(conn)
        .await?)
}
