//! Orders, their items and tickets.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{Array, Int4, Int8, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::RunQueryDsl;
use ticketing_domain::{Code, Error, money::Money, orders::OrderStatus};
use uuid::Uuid;

use crate::{
    Conn, StoreError,
    schema::{order_items, orders, tickets},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = orders)]
pub struct OrderRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub event_id: Uuid,
    pub status: String,
    pub currency_code: String,
    pub total_units: i64,
    pub total_nanos: i32,
    pub idempotency_key: String,
    pub request_digest: String,
    pub expire_time: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrderRow {
    pub fn status(&self) -> OrderStatus {
        // The CHECK constraint admits only known statuses.
        OrderStatus::parse(&self.status).unwrap_or(OrderStatus::Pending)
    }

    pub fn total(&self) -> Money {
        Money { currency_code: self.currency_code.clone(), units: self.total_units, nanos: self.total_nanos }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = order_items)]
pub struct OrderItemRow {
    pub order_id: Uuid,
    pub ticket_category_id: Uuid,
    pub quantity: i32,
    pub unit_price_units: i64,
    pub unit_price_nanos: i32,
}

/// An order with its items, as every read returns it.
#[derive(Debug, Clone)]
pub struct OrderWithItems {
    pub order: OrderRow,
    pub items: Vec<OrderItemRow>,
}

pub struct NewOrder<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub event_id: Uuid,
    pub total: &'a Money,
    pub idempotency_key: &'a str,
    pub request_digest: &'a str,
    pub expire_time: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Reason of the error [`insert_order`] returns when an order with the same
/// idempotency key exists (the unique index decides, waiting for a
/// concurrent insert of that key to commit or roll back first).
pub const IDEMPOTENCY_RACE: &str = "IDEMPOTENCY_RACE";

