//! Refunds, the tickets each one voids, and what an event's cancellation has
//! refunded so far.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{Array, Bool, Int8, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::RunQueryDsl;
use ticketing_domain::{
    orders::TicketStatus,
    refunds::{RefundCause, RefundStatus},
};
use uuid::Uuid;

use crate::{Conn, StoreError, schema::orders, words::Word};

/// A refund as stored. Read with SQL: the table has more columns than
/// diesel's default `table!` size.
#[derive(Debug, Clone, QueryableByName)]
pub struct RefundRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub order_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub event_id: Uuid,
    #[diesel(sql_type = Text, deserialize_as = Word<RefundCause>)]
    pub cause: RefundCause,
    #[diesel(sql_type = Array<SqlUuid>)]
    pub ticket_ids: Vec<Uuid>,
    #[diesel(sql_type = Text)]
    pub currency_code: String,
    #[diesel(sql_type = Int8)]
    pub amount_units: i64,
    #[diesel(sql_type = Text, deserialize_as = Word<RefundStatus>)]
    pub status: RefundStatus,
    #[diesel(sql_type = Text)]
    pub reason: String,
    #[diesel(sql_type = Bool)]
    pub return_to_sale: bool,
    #[diesel(sql_type = Text)]
    pub refund_key: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub payment_type: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub requested_by: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    pub idempotency_key: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub request_digest: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub completed_by: Option<Uuid>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub completed_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    pub manual_reference: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
}

/// Every column of a [`RefundRow`], for `SELECT` and `RETURNING`.
const COLUMNS: &str = "id, order_id, event_id, cause, ticket_ids, currency_code, amount_units, status, reason, \
                       return_to_sale, refund_key, payment_type, requested_by, idempotency_key, request_digest, \
                       completed_by, completed_at, manual_reference, last_error, created_at, updated_at";

/// A refund as the use case decided it.
pub struct NewRefund<'a> {
    pub id: Uuid,
    pub order_id: Uuid,
    pub event_id: Uuid,
    pub cause: RefundCause,
    pub ticket_ids: &'a [Uuid],
    pub currency_code: &'a str,
    pub amount_units: i64,
    pub status: RefundStatus,
    pub reason: &'a str,
    pub return_to_sale: bool,
    pub payment_type: Option<&'a str>,
    pub requested_by: Option<Uuid>,
    pub idempotency_key: Option<&'a str>,
    pub request_digest: Option<&'a str>,
}

/// Writes the refund and adds its amount to the order's refunded total (the
/// database refuses a total past what was paid); `None`, with nothing
/// written, when a unique index already holds it (the same idempotency key,
/// or the order's cancellation refund).
pub async fn insert_refund(conn: &mut Conn, refund: NewRefund<'_>) -> Result<Option<RefundRow>, StoreError> {
    let sql = format!(
        "INSERT INTO refunds (id, order_id, event_id, cause, ticket_ids, currency_code, amount_units, status, reason,
                              return_to_sale, refund_key, payment_type, requested_by, idempotency_key, request_digest)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $1::text, $11, $12, $13, $14)
         ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
    );
    let row: Option<RefundRow> = diesel::sql_query(sql)
        .bind::<SqlUuid, _>(refund.id)
        .bind::<SqlUuid, _>(refund.order_id)
        .bind::<SqlUuid, _>(refund.event_id)
        .bind::<Text, _>(refund.cause.as_str())
        .bind::<Array<SqlUuid>, _>(refund.ticket_ids)
        .bind::<Text, _>(refund.currency_code)
        .bind::<Int8, _>(refund.amount_units)
        .bind::<Text, _>(refund.status.as_str())
        .bind::<Text, _>(refund.reason)
        .bind::<Bool, _>(refund.return_to_sale)
        .bind::<Nullable<Text>, _>(refund.payment_type)
        .bind::<Nullable<SqlUuid>, _>(refund.requested_by)
        .bind::<Nullable<Text>, _>(refund.idempotency_key)
        .bind::<Nullable<Text>, _>(refund.request_digest)
        .get_result(conn)
        .await
        .optional()?;
    if let Some(row) = &row {
        diesel::update(orders::table.find(row.order_id))
            .set(orders::refunded_units.eq(orders::refunded_units + row.amount_units))
            .execute(conn)
            .await?;
    }
    Ok(row)
}

pub async fn find_refund(conn: &mut Conn, id: Uuid) -> Result<Option<RefundRow>, StoreError> {
    Ok(diesel::sql_query(format!("SELECT {COLUMNS} FROM refunds WHERE id = $1"))
        .bind::<SqlUuid, _>(id)
        .get_result(conn)
        .await
        .optional()?)
}

pub async fn lock_refund(conn: &mut Conn, id: Uuid) -> Result<Option<RefundRow>, StoreError> {
    Ok(diesel::sql_query(format!("SELECT {COLUMNS} FROM refunds WHERE id = $1 FOR UPDATE"))
        .bind::<SqlUuid, _>(id)
        .get_result(conn)
        .await
        .optional()?)
}

