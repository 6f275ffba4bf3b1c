//! Inventory held per ticket category, spread over buckets. Every change
//! runs inside the caller's transaction; the `held <= capacity` CHECK on each
//! bucket is what makes overselling impossible, whatever the interleaving.
//! Taking is the `take_tickets` database function (migration
//! `hold_in_one_call`), so a new order is one round trip, shared with the
//! orders that arrive with it (the order path's batched holds).
//!
//! Lock order, so nothing deadlocks: categories in id order; within a
//! category, the fast pass never waits for a lock, and what waits (the exact
//! pass, [`release`], [`resize`]) locks buckets in bucket order, holding no
//! bucket of the category when it starts (the exact pass lets go of what its
//! pick skipped: migration `exact_pass_keeps_no_lock_it_skipped`).

use std::collections::HashMap;
use ticketing_domain::Reason;

use diesel::{
    prelude::*,
    sql_types::{Array, Int2, Int4, Nullable, Text, Uuid as SqlUuid},
};
use diesel_async::RunQueryDsl;
use ticketing_domain::Error;
use uuid::Uuid;

use crate::{Conn, StoreError, words};

/// Buckets per category: enough writers in parallel for one hot category
/// (16 buckets ≈ 4× one row's throughput here, shared/PERF.md), few enough
/// that summing them for `available` stays trivial.
pub const BUCKETS_PER_CATEGORY: i32 = 16;

/// Creates a new category's buckets, capacity spread evenly.
pub async fn create_buckets(conn: &mut Conn, category_id: Uuid, capacity: i32) -> Result<(), StoreError> {
    diesel::sql_query(
        "INSERT INTO inventory_buckets (ticket_category_id, bucket, capacity) \
         SELECT $1, b, $2 / n + CASE WHEN b < $2 % n THEN 1 ELSE 0 END \
         FROM (SELECT least($3, $2) AS n) AS split, generate_series(0, split.n - 1) AS b",
    )
    .bind::<SqlUuid, _>(category_id)
    .bind::<Int4, _>(capacity)
    .bind::<Int4, _>(BUCKETS_PER_CATEGORY)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct BucketState {
    #[diesel(sql_type = Int2)]
    bucket: i16,
    #[diesel(sql_type = Int4)]
    held: i32,
}

async fn lock_buckets(conn: &mut Conn, category_id: Uuid) -> Result<Vec<BucketState>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT bucket, held FROM inventory_buckets WHERE ticket_category_id = $1 ORDER BY bucket FOR UPDATE",
    )
    .bind::<SqlUuid, _>(category_id)
    .load(conn)
    .await?)
}

async fn add_held(conn: &mut Conn, category_id: Uuid, bucket: i16, delta: i32) -> Result<(), StoreError> {
    diesel::sql_query("UPDATE inventory_buckets SET held = held + $3 WHERE ticket_category_id = $1 AND bucket = $2")
        .bind::<SqlUuid, _>(category_id)
        .bind::<Int2, _>(bucket)
        .bind::<Int4, _>(delta)
        .execute(conn)
        .await?;
    Ok(())
}

ticketing_domain::vocabulary! {
    /// What the inventory functions answer for an order or a line
    /// (`take_tickets`, `hold_orders`: migrations `hold_in_one_call`,
    /// `hold_orders_together`).
    pub(crate) enum TakeOutcome {
        /// `take_tickets`: every line taken.
        Taken = "TAKEN",
        /// `hold_orders`: taken and the order written.
        Held = "HELD",
        /// The fast pass found no free bucket with room, and the category
        /// has room for the line in all (a split, or busy buckets); nothing
        /// written.
        Contended = "CONTENDED",
        /// A category is short (named beside it); nothing written.
        SoldOut = "SOLD_OUT",
        /// `hold_orders`: the customer holds the most pending orders allowed;
        /// nothing written.
        PendingLimit = "PENDING_LIMIT",
        /// `hold_orders`: the order would take the customer past the event's
        /// ticket limit (the tickets held beside it); nothing written.
        CustomerLimit = "CUSTOMER_LIMIT",
        /// `hold_orders`'s fast pass: the customer's other order is being held
        /// elsewhere; nothing written (the exact pass waits its turn).
        CustomerBusy = "CUSTOMER_BUSY",
    }
}

#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    short_category: Option<Uuid>,
}

/// Takes each `(category, quantity)` across the category's buckets, all or
/// none (the `take_tickets` function's exact pass, as a new order's second
/// pass uses it); `Some(category)` when that category has less left, and
/// then nothing was taken.
pub async fn take_exact(conn: &mut Conn, lines: &[(Uuid, i32)]) -> Result<Option<Uuid>, StoreError> {
    let (categories, quantities): (Vec<Uuid>, Vec<i32>) = lines.iter().copied().unzip();
    let taken: Taken = diesel::sql_query("SELECT outcome, short_category FROM take_tickets($1, $2, 0, true)")
        .bind::<Array<SqlUuid>, _>(categories)
        .bind::<Array<Int4>, _>(quantities)
        .get_result(conn)
        .await?;
    match (words::parse(&taken.outcome).map_err(Error::internal)?, taken.short_category) {
        (TakeOutcome::Taken, _) => Ok(None),
        (TakeOutcome::SoldOut, Some(category)) => Ok(Some(category)),
        (other, _) => Err(Error::internal(format!("take_tickets answered {other}")).into()),
    }
}