/// Writes the order and its items in one statement (one round trip on the
/// hot path). An order with the same idempotency key makes it write nothing
/// and answer [`IDEMPOTENCY_RACE`].
pub async fn insert_order(
    conn: &mut Conn,
    new: NewOrder<'_>,
    items: Vec<OrderItemRow>,
) -> Result<OrderWithItems, StoreError> {
    let written = diesel::sql_query(
        "WITH new_order AS (
            INSERT INTO orders (id, user_id, event_id, status, currency_code, total_units, total_nanos,
                                idempotency_key, request_digest, expire_time, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
            ON CONFLICT (user_id, idempotency_key) DO NOTHING
            RETURNING id
        )
        INSERT INTO order_items (order_id, ticket_category_id, quantity, unit_price_units, unit_price_nanos)
        SELECT new_order.id, item.* FROM new_order,
            unnest($12::uuid[], $13::int4[], $14::int8[], $15::int4[]) AS item",
    )
    .bind::<SqlUuid, _>(new.id)
    .bind::<SqlUuid, _>(new.user_id)
    .bind::<SqlUuid, _>(new.event_id)
    .bind::<Text, _>(OrderStatus::Pending.as_str())
    .bind::<Text, _>(&new.total.currency_code)
    .bind::<Int8, _>(new.total.units)
    .bind::<Int4, _>(new.total.nanos)
    .bind::<Text, _>(new.idempotency_key)
    .bind::<Text, _>(new.request_digest)
    .bind::<Timestamptz, _>(new.expire_time)
    .bind::<Timestamptz, _>(new.created_at)
    .bind::<Array<SqlUuid>, _>(items.iter().map(|i| i.ticket_category_id).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(items.iter().map(|i| i.quantity).collect::<Vec<_>>())
    .bind::<Array<Int8>, _>(items.iter().map(|i| i.unit_price_units).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(items.iter().map(|i| i.unit_price_nanos).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    if written == 0 {
        return Err(Error::new(Code::Aborted, "an order with this idempotency key exists")
            .with_reason(IDEMPOTENCY_RACE)
            .into());
    }
    let order = OrderRow {
        id: new.id,
        user_id: new.user_id,
        event_id: new.event_id,
        status: OrderStatus::Pending.as_str().to_owned(),
        currency_code: new.total.currency_code.clone(),
        total_units: new.total.units,
        total_nanos: new.total.nanos,
        idempotency_key: new.idempotency_key.to_owned(),
        request_digest: new.request_digest.to_owned(),
        expire_time: new.expire_time,
        created_at: new.created_at,
        updated_at: new.created_at,
    };
    Ok(OrderWithItems { order, items })
}

async fn with_items(conn: &mut Conn, order: Option<OrderRow>) -> Result<Option<OrderWithItems>, StoreError> {
    let Some(order) = order else { return Ok(None) };
    let items = order_items::table
        .filter(order_items::order_id.eq(order.id))
        .order(order_items::ticket_category_id)
        .select(OrderItemRow::as_select())
        .load(conn)
        .await?;
    Ok(Some(OrderWithItems { order, items }))
}

pub async fn find_order(conn: &mut Conn, id: Uuid) -> Result<Option<OrderWithItems>, StoreError> {
    let order = orders::table.find(id).select(OrderRow::as_select()).first(conn).await.optional()?;
    with_items(conn, order).await
}

/// Locks the order row: every status change goes through this, so two
/// changes of one order (payment, expiry, cancellation) apply one at a time.
pub async fn lock_order(conn: &mut Conn, id: Uuid) -> Result<Option<OrderWithItems>, StoreError> {
    let order = orders::table.find(id).select(OrderRow::as_select()).for_update().first(conn).await.optional()?;
    with_items(conn, order).await
}

pub async fn find_by_idempotency_key(
    conn: &mut Conn,
    user_id: Uuid,
    key: &str,
) -> Result<Option<OrderWithItems>, StoreError> {
    let order = orders::table
        .filter(orders::user_id.eq(user_id))
        .filter(orders::idempotency_key.eq(key))
        .select(OrderRow::as_select())
        .first(conn)
        .await
        .optional()?;
    with_items(conn, order).await
}

pub async fn set_order_status(conn: &mut Conn, id: Uuid, status: OrderStatus) -> Result<OrderRow, StoreError> {
    Ok(diesel::update(orders::table.find(id))
        .set((orders::status.eq(status.as_str()), orders::updated_at.eq(diesel::dsl::now)))
        .returning(OrderRow::as_returning())
        .get_result(conn)
        .await?)
}

/// A user's orders, newest first, before `before` (keyset paging on the id).
pub async fn list_user_orders(
    conn: &mut Conn,
    user_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<OrderWithItems>, StoreError> {
    let mut query = orders::table
        .filter(orders::user_id.eq(user_id))
        .order(orders::id.desc())
        .limit(limit)
        .select(OrderRow::as_select())
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(orders::id.lt(before));
    }
    let rows: Vec<OrderRow> = query.load(conn).await?;
    attach_items(conn, rows).await
}

/// The items of many orders in one query, each attached to its order.
async fn attach_items(conn: &mut Conn, rows: Vec<OrderRow>) -> Result<Vec<OrderWithItems>, StoreError> {
    let ids: Vec<Uuid> = rows.iter().map(|o| o.id).collect();
    let items: Vec<OrderItemRow> = order_items::table
        .filter(order_items::order_id.eq_any(&ids))
        .order((order_items::order_id, order_items::ticket_category_id))
        .select(OrderItemRow::as_select())
        .load(conn)
        .await?;
    let mut by_order: HashMap<Uuid, Vec<OrderItemRow>> = HashMap::new();
    for item in items {
        by_order.entry(item.order_id).or_default().push(item);
    }
    Ok(rows
        .into_iter()
        .map(|order| {
            let items = by_order.remove(&order.id).unwrap_or_default();
            OrderWithItems { order, items }
        })
        .collect())
}

/// Claims up to `limit` pending orders whose hold has run out, skipping rows
/// another worker (or a payment) has locked, so several workers can run.
pub async fn claim_expired(conn: &mut Conn, now: DateTime<Utc>, limit: i64) -> Result<Vec<OrderWithItems>, StoreError> {
    let rows: Vec<OrderRow> = orders::table
        .filter(orders::status.eq(OrderStatus::Pending.as_str()))
        .filter(orders::expire_time.le(now))
        .order(orders::expire_time)
        .limit(limit)
        .select(OrderRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await?;
    attach_items(conn, rows).await
}

pub async fn mark_orders(conn: &mut Conn, ids: &[Uuid], status: OrderStatus) -> Result<usize, StoreError> {
    Ok(diesel::update(orders::table.filter(orders::id.eq_any(ids)))
        .set((orders::status.eq(status.as_str()), orders::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await?)
}

#[derive(Debug, Clone, QueryableByName)]
#[diesel(table_name = tickets)]
pub struct TicketRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub event_id: Uuid,
    pub ticket_category_id: Uuid,
    pub code: String,
    pub status: String,
}

/// An order's tickets; a checked-in ticket (a `checkins` row) reads as
/// `checked_in`.
pub async fn tickets_of_order(conn: &mut Conn, order_id: Uuid) -> Result<Vec<TicketRow>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT t.id, t.order_id, t.event_id, t.ticket_category_id, t.code,
                CASE WHEN t.status = 'valid' AND c.ticket_id IS NOT NULL THEN 'checked_in' ELSE t.status END AS status
           FROM tickets t LEFT JOIN checkins c ON c.ticket_id = t.id
          WHERE t.order_id = $1
          ORDER BY t.id",
    )
    .bind::<SqlUuid, _>(order_id)
    .load(conn)
    .await?)
}