pub async fn find_by_idempotency_key(
    conn: &mut Conn,
    requested_by: Uuid,
    key: &str,
) -> Result<Option<RefundRow>, StoreError> {
    Ok(diesel::sql_query(format!("SELECT {COLUMNS} FROM refunds WHERE requested_by = $1 AND idempotency_key = $2"))
        .bind::<SqlUuid, _>(requested_by)
        .bind::<Text, _>(key)
        .get_result(conn)
        .await
        .optional()?)
}

/// One ticket of an order, and whether a refund has it already.
#[derive(Debug, Clone, QueryableByName)]
pub struct RefundableTicket {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub ticket_category_id: Uuid,
    #[diesel(sql_type = Bool)]
    pub refunded: bool,
}

pub async fn tickets_for_refund(conn: &mut Conn, order_id: Uuid) -> Result<Vec<RefundableTicket>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT t.id, t.ticket_category_id, rt.ticket_id IS NOT NULL AS refunded
           FROM tickets t LEFT JOIN refunded_tickets rt ON rt.ticket_id = t.id
          WHERE t.order_id = $1 ORDER BY t.id",
    )
    .bind::<SqlUuid, _>(order_id)
    .load(conn)
    .await?)
}

/// Records the refund's tickets (each refunded once: the primary key) and
/// voids them, with a new version so the next manifest delta carries them.
pub async fn void_refunded_tickets(conn: &mut Conn, refund_id: Uuid, ticket_ids: &[Uuid]) -> Result<(), StoreError> {
    diesel::sql_query("INSERT INTO refunded_tickets (ticket_id, refund_id) SELECT unnest($1::uuid[]), $2")
        .bind::<Array<SqlUuid>, _>(ticket_ids)
        .bind::<SqlUuid, _>(refund_id)
        .execute(conn)
        .await?;
    diesel::sql_query(
        "UPDATE tickets SET status = $2, version = pg_current_xact_id()::text::bigint WHERE id = ANY($1)",
    )
    .bind::<Array<SqlUuid>, _>(ticket_ids)
    .bind::<Text, _>(TicketStatus::Void.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves a refund from one of `from` to `to`; `None` when it was not in one
/// of them (another attempt got there first).
pub async fn move_refund(
    conn: &mut Conn,
    id: Uuid,
    from: &[RefundStatus],
    to: RefundStatus,
    last_error: Option<&str>,
) -> Result<Option<RefundRow>, StoreError> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    Ok(diesel::sql_query(format!(
        "UPDATE refunds SET status = $3, last_error = $4, updated_at = now()
          WHERE id = $1 AND status = ANY($2) RETURNING {COLUMNS}"
    ))
    .bind::<SqlUuid, _>(id)
    .bind::<Array<Text>, _>(from)
    .bind::<Text, _>(to.as_str())
    .bind::<Nullable<Text>, _>(last_error)
    .get_result(conn)
    .await
    .optional()?)
}

/// Closes a refund a person paid: who, and the bank's reference.
pub async fn complete_manually(conn: &mut Conn, id: Uuid, by: Uuid, reference: &str) -> Result<RefundRow, StoreError> {
    Ok(diesel::sql_query(format!(
        "UPDATE refunds SET status = $2, completed_by = $3, completed_at = now(), manual_reference = $4,
                            updated_at = now()
          WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(RefundStatus::Succeeded.as_str())
    .bind::<SqlUuid, _>(by)
    .bind::<Text, _>(reference)
    .get_result(conn)
    .await?)
}

/// An event's refunds, oldest first, after `after`, of one status or all.
pub async fn list_refunds(
    conn: &mut Conn,
    event_id: Uuid,
    status: Option<RefundStatus>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<RefundRow>, StoreError> {
    Ok(diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM refunds
          WHERE event_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR id > $3)
          ORDER BY id LIMIT $4"
    ))
    .bind::<SqlUuid, _>(event_id)
    .bind::<Nullable<Text>, _>(status.map(RefundStatus::as_str))
    .bind::<Nullable<SqlUuid>, _>(after)
    .bind::<Int8, _>(limit)
    .load(conn)
    .await?)
}

/// How far an event's cancellation has got: the refunds made since it was
/// cancelled (for its paid orders, and for payments that arrived after), by
/// status, and the paid orders still waiting for theirs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName)]
pub struct CancellationProgress {
    #[diesel(sql_type = Int8)]
    pub orders_to_refund: i64,
    #[diesel(sql_type = Int8)]
    pub refunded: i64,
    #[diesel(sql_type = Int8)]
    pub manual_required: i64,
    #[diesel(sql_type = Int8)]
    pub failed: i64,
}

pub async fn cancellation_progress(conn: &mut Conn, event_id: Uuid) -> Result<CancellationProgress, StoreError> {
    Ok(diesel::sql_query(
        "SELECT (SELECT count(*) FROM orders WHERE event_id = $1 AND status = 'paid') + count(r.id) AS orders_to_refund,
                count(r.id) FILTER (WHERE r.status = 'succeeded') AS refunded,
                count(r.id) FILTER (WHERE r.status = 'manual_required') AS manual_required,
                count(r.id) FILTER (WHERE r.status = 'failed') AS failed
           FROM events e LEFT JOIN refunds r
             ON r.event_id = e.id AND r.cause IN ('event_cancelled', 'unkept_payment') AND r.created_at >= e.cancelled_at
          WHERE e.id = $1",
    )
    .bind::<SqlUuid, _>(event_id)
    .get_result(conn)
    .await?)
}