/// Gives `quantity` back to the category (an order expired, was cancelled or
/// refunded). Any bucket may take it back: only the sum is meaningful.
pub async fn release(conn: &mut Conn, category_id: Uuid, quantity: i32) -> Result<(), StoreError> {
    let buckets = lock_buckets(conn, category_id).await?;
    let mut left = quantity;
    for bucket in buckets.iter().filter(|b| b.held > 0) {
        let give = left.min(bucket.held);
        add_held(conn, category_id, bucket.bucket, -give).await?;
        left -= give;
        if left == 0 {
            return Ok(());
        }
    }
    Err(Error::internal(format!("category {category_id} held less than the {quantity} tickets released")).into())
}

/// Takes `quantity` refunded seats off sale (a broken seat, a blocked view):
/// released from what is held and taken from the buckets' capacity alike,
/// so `held` keeps counting exactly the live tickets and `available` does
/// not change. The category's declared capacity (the venue's) stays; an
/// organizer who later sets a new capacity sets what is on sale again.
pub async fn withdraw(conn: &mut Conn, category_id: Uuid, quantity: i32) -> Result<(), StoreError> {
    let buckets = lock_buckets(conn, category_id).await?;
    let mut left = quantity;
    for bucket in buckets.iter().filter(|b| b.held > 0) {
        let give = left.min(bucket.held);
        diesel::sql_query(
            "UPDATE inventory_buckets SET held = held - $3, capacity = capacity - $3
              WHERE ticket_category_id = $1 AND bucket = $2",
        )
        .bind::<SqlUuid, _>(category_id)
        .bind::<Int2, _>(bucket.bucket)
        .bind::<Int4, _>(give)
        .execute(conn)
        .await?;
        left -= give;
        if left == 0 {
            break;
        }
    }
    if left > 0 {
        return Err(
            Error::internal(format!("category {category_id} held less than the {quantity} tickets withdrawn")).into()
        );
    }
    Ok(())
}

/// Changes a category's capacity, refusing to go below what is held.
pub async fn resize(conn: &mut Conn, category_id: Uuid, capacity: i32) -> Result<(), StoreError> {
    let buckets = lock_buckets(conn, category_id).await?;
    let held: i32 = buckets.iter().map(|b| b.held).sum();
    if capacity < held {
        return Err(Error::failed_precondition(
            Reason::CapacityBelowSold,
            format!("{held} tickets are already held or sold; capacity cannot go below that"),
        )
        .into());
    }
    let spare = capacity - held;
    let count = i32::try_from(buckets.len()).unwrap_or(1).max(1);
    for (i, bucket) in (0..).zip(&buckets) {
        let share = spare / count + i32::from(i < spare % count);
        diesel::sql_query("UPDATE inventory_buckets SET capacity = $3 WHERE ticket_category_id = $1 AND bucket = $2")
            .bind::<SqlUuid, _>(category_id)
            .bind::<Int2, _>(bucket.bucket)
            .bind::<Int4, _>(bucket.held + share)
            .execute(conn)
            .await?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Available {
    #[diesel(sql_type = SqlUuid)]
    ticket_category_id: Uuid,
    #[diesel(sql_type = Int4)]
    available: i32,
}

/// Tickets left per category: capacity minus what pending and paid orders hold.
pub async fn available(conn: &mut Conn, category_ids: &[Uuid]) -> Result<HashMap<Uuid, i32>, StoreError> {
    let rows: Vec<Available> = diesel::sql_query(
        "SELECT ticket_category_id, (sum(capacity) - sum(held))::int4 AS available \
         FROM inventory_buckets WHERE ticket_category_id = ANY($1) GROUP BY ticket_category_id",
    )
    .bind::<Array<SqlUuid>, _>(category_ids)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.ticket_category_id, r.available)).collect())
}

/// Tickets left to buy now in each category of `event_id`, in category id
/// order: none once the event is no longer published. One index scan of the
/// event's buckets (what a watched event's hub reads per change).
pub async fn of_event(conn: &mut Conn, event_id: Uuid) -> Result<Vec<(Uuid, i32)>, StoreError> {
    let rows: Vec<Available> = diesel::sql_query(
        "SELECT c.id AS ticket_category_id,
                CASE WHEN e.status = 'published' THEN (sum(b.capacity) - sum(b.held))::int4 ELSE 0 END AS available
         FROM events e
         JOIN ticket_categories c ON c.event_id = e.id
         JOIN inventory_buckets b ON b.ticket_category_id = c.id
         WHERE e.id = $1
         GROUP BY c.id, e.status
         ORDER BY c.id",
    )
    .bind::<SqlUuid, _>(event_id)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.ticket_category_id, r.available)).collect())
}

#[derive(QueryableByName)]
pub struct OnSale {
    #[diesel(sql_type = SqlUuid)]
    pub event_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub ticket_category_id: Uuid,
    #[diesel(sql_type = Int4)]
    pub available: i32,
}

/// Tickets left in every category on sale now (bounded), for the metrics scrape.
pub async fn on_sale(conn: &mut Conn, limit: i64) -> Result<Vec<OnSale>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT c.event_id, c.id AS ticket_category_id, (sum(b.capacity) - sum(b.held))::int4 AS available
         FROM events e
         JOIN ticket_categories c ON c.event_id = e.id
         JOIN inventory_buckets b ON b.ticket_category_id = c.id
         WHERE e.status = 'published' AND e.sales_start_time <= now() AND e.sales_end_time > now()
         GROUP BY c.event_id, c.id
         ORDER BY c.id
         LIMIT $1",
    )
    .bind::<diesel::sql_types::Int8, _>(limit)
    .load(conn)
    .await?)
}
