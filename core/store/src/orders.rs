//! Orders, their items and tickets.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::{prelude::*, sql_types::Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use rand::Rng;
use ticketing_domain::{
    Code, Error, Reason,
    money::Money,
    orders::{OrderLine, OrderStatus, TicketStatus},
};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::{
    Conn, Database, StoreError,
    inventory::{BUCKETS_PER_CATEGORY, TakeOutcome},
    lanes::{Batch, request_index},
    schema::{order_items, orders, tickets},
    words::{self, Word},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = orders)]
pub struct OrderRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub event_id: Uuid,
    #[diesel(deserialize_as = Word<OrderStatus>)]
    pub status: OrderStatus,
    pub currency_code: String,
    pub total_units: i64,
    pub total_nanos: i32,
    pub idempotency_key: String,
    pub request_digest: String,
    pub expire_time: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What its refunds add up to (never more than the total: the database's check).
    pub refunded_units: i64,
}

impl OrderRow {
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

/// A new order as the use case priced it: what the rules decided, in
/// domain terms. The store makes the rows (ids, status, times) from it.
pub struct NewOrder<'a> {
    pub user_id: Uuid,
    pub event_id: Uuid,
    pub lines: &'a [OrderLine],
    /// One per line, in line order.
    pub unit_prices: Vec<Money>,
    pub total: Money,
    pub idempotency_key: &'a str,
    pub request_digest: &'a str,
    pub expire_time: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// A new order's rows, PENDING, to be held.
impl From<NewOrder<'_>> for OrderWithItems {
    fn from(new: NewOrder<'_>) -> OrderWithItems {
        let id = Uuid::now_v7();
        let items = new
            .lines
            .iter()
            .zip(new.unit_prices)
            .map(|(line, price)| OrderItemRow {
                order_id: id,
                ticket_category_id: line.ticket_category_id,
                quantity: line.quantity,
                unit_price_units: price.units,
                unit_price_nanos: price.nanos,
            })
            .collect();
        let order = OrderRow {
            id,
            user_id: new.user_id,
            event_id: new.event_id,
            status: OrderStatus::Pending,
            currency_code: new.total.currency_code,
            total_units: new.total.units,
            total_nanos: new.total.nanos,
            idempotency_key: new.idempotency_key.to_owned(),
            request_digest: new.request_digest.to_owned(),
            expire_time: new.expire_time,
            created_at: new.now,
            updated_at: new.now,
            refunded_units: 0,
        };
        OrderWithItems { order, items }
    }
}

/// An order with its items, as every read returns it.
#[derive(Debug, Clone)]
pub struct OrderWithItems {
    pub order: OrderRow,
    pub items: Vec<OrderItemRow>,
}

/// What holding a new order decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Its tickets are taken and the order is written, pending.
    Held,
    /// The fast pass found every bucket with room busy, or the category's
    /// room spread too thin for a whole line: nothing was written; the exact
    /// pass may still fit it.
    Contended,
    /// This category has less room left than the order asks of it (either
    /// pass): nothing was written.
    SoldOut(Uuid),
    /// The customer already holds the most pending orders allowed: nothing
    /// was written.
    PendingLimit,
    /// The order would take the customer past the event's ticket limit;
    /// they hold this many already. Nothing was written.
    CustomerLimit { held: i32 },
}

/// A new order to hold, with the most tickets its customer may hold for
/// its event (0: no limit).
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub order: OrderWithItems,
    pub customer_limit: i32,
}

/// New orders held in batches, each all or nothing: its tickets taken
/// from the buckets and the order written with its items (the `hold_orders`
/// function, migration `hold_a_batch_in_few_statements`: a few statements
/// per batch, not per order). Through the lanes goes the
/// fast pass, which never waits for a bucket; the exact pass, which does,
/// goes one order at a time ([`hold_exact`]).
pub struct Holds {
    /// PENDING orders one customer may hold at once.
    pub max_pending_orders: i32,
}

/// A request is a new order (pending, priced).
impl Batch for Holds {
    type Request = HoldRequest;
    type Answer = Hold;
    /// The fast pass waits for no bucket and no customer's lock, so arrival
    /// order is as good as any (and the fairest).
    type Key = ();
    const NAME: &'static str = "hold";
    /// The spare keeps selling while a call's commit is slow.
    const LANES: usize = 2;
    const MAX_BATCH: usize = 64;

    fn key(_: &HoldRequest) {}

    async fn decide(&self, db: &Database, orders: &[HoldRequest]) -> Result<Vec<Hold>, StoreError> {
        // One start bucket for the whole batch: its orders share the buckets
        // it has locked instead of spreading locks over the category.
        let start = rand::thread_rng().gen_range(0..BUCKETS_PER_CATEGORY);
        hold_orders(db, orders, start, false, self.max_pending_orders).await
    }
}

/// The exact pass for one order: waits for each category's buckets, in
/// bucket order, and splits the quantity across them.
pub async fn hold_exact(db: &Database, order: &HoldRequest, max_pending_orders: i32) -> Result<Hold, StoreError> {
    let holds = hold_orders(db, std::slice::from_ref(order), 0, true, max_pending_orders).await?;
    holds.into_iter().next().ok_or_else(|| Error::internal("hold_orders returned no row").into())
}

