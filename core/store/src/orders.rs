//! Orders, their items and tickets.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::{prelude::*, sql_types::Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use ticketing_domain::{Code, Error, money::Money, orders::OrderStatus};
use uuid::Uuid;

use tokio_postgres::types::Type;

use crate::{
    Conn, Database, StoreError,
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

/// Reason of the error [`hold_order`] returns when an order with the same
/// idempotency key exists (the unique index decides, waiting for a
/// concurrent insert of that key to commit or roll back first).
pub const IDEMPOTENCY_RACE: &str = "IDEMPOTENCY_RACE";

/// What [`hold_order`] decided.
pub enum Hold {
    Held(OrderWithItems),
    /// The fast pass found every bucket with room busy (or none with room
    /// for a whole line): nothing was written; the exact pass may still fit it.
    Contended,
    /// The exact pass found this category short: nothing was written.
    SoldOut(Uuid),
}

/// Takes the order's tickets and writes it with its items, all or nothing,
/// in one statement: one round trip and one commit (the `hold_order`
/// function, migration `hold_in_one_call`). `start` spreads concurrent
/// buyers over the buckets; `exact` takes the exact pass.
pub async fn hold_order(
    db: &Database,
    new: &NewOrder<'_>,
    items: &[OrderItemRow],
    start: i32,
    exact: bool,
) -> Result<Hold, StoreError> {
    let status = OrderStatus::Pending.as_str();
    let categories: Vec<Uuid> = items.iter().map(|i| i.ticket_category_id).collect();
    let quantities: Vec<i32> = items.iter().map(|i| i.quantity).collect();
    let unit_units: Vec<i64> = items.iter().map(|i| i.unit_price_units).collect();
    let unit_nanos: Vec<i32> = items.iter().map(|i| i.unit_price_nanos).collect();
    let rows = db
        .statement(
            "SELECT outcome, short_category FROM hold_order($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
             $14, $15, $16, $17)",
            &[
                (&new.id, Type::UUID),
                (&new.user_id, Type::UUID),
                (&new.event_id, Type::UUID),
                (&status, Type::TEXT),
                (&new.total.currency_code, Type::TEXT),
                (&new.total.units, Type::INT8),
                (&new.total.nanos, Type::INT4),
                (&new.idempotency_key, Type::TEXT),
                (&new.request_digest, Type::TEXT),
                (&new.expire_time, Type::TIMESTAMPTZ),
                (&new.created_at, Type::TIMESTAMPTZ),
                (&categories, Type::UUID_ARRAY),
                (&quantities, Type::INT4_ARRAY),
                (&unit_units, Type::INT8_ARRAY),
                (&unit_nanos, Type::INT4_ARRAY),
                (&start, Type::INT4),
                (&exact, Type::BOOL),
            ],
        )
        .await;
    let rows = match rows {
        Err(error) if error.is_unique_violation("orders_idempotency_key") => {
            return Err(Error::new(Code::Aborted, "an order with this idempotency key exists")
                .with_reason(IDEMPOTENCY_RACE)
                .into());
        }
        other => other?,
    };
    let row = rows.into_iter().next().ok_or_else(|| Error::internal("hold_order returned no row"))?;
    let outcome: &str = row.try_get(0)?;
    let short_category: Option<Uuid> = row.try_get(1)?;
    match (outcome, short_category) {
        ("HELD", _) => {}
        ("CONTENDED", _) => return Ok(Hold::Contended),
        ("SOLD_OUT", Some(category)) => return Ok(Hold::SoldOut(category)),
        (other, _) => return Err(Error::internal(format!("hold_order answered {other}")).into()),
    }
    let order = OrderRow {
        id: new.id,
        user_id: new.user_id,
        event_id: new.event_id,
        status: status.to_owned(),
        currency_code: new.total.currency_code.clone(),
        total_units: new.total.units,
        total_nanos: new.total.nanos,
        idempotency_key: new.idempotency_key.to_owned(),
        request_digest: new.request_digest.to_owned(),
        expire_time: new.expire_time,
        created_at: new.created_at,
        updated_at: new.created_at,
    };
    Ok(Hold::Held(OrderWithItems { order, items: items.to_vec() }))
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
