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

use crate::{Conn, StoreError, words::Word};

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

/// Writes refunds in one statement each for the rows, the orders' refunded
/// totals (the database refuses a total past what was paid) and status
/// (REFUNDED where `completes`), and the tickets (each refunded once: its
/// key; voided with a new manifest version). A refund a unique index already
/// holds (the same idempotency key, an order's cancellation refund) is
/// skipped with all it would have changed; the written ones are returned.
pub async fn insert_refunds(conn: &mut Conn, refunds: &[(NewRefund<'_>, bool)]) -> Result<Vec<RefundRow>, StoreError> {
    if refunds.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: &dyn Fn(&NewRefund<'_>) -> String| refunds.iter().map(|(r, _)| f(r)).collect::<Vec<String>>();
    let sql = format!(
        "INSERT INTO refunds (id, order_id, event_id, cause, ticket_ids, currency_code, amount_units, status, reason,
                              return_to_sale, refund_key, payment_type, requested_by, idempotency_key, request_digest)
         SELECT r.id, r.order_id, r.event_id, r.cause, r.ticket_ids::uuid[], r.currency_code, r.amount_units, r.status,
                r.reason, r.return_to_sale, r.id::text, r.payment_type, r.requested_by, r.idempotency_key, r.request_digest
           FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[],
                       $9::text[], $10::bool[], $11::text[], $12::uuid[], $13::text[], $14::text[])
                AS r (id, order_id, event_id, cause, ticket_ids, currency_code, amount_units, status, reason,
                      return_to_sale, payment_type, requested_by, idempotency_key, request_digest)
         ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
    );
    let written: Vec<RefundRow> = diesel::sql_query(sql)
        .bind::<Array<SqlUuid>, _>(refunds.iter().map(|(r, _)| r.id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(refunds.iter().map(|(r, _)| r.order_id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(refunds.iter().map(|(r, _)| r.event_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(column(&|r| r.cause.as_str().to_owned()))
        .bind::<Array<Text>, _>(column(&|r| {
            let ids: Vec<String> = r.ticket_ids.iter().map(Uuid::to_string).collect();
            format!("{{{}}}", ids.join(","))
        }))
        .bind::<Array<Text>, _>(column(&|r| r.currency_code.to_owned()))
        .bind::<Array<Int8>, _>(refunds.iter().map(|(r, _)| r.amount_units).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(column(&|r| r.status.as_str().to_owned()))
        .bind::<Array<Text>, _>(column(&|r| r.reason.to_owned()))
        .bind::<Array<Bool>, _>(refunds.iter().map(|(r, _)| r.return_to_sale).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(refunds.iter().map(|(r, _)| r.payment_type).collect::<Vec<_>>())
        .bind::<Array<Nullable<SqlUuid>>, _>(refunds.iter().map(|(r, _)| r.requested_by).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(refunds.iter().map(|(r, _)| r.idempotency_key).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(refunds.iter().map(|(r, _)| r.request_digest).collect::<Vec<_>>())
        .load(conn)
        .await?;
    if written.is_empty() {
        return Ok(written);
    }
    let completes: Vec<bool> =
        written.iter().map(|row| refunds.iter().any(|(r, completes)| r.id == row.id && *completes)).collect();
    diesel::sql_query(
        "UPDATE orders o SET refunded_units = o.refunded_units + r.amount,
                             status = CASE WHEN r.completes THEN 'refunded' ELSE o.status END,
                             updated_at = now()
           FROM unnest($1::uuid[], $2::bigint[], $3::bool[]) AS r (order_id, amount, completes)
          WHERE o.id = r.order_id",
    )
    .bind::<Array<SqlUuid>, _>(written.iter().map(|r| r.order_id).collect::<Vec<_>>())
    .bind::<Array<Int8>, _>(written.iter().map(|r| r.amount_units).collect::<Vec<_>>())
    .bind::<Array<Bool>, _>(completes)
    .execute(conn)
    .await?;
    let (refund_of_ticket, tickets): (Vec<Uuid>, Vec<Uuid>) =
        written.iter().flat_map(|r| r.ticket_ids.iter().map(move |t| (r.id, *t))).unzip();
    if !tickets.is_empty() {
        diesel::sql_query(
            "INSERT INTO refunded_tickets (ticket_id, refund_id) SELECT * FROM unnest($1::uuid[], $2::uuid[])",
        )
        .bind::<Array<SqlUuid>, _>(&tickets)
        .bind::<Array<SqlUuid>, _>(&refund_of_ticket)
        .execute(conn)
        .await?;
        diesel::sql_query(
            "UPDATE tickets SET status = $2, version = pg_current_xact_id()::text::bigint WHERE id = ANY($1)",
        )
        .bind::<Array<SqlUuid>, _>(&tickets)
        .bind::<Text, _>(TicketStatus::Void.as_str())
        .execute(conn)
        .await?;
    }
    Ok(written)
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
    pub order_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub ticket_category_id: Uuid,
    #[diesel(sql_type = Bool)]
    pub refunded: bool,
}

/// The tickets of the orders, each order's in id order.
pub async fn tickets_for_refund(conn: &mut Conn, order_ids: &[Uuid]) -> Result<Vec<RefundableTicket>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT t.order_id, t.id, t.ticket_category_id, rt.ticket_id IS NOT NULL AS refunded
           FROM tickets t LEFT JOIN refunded_tickets rt ON rt.ticket_id = t.id
          WHERE t.order_id = ANY($1) ORDER BY t.order_id, t.id",
    )
    .bind::<Array<SqlUuid>, _>(order_ids)
    .load(conn)
    .await?)
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