async fn hold_orders(
    db: &Database,
    requests: &[HoldRequest],
    start: i32,
    exact: bool,
    max_pending_orders: i32,
) -> Result<Vec<Hold>, StoreError> {
    let status = OrderStatus::Pending.as_str();
    let customer_limits: Vec<i32> = requests.iter().map(|r| r.customer_limit).collect();
    let orders: Vec<&OrderWithItems> = requests.iter().map(|r| &r.order).collect();
    let heads: Vec<&OrderRow> = orders.iter().map(|o| &o.order).collect();
    let ids: Vec<Uuid> = heads.iter().map(|o| o.id).collect();
    let users: Vec<Uuid> = heads.iter().map(|o| o.user_id).collect();
    let events: Vec<Uuid> = heads.iter().map(|o| o.event_id).collect();
    let currencies: Vec<&str> = heads.iter().map(|o| o.currency_code.as_str()).collect();
    let total_units: Vec<i64> = heads.iter().map(|o| o.total_units).collect();
    let total_nanos: Vec<i32> = heads.iter().map(|o| o.total_nanos).collect();
    let keys: Vec<&str> = heads.iter().map(|o| o.idempotency_key.as_str()).collect();
    let digests: Vec<&str> = heads.iter().map(|o| o.request_digest.as_str()).collect();
    let expire_times: Vec<DateTime<Utc>> = heads.iter().map(|o| o.expire_time).collect();
    let created: Vec<DateTime<Utc>> = heads.iter().map(|o| o.created_at).collect();
    // Order i's lines end at line_ends[i] (1-based, inclusive).
    let line_ends: Vec<i32> = orders
        .iter()
        .scan(0i32, |end, o| {
            *end += i32::try_from(o.items.len()).unwrap_or(i32::MAX);
            Some(*end)
        })
        .collect();
    let items: Vec<&OrderItemRow> = orders.iter().flat_map(|o| &o.items).collect();
    let categories: Vec<Uuid> = items.iter().map(|i| i.ticket_category_id).collect();
    let quantities: Vec<i32> = items.iter().map(|i| i.quantity).collect();
    let unit_units: Vec<i64> = items.iter().map(|i| i.unit_price_units).collect();
    let unit_nanos: Vec<i32> = items.iter().map(|i| i.unit_price_nanos).collect();
    let rows = db
        .statement(
            "SELECT out_index, out_outcome, out_short_category, out_held FROM hold_orders($1, $2, $3, $4, $5, $6, $7, \
             $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
            &[
                (&ids, Type::UUID_ARRAY),
                (&users, Type::UUID_ARRAY),
                (&events, Type::UUID_ARRAY),
                (&status, Type::TEXT),
                (&currencies, Type::TEXT_ARRAY),
                (&total_units, Type::INT8_ARRAY),
                (&total_nanos, Type::INT4_ARRAY),
                (&keys, Type::TEXT_ARRAY),
                (&digests, Type::TEXT_ARRAY),
                (&expire_times, Type::TIMESTAMPTZ_ARRAY),
                (&created, Type::TIMESTAMPTZ_ARRAY),
                (&line_ends, Type::INT4_ARRAY),
                (&categories, Type::UUID_ARRAY),
                (&quantities, Type::INT4_ARRAY),
                (&unit_units, Type::INT8_ARRAY),
                (&unit_nanos, Type::INT4_ARRAY),
                (&start, Type::INT4),
                (&exact, Type::BOOL),
                (&max_pending_orders, Type::INT4),
                (&customer_limits, Type::INT4_ARRAY),
            ],
        )
        .await;
    let rows = match rows {
        Err(error) if error.is_unique_violation("orders_idempotency_key") => {
            return Err(Error::new(Code::Aborted, "an order with this idempotency key exists")
                // The unique index decided, after waiting for a concurrent
                // insert of that key to commit or roll back.
                .with_reason(Reason::IdempotencyRace)
                .into());
        }
        other => other?,
    };
    let mut holds = vec![None; orders.len()];
    for row in rows {
        let index = request_index(row.try_get::<_, i32>("out_index")?.into(), holds.len())?;
        let short_category: Option<Uuid> = row.try_get("out_short_category")?;
        holds[index] = Some(match (words::column(&row, "out_outcome")?, short_category) {
            (TakeOutcome::Held, _) => Hold::Held,
            (TakeOutcome::Contended, _) => Hold::Contended,
            (TakeOutcome::SoldOut, Some(category)) => Hold::SoldOut(category),
            (TakeOutcome::PendingLimit, _) => Hold::PendingLimit,
            (TakeOutcome::CustomerLimit, _) => {
                Hold::CustomerLimit { held: row.try_get::<_, Option<i32>>("out_held")?.unwrap_or(0) }
            }
            (TakeOutcome::CustomerBusy, _) => Hold::Contended,
            (other, _) => return Err(Error::internal(format!("hold_orders answered {other}")).into()),
        });
    }
    holds.into_iter().map(|hold| hold.ok_or_else(|| Error::internal("hold_orders skipped an order").into())).collect()
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

/// Moves a still-pending order's hold to end at `expire_time` (its payment
/// page's expiry); an order that moved on is left as it is.
pub async fn set_pending_expire_time(conn: &mut Conn, id: Uuid, expire_time: DateTime<Utc>) -> Result<(), StoreError> {
    diesel::update(orders::table.find(id).filter(orders::status.eq(OrderStatus::Pending.as_str())))
        .set((orders::expire_time.eq(expire_time), orders::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await?;
    Ok(())
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

/// Claims up to `limit` of an event's pending and paid orders (a cancelled
/// event's sweep), skipping rows a payment or another sweep holds.
pub async fn claim_live_orders_of_event(
    conn: &mut Conn,
    event_id: Uuid,
    limit: i64,
) -> Result<Vec<OrderWithItems>, StoreError> {
    let live = [OrderStatus::Pending.as_str(), OrderStatus::Paid.as_str()];
    let rows: Vec<OrderRow> = orders::table
        .filter(orders::event_id.eq(event_id))
        .filter(orders::status.eq_any(live))
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
    #[diesel(deserialize_as = Word<TicketStatus>)]
    pub status: TicketStatus,
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
