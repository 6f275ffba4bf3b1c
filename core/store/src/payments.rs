//! Payments, the notifications received about them, event signing keys and
//! ticket issuing.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{Array, Int8, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::RunQueryDsl;
use ticketing_domain::{orders::TicketStatus, payments::PaymentStatus};
use uuid::Uuid;

use crate::{
    Conn, StoreError,
    schema::{event_signing_keys, payment_notifications, payments},
    words::Word,
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = payments)]
pub struct PaymentRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub provider: String,
    #[diesel(deserialize_as = Word<PaymentStatus>)]
    pub status: PaymentStatus,
    pub provider_status: String,
    pub token: String,
    pub redirect_url: String,
    pub gross_amount: i64,
    pub created_at: DateTime<Utc>,
    /// Midtrans's `payment_type`, once a status said it.
    pub payment_type: Option<String>,
}

/// A payment as the use case knows it: the provider's transaction for an
/// order (no token yet when the money arrived before our record).
pub struct NewPayment<'a> {
    pub order_id: Uuid,
    pub provider: &'a str,
    pub token: &'a str,
    pub redirect_url: &'a str,
    pub gross_amount: i64,
}

/// Records a payment, PENDING, unless the order has one; returns the
/// order's payment either way (the first writer wins, concurrent callers see
/// the same row).
pub async fn insert_payment(conn: &mut Conn, payment: NewPayment<'_>) -> Result<PaymentRow, StoreError> {
    diesel::insert_into(payments::table)
        .values((
            payments::id.eq(Uuid::now_v7()),
            payments::order_id.eq(payment.order_id),
            payments::provider.eq(payment.provider),
            payments::status.eq(PaymentStatus::Pending.as_str()),
            payments::provider_status.eq(""),
            payments::token.eq(payment.token),
            payments::redirect_url.eq(payment.redirect_url),
            payments::gross_amount.eq(payment.gross_amount),
            payments::created_at.eq(diesel::dsl::now),
        ))
        .on_conflict(payments::order_id)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(payments::table
        .filter(payments::order_id.eq(payment.order_id))
        .select(PaymentRow::as_select())
        .first(conn)
        .await?)
}

