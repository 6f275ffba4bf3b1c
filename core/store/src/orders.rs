//! Orders, their items and tickets.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
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
}

pub async fn insert_order(
    conn: &mut Conn,
    new: NewOrder<'_>,
    items: Vec<OrderItemRow>,
) -> Result<OrderWithItems, StoreError> {
    let order = diesel::insert_into(orders::table)
        .values((
            orders::id.eq(new.id),
            orders::user_id.eq(new.user_id),
            orders::event_id.eq(new.event_id),
            orders::status.eq(OrderStatus::Pending.as_str()),
            orders::currency_code.eq(&new.total.currency_code),
            orders::total_units.eq(new.total.units),
            orders::total_nanos.eq(new.total.nanos),
            orders::idempotency_key.eq(new.idempotency_key),
            orders::request_digest.eq(new.request_digest),
            orders::expire_time.eq(new.expire_time),
        ))
        .returning(OrderRow::as_returning())
        .get_result(conn)
        .await
        .map_err(|error| {
            let error = StoreError::from(error);
            if error.is_unique_violation("orders_idempotency_key") {
                StoreError::Domain(
                    Error::new(Code::Aborted, "a request with this idempotency key finished first")
                        .with_reason(IDEMPOTENCY_RACE),
                )
            } else {
                error
            }
        })?;
    diesel::insert_into(order_items::table).values(&items).execute(conn).await?;
    Ok(OrderWithItems { order, items })
}

/// Reason of the error [`insert_order`] returns when a concurrent request
/// with the same idempotency key committed first (the unique index decided).
pub const IDEMPOTENCY_RACE: &str = "IDEMPOTENCY_RACE";

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
    let ids: Vec<Uuid> = rows.iter().map(|o| o.id).collect();
    let mut items: Vec<OrderItemRow> = order_items::table
        .filter(order_items::order_id.eq_any(&ids))
        .order((order_items::order_id, order_items::ticket_category_id))
        .select(OrderItemRow::as_select())
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|order| {
            let (mine, rest): (Vec<_>, Vec<_>) = items.drain(..).partition(|i| i.order_id == order.id);
            items = rest;
            OrderWithItems { order, items: mine }
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
    let mut claimed = Vec::with_capacity(rows.len());
    for order in rows {
        if let Some(order) = with_items(conn, Some(order)).await? {
            claimed.push(order);
        }
    }
    Ok(claimed)
}

pub async fn mark_orders(conn: &mut Conn, ids: &[Uuid], status: OrderStatus) -> Result<usize, StoreError> {
    Ok(diesel::update(orders::table.filter(orders::id.eq_any(ids)))
        .set((orders::status.eq(status.as_str()), orders::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await?)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tickets)]
pub struct TicketRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub event_id: Uuid,
    pub ticket_category_id: Uuid,
    pub code: String,
    pub status: String,
}

pub async fn tickets_of_order(conn: &mut Conn, order_id: Uuid) -> Result<Vec<TicketRow>, StoreError> {
    Ok(tickets::table
        .filter(tickets::order_id.eq(order_id))
        .order(tickets::id)
        .select(TicketRow::as_select())
        .load(conn)
        .await?)
}