pub async fn find_by_order(conn: &mut Conn, order_id: Uuid) -> Result<Option<PaymentRow>, StoreError> {
    Ok(payments::table
        .filter(payments::order_id.eq(order_id))
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn set_status(
    conn: &mut Conn,
    id: Uuid,
    status: PaymentStatus,
    provider_status: &str,
) -> Result<(), StoreError> {
    diesel::update(payments::table.find(id))
        .set((
            payments::status.eq(status.as_str()),
            payments::provider_status.eq(provider_status),
            payments::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// An event's payments, oldest first, after `after`, of one status or all.
pub async fn list_event_payments(
    conn: &mut Conn,
    event_id: Uuid,
    status: Option<PaymentStatus>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<PaymentRow>, StoreError> {
    use crate::schema::orders;
    let mut query = payments::table
        .inner_join(orders::table)
        .filter(orders::event_id.eq(event_id))
        .order(payments::id)
        .limit(limit)
        .select(PaymentRow::as_select())
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(payments::status.eq(status.as_str()));
    }
    if let Some(after) = after {
        query = query.filter(payments::id.gt(after));
    }
    Ok(query.load(conn).await?)
}

/// Each order's payment type, where a payment says one.
pub async fn payment_types(
    conn: &mut Conn,
    order_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, String>, StoreError> {
    let rows: Vec<(Uuid, Option<String>)> = payments::table
        .filter(payments::order_id.eq_any(order_ids))
        .select((payments::order_id, payments::payment_type))
        .load(conn)
        .await?;
    Ok(rows.into_iter().filter_map(|(order, kind)| Some((order, kind?))).collect())
}

/// How the customer paid, as Midtrans's status said (a refund needs it).
pub async fn set_payment_type(conn: &mut Conn, id: Uuid, payment_type: &str) -> Result<(), StoreError> {
    diesel::update(payments::table.find(id).filter(payments::payment_type.is_distinct_from(payment_type)))
        .set(payments::payment_type.eq(payment_type))
        .execute(conn)
        .await?;
    Ok(())
}

/// Voids every ticket of an event (it was cancelled), with a new version so
/// scanners' next manifest delta carries them.
pub async fn void_event_tickets(conn: &mut Conn, event_id: Uuid) -> Result<usize, StoreError> {
    use crate::schema::tickets;
    let live =
        tickets::table.filter(tickets::event_id.eq(event_id)).filter(tickets::status.ne(TicketStatus::Void.as_str()));
    Ok(diesel::update(live)
        .set((
            tickets::status.eq(TicketStatus::Void.as_str()),
            tickets::version.eq(diesel::dsl::sql::<diesel::sql_types::Int8>("pg_current_xact_id()::text::bigint")),
        ))
        .execute(conn)
        .await?)
}

/// Claims up to `limit` pending payments made before `older_than` and not
/// checked since `checked_before`, marking them checked now; rows another
/// worker holds are skipped. Returns their order ids.
pub async fn claim_for_reconciliation(
    conn: &mut Conn,
    older_than: DateTime<Utc>,
    checked_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, StoreError> {
    let claimed: Vec<ClaimedPayment> = diesel::sql_query(
        "UPDATE payments SET checked_at = now()
          WHERE id IN (SELECT id FROM payments WHERE status = 'pending' AND created_at < $1 AND checked_at < $2
                        ORDER BY checked_at LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING order_id",
    )
    .bind::<Timestamptz, _>(older_than)
    .bind::<Timestamptz, _>(checked_before)
    .bind::<Int8, _>(limit)
    .load(conn)
    .await?;
    Ok(claimed.into_iter().map(|c| c.order_id).collect())
}

#[derive(QueryableByName)]
struct ClaimedPayment {
    #[diesel(sql_type = SqlUuid)]
    order_id: Uuid,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = payment_notifications)]
pub struct NewNotification<'a> {
    pub provider: &'a str,
    pub source: &'a str,
    pub order_id: &'a str,
    pub transaction_status: &'a str,
    pub body: serde_json::Value,
    pub outcome: &'a str,
}

pub async fn record_notification(conn: &mut Conn, notification: NewNotification<'_>) -> Result<(), StoreError> {
    diesel::insert_into(payment_notifications::table).values(notification).execute(conn).await?;
    Ok(())
}

/// How many notifications were stored for an order, by outcome.
pub async fn notification_outcomes(conn: &mut Conn, order_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(payment_notifications::table
        .filter(payment_notifications::order_id.eq(order_id))
        .group_by(payment_notifications::outcome)
        .select((payment_notifications::outcome, diesel::dsl::count_star()))
        .load(conn)
        .await?)
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = event_signing_keys)]
pub struct EventKeyRow {
    pub event_id: Uuid,
    pub public_key: Vec<u8>,
    pub sealed_private_key: Vec<u8>,
}

/// Stores `candidate` as the event's key unless it has one, and returns the
/// event's key: concurrent first issuers agree on one key.
pub async fn event_key_or_insert(conn: &mut Conn, candidate: &EventKeyRow) -> Result<EventKeyRow, StoreError> {
    diesel::insert_into(event_signing_keys::table)
        .values(candidate)
        .on_conflict(event_signing_keys::event_id)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(event_signing_keys::table.find(candidate.event_id).select(EventKeyRow::as_select()).first(conn).await?)
}

pub async fn find_event_key(conn: &mut Conn, event_id: Uuid) -> Result<Option<EventKeyRow>, StoreError> {
    Ok(event_signing_keys::table.find(event_id).select(EventKeyRow::as_select()).first(conn).await.optional()?)
}

pub struct NewTicket {
    pub id: Uuid,
    pub ticket_category_id: Uuid,
    pub code: String,
}

/// Writes an order's tickets in one statement.
pub async fn insert_tickets(
    conn: &mut Conn,
    order_id: Uuid,
    event_id: Uuid,
    tickets: Vec<NewTicket>,
) -> Result<(), StoreError> {
    diesel::sql_query(
        "INSERT INTO tickets (id, order_id, event_id, ticket_category_id, code)
         SELECT t.id, $1, $2, t.category, t.code FROM unnest($3::uuid[], $4::uuid[], $5::text[]) AS t (id, category, code)",
    )
    .bind::<SqlUuid, _>(order_id)
    .bind::<SqlUuid, _>(event_id)
    .bind::<Array<SqlUuid>, _>(tickets.iter().map(|t| t.id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(tickets.iter().map(|t| t.ticket_category_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(tickets.into_iter().map(|t| t.code).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}
