//! Buying: an order holds its tickets from creation until it is paid, or
//! until `expire_time` (then the worker expires it) or a cancellation gives
//! them back. Every hold and release changes the inventory buckets in the
//! same transaction as the order's status, so `available` stays exact.

use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use chrono::Utc;
use scoped_futures::ScopedFutureExt;
use sha2::{Digest, Sha256};
use ticketing_domain::{
    Code, Error, Reason,
    catalog::EventStatus,
    identity::{Principal, Role},
    orders::{self, CategoryForSale, OrderLine, OrderStatus},
    paging::{self, Cursor},
};
use ticketing_store::{
    Conn, StoreError, events, inventory,
    orders::{self as store, Hold, HoldRequest, NewOrder, OrderItemRow, OrderWithItems, TicketRow},
};
use uuid::Uuid;

use crate::{
    AppState,
    app::{
        idempotency::{self, Begin},
        jobs::{Job, SendOrderConfirmation, SendOrderWhatsApp},
        limits::{self, Limit},
        tickets, waiting_room,
    },
    config::MasterKey,
};

pub struct CreateOrder {
    pub event_id: Uuid,
    pub lines: Vec<OrderLine>,
    pub idempotency_key: String,
    /// The waiting room's admission; needed while the event's room is enabled.
    pub admission_token: String,
}

pub struct Placed {
    pub order: OrderWithItems,
    /// An earlier request with the same key made this order.
    pub replayed: bool,
}

const ORDER_LIMIT_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

#[tracing::instrument(name = "orders.create_order", skip_all)]
pub async fn create_order(state: &AppState, caller: &Principal, request: CreateOrder) -> Result<Placed, Error> {
    if caller.role != Role::Customer {
        return Err(Error::permission_denied("only customer accounts buy tickets"));
    }
    if request.idempotency_key.is_empty() {
        return Err(Error::invalid_argument(
            "an idempotency key is required: the Idempotency-Key header on REST, request_id on gRPC",
        )
        .with_reason(Reason::IdempotencyKeyRequired));
    }
    orders::validate_idempotency_key(&request.idempotency_key)?;
    orders::validate_lines(&request.lines)?;
    let digest = request_digest(&request);
    let user_id = caller.user_id;

    let claim =
        match timed(state, OrderPhase::Claim, idempotency::begin(state, user_id, &request.idempotency_key, &digest))
            .await?
        {
            Begin::Replay(order_id) => {
                count_order(OrderOutcome::Replayed);
                return Box::pin(replay(state, order_id)).await;
            }
            Begin::Proceed(claim) => claim,
        };
    if let Some(category_id) = state.sold_out.refuses(&request.lines).await {
        idempotency::abandon(state, claim).await;
        count_order(OrderOutcome::Refused(Reason::SoldOut));
        metrics::counter!("ticketing_sold_out_memo_refusals_total").increment(1);
        return Err(sold_out(category_id));
    }
    // Only requests that may create an order count: replays are free.
    let per_user = Limit { name: "orders_user", quota: state.config.order_limit_per_user, window: ORDER_LIMIT_WINDOW };
    if let Err(error) = timed(state, OrderPhase::Limit, limits::check(state, per_user, &user_id.to_string())).await {
        idempotency::abandon(state, claim).await;
        count_order(OrderOutcome::Refused(Reason::RateLimited));
        return Err(error);
    }
    match place(state, user_id, &request, &digest).await {
        Ok(placed) => {
            timed(state, OrderPhase::Complete, idempotency::complete(state, claim, &digest, placed.order.order.id))
                .await;
            count_order(if placed.replayed { OrderOutcome::Replayed } else { OrderOutcome::Created });
            Ok(placed)
        }
        Err(error) => {
            idempotency::abandon(state, claim).await;
            count_order(error.reason.map_or(OrderOutcome::Failed(error.code), OrderOutcome::Refused));
            Err(error)
        }
    }
}

/// A stage of placing an order, as `ticketing_order_phase_seconds{phase}`
/// times it: where a new order's time goes during a sale (Redis, waiting in
/// a batching lane, the database), which the request's own duration hides.
/// Its discriminant indexes [`OrderPhaseTimers`].
#[derive(Debug, Clone, Copy)]
enum OrderPhase {
    /// Claiming the idempotency key (Redis, then the database if Redis forgot).
    Claim = 0,
    /// The per-customer rate limit (Redis).
    Limit = 1,
    /// Reading the event and categories: the batched read, its lane's wait included.
    SaleRead = 2,
    /// The batched hold of the seats, its lane's wait included.
    Hold = 3,
    /// The hold of an order the batch found contended: alone, every bucket.
    ExactHold = 4,
    /// Recording the key's order for replays.
    Complete = 5,
}

impl OrderPhase {
    const ALL: [OrderPhase; 6] = [
        OrderPhase::Claim,
        OrderPhase::Limit,
        OrderPhase::SaleRead,
        OrderPhase::Hold,
        OrderPhase::ExactHold,
        OrderPhase::Complete,
    ];

    fn as_str(self) -> &'static str {
        match self {
            OrderPhase::Claim => "claim",
            OrderPhase::Limit => "limit",
            OrderPhase::SaleRead => "sale_read",
            OrderPhase::Hold => "hold",
            OrderPhase::ExactHold => "exact_hold",
            OrderPhase::Complete => "complete",
        }
    }
}

/// One histogram per [`OrderPhase`], registered once: every order records
/// five or six.
pub struct OrderPhaseTimers([metrics::Histogram; OrderPhase::ALL.len()]);

impl Default for OrderPhaseTimers {
    fn default() -> OrderPhaseTimers {
        OrderPhaseTimers(
            OrderPhase::ALL
                .map(|phase| metrics::histogram!("ticketing_order_phase_seconds", "phase" => phase.as_str())),
        )
    }
}

/// `work`, timed as `phase`. A request abandoned mid-stage (the client gone)
/// records nothing for that stage.
async fn timed<T>(state: &AppState, phase: OrderPhase, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let output = work.await;
    state.order_phases.0[phase as usize].record(started.elapsed().as_secs_f64());
    output
}

/// What happened to an order, as `ticketing_orders_total{outcome}` counts it.
#[derive(Debug, Clone, Copy)]
enum OrderOutcome {
    Created,
    Replayed,
    /// Moved to this status (paid, expired, cancelled, refunded).
    Became(OrderStatus),
    /// An expired order paid while its seats were still free.
    Revived,
    /// Refused with this reason (SOLD_OUT, SALES_CLOSED, …).
    Refused(Reason),
    /// Failed without a reason: the code's name.
    Failed(Code),
}

impl OrderOutcome {
    fn label(self) -> &'static str {
        match self {
            OrderOutcome::Created => "created",
            OrderOutcome::Replayed => "replayed",
            OrderOutcome::Became(status) => status.as_str(),
            OrderOutcome::Revived => "revived",
            OrderOutcome::Refused(reason) => reason.as_str(),
            OrderOutcome::Failed(code) => code.name(),
        }
    }
}

fn count_order(outcome: OrderOutcome) {
    count_orders(outcome, 1);
}

fn count_orders(outcome: OrderOutcome, count: u64) {
    metrics::counter!("ticketing_orders_total", "outcome" => outcome.label()).increment(count);
}

/// A digest of what the request asks for, independent of line order.
fn request_digest(request: &CreateOrder) -> String {
    let mut lines: Vec<_> = request.lines.iter().map(|l| (l.ticket_category_id, l.quantity)).collect();
    lines.sort();
    let canonical = lines.iter().fold(request.event_id.to_string(), |acc, (id, q)| format!("{acc}|{id}:{q}"));
    format!("{:x}", Sha256::digest(canonical.as_bytes()))
}

async fn replay(state: &AppState, order_id: Uuid) -> Result<Placed, Error> {
    let order = state.db.read(|conn| store::find_order(conn, order_id).scope_boxed()).await?;
    let order = order.ok_or_else(|| Error::internal(format!("idempotency record names missing order {order_id}")))?;
    Ok(Placed { order, replayed: true })
}

async fn place(state: &AppState, user_id: Uuid, request: &CreateOrder, digest: &str) -> Result<Placed, Error> {
    let now = Utc::now();
    let ids: Vec<Uuid> = request.lines.iter().map(|l| l.ticket_category_id).collect();
    // Read on the primary just before the hold, as a read inside its
    // transaction would be: reading locks nothing, under either.
    let found = timed(state, OrderPhase::SaleRead, state.sale_reads.decide((request.event_id, ids))).await?;
    let (event, categories) = found.ok_or_else(|| Error::not_found("event"))?;
    match event.status {
        EventStatus::Published => {}
        EventStatus::Draft => return Err(Error::not_found("event")),
        EventStatus::Cancelled => {
            return Err(Error::failed_precondition(Reason::EventNotPublished, "the event is cancelled"));
        }
    }
    let event_details = &event.details;
    waiting_room::require_admission(state, &event_details.waiting_room, &request.admission_token, event.id, user_id)?;
    let categories: HashMap<Uuid, CategoryForSale> = categories
        .into_iter()
        .map(|c| {
            let details = c.details();
            let (sales_start_time, sales_end_time) = details.sales_window(event_details);
            (
                c.id,
                CategoryForSale {
                    price: details.price,
                    max_per_order: c.max_per_order,
                    sales_start_time,
                    sales_end_time,
                },
            )
        })
        .collect();
    let (unit_prices, total) = orders::price_order(&request.lines, &categories, now)?;

    let hold_for = chrono::Duration::from_std(state.config.order_hold).map_err(Error::internal)?;
    let order = OrderWithItems::from(NewOrder {
        user_id,
        event_id: request.event_id,
        lines: &request.lines,
        unit_prices,
        total,
        idempotency_key: &request.idempotency_key,
        request_digest: digest,
        expire_time: now + hold_for,
        now,
    });
    // Most orders fit in one pass over unlocked buckets, batched with the
    // orders arriving alongside, which also says when a category is sold
    // out; a line that must be split over buckets near sell-out (or whose
    // buckets with room are all busy) takes a second pass, alone.
    // 0 is no limit to the hold (only ever to measure the limit's cost).
    let customer_limit =
        if state.config.enforce_tickets_per_customer { event_details.max_tickets_per_customer() } else { 0 };
    let request_hold = HoldRequest { order, customer_limit };
    let mut hold = timed(state, OrderPhase::Hold, state.hold_queue.decide(request_hold.clone())).await;
    if hold.as_ref().is_ok_and(|h| *h == Hold::Contended) {
        metrics::counter!("ticketing_order_exact_holds_total").increment(1);
        // Boxed, as every rare path of a hot call is: a future carries (and
        // moves, memcpy by memcpy) the largest of the futures it awaits.
        let exact = Box::pin(store::hold_exact(&state.db, &request_hold, state.config.max_pending_orders));
        hold = timed(state, OrderPhase::ExactHold, exact).await.map_err(Error::from);
    }
    let order = request_hold.order;
    match hold {
        Ok(Hold::Held) => {
            state.live.availability_changed(request.event_id);
            Ok(Placed { order, replayed: false })
        }
        Ok(Hold::CustomerLimit { held }) => Err(Error::new(
            Code::Aborted,
            format!("at most {customer_limit} tickets per customer for this event; you hold {held}"),
        )
        .with_reason(Reason::CustomerLimitExceeded)
        .with_metadata("limit", customer_limit.to_string())
        .with_metadata("held", held.to_string())),
        Ok(Hold::SoldOut(category_id)) => {
            state.sold_out.remember(category_id, &request.lines).await;
            Err(sold_out(category_id))
        }
        Ok(Hold::Contended) => Err(Error::internal("the exact inventory pass found the buckets contended")),
        Ok(Hold::PendingLimit) => {
            let limit = state.config.max_pending_orders;
            Err(Error::failed_precondition(
                Reason::PendingOrderLimit,
                format!("you hold {limit} unpaid orders already: pay or cancel one first"),
            )
            .with_metadata("limit", limit.to_string()))
        }
        Err(error) if error.reason == Some(Reason::IdempotencyRace) => {
            // The unique (user, key) index found an order made with this
            // key: a concurrent request committed first, or Redis forgot
            // an older one. This is the database check; no pre-check
            // costs the hot path a query.
            let existing = state
                .db
                .read(|conn| store::find_by_idempotency_key(conn, user_id, &request.idempotency_key).scope_boxed())
                .await?
                .ok_or_else(|| Error::internal("idempotency conflict without an order"))?;
            replay_existing(existing, digest).map_err(Error::from)
        }
        Err(error) => Err(error),
    }
}

fn replay_existing(existing: OrderWithItems, digest: &str) -> Result<Placed, StoreError> {
    if existing.order.request_digest != digest {
        return Err(idempotency::reused().into());
    }
    Ok(Placed { order: existing, replayed: true })
}

/// The owner, the event's organizer and admins see an order; anyone else is
/// told it does not exist.
async fn visible_order(conn: &mut Conn, caller: &Principal, order_id: Uuid) -> Result<OrderWithItems, StoreError> {
    let not_found = || StoreError::from(Error::not_found("order"));
    let order = store::find_order(conn, order_id).await?.ok_or_else(not_found)?;
    if order.order.user_id == caller.user_id || caller.role == Role::Admin {
        return Ok(order);
    }
    if caller.role == Role::Organizer {
        let event = events::find_event(conn, order.order.event_id).await?;
        if event.is_some_and(|e| e.organizer_id == caller.user_id) {
            return Ok(order);
        }
    }
    Err(not_found())
}

#[tracing::instrument(name = "orders.get_order", skip_all)]
pub async fn get_order(state: &AppState, caller: &Principal, order_id: Uuid) -> Result<OrderWithItems, Error> {
    state.db.read(|conn| visible_order(conn, caller, order_id).scope_boxed()).await
}

pub struct OrderPage {
    pub orders: Vec<OrderWithItems>,
    pub next_page_token: String,
}

/// The caller's own orders, newest first.
#[tracing::instrument(name = "orders.list_orders", skip_all)]
pub async fn list_orders(
    state: &AppState,
    caller: &Principal,
    page_size: i32,
    page_token: &str,
) -> Result<OrderPage, Error> {
    let limit = paging::page_size(page_size)?;
    let before = Cursor::decode(page_token)?.map(|c| c.id);
    let user_id = caller.user_id;
    let orders = state.db.read(|conn| store::list_user_orders(conn, user_id, before, limit).scope_boxed()).await?;
    let next_page_token = paging::next_page_token(&orders, limit, |last| {
        Cursor { time: last.order.created_at, id: last.order.id }.encode()
    });
    Ok(OrderPage { orders, next_page_token })
}

/// Tickets of a paid order (none before it is paid); the owner's only.
#[tracing::instrument(name = "orders.list_tickets", skip_all)]
pub async fn list_tickets(state: &AppState, caller: &Principal, order_id: Uuid) -> Result<Vec<TicketRow>, Error> {
    let user_id = caller.user_id;
    state
        .db
        .read(|conn| {
            async move {
                let order = store::find_order(conn, order_id).await?;
                if order.is_none_or(|o| o.order.user_id != user_id) {
                    return Err(Error::not_found("order").into());
                }
                store::tickets_of_order(conn, order_id).await
            }
            .scope_boxed()
        })
        .await
}

/// Moves one order to `next` under its row lock, giving its tickets back when
/// the new status no longer holds them.
async fn transition(conn: &mut Conn, order: OrderWithItems, next: OrderStatus) -> Result<OrderWithItems, StoreError> {
    let current = order.order.status;
    current.transition(next)?;
    let row = store::set_order_status(conn, order.order.id, next).await?;
    if current.holds_inventory() && !next.holds_inventory() {
        release_items(conn, &order.items).await?;
    }
    Ok(OrderWithItems { order: row, items: order.items })
}

/// Releases quantities per category, categories in id order.
async fn release_items<'a>(
    conn: &mut Conn,
    items: impl IntoIterator<Item = &'a OrderItemRow>,
) -> Result<(), StoreError> {
    for (category_id, quantity) in quantities_per_category(items) {
        inventory::release(conn, category_id, quantity).await?;
    }
    Ok(())
}

/// Quantities summed per category, categories in id order (the lock order
/// every inventory change follows).
fn quantities_per_category<'a>(items: impl IntoIterator<Item = &'a OrderItemRow>) -> BTreeMap<Uuid, i32> {
    let mut per_category = BTreeMap::new();
    for item in items {
        *per_category.entry(item.ticket_category_id).or_default() += item.quantity;
    }
    per_category
}

/// PENDING → CANCELLED by its owner; the tickets return to sale at once.
#[tracing::instrument(name = "orders.cancel_order", skip_all)]
pub async fn cancel_order(state: &AppState, caller: &Principal, order_id: Uuid) -> Result<OrderWithItems, Error> {
    move_order(state, order_id, Some(caller.user_id), OrderStatus::Cancelled).await
}

/// What a confirmed payment did to its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// PENDING → PAID, tickets issued.
    Paid,
    /// EXPIRED → PAID: the tickets were still for sale and are taken again.
    Revived,
    /// The order cannot be kept (expired and sold out since, cancelled, or
    /// its event cancelled): the money must go back.
    Unkeepable,
    /// Already paid (or refunded): nothing to do.
    AlreadySettled,
}

/// Marks a locked order paid and issues its tickets, in the caller's
/// transaction (the payment's): an order is PAID exactly when its tickets
/// exist and its confirmation is queued.
pub(crate) async fn settle(
    conn: &mut Conn,
    master: &MasterKey,
    whatsapp: bool,
    order: &OrderWithItems,
) -> Result<Settled, StoreError> {
    // Read after the order's lock: a cancellation that committed first is
    // seen here; one that commits later finds the order PAID and refunds it.
    let event = events::find_event(conn, order.order.event_id).await?;
    if event.is_some_and(|e| e.status == EventStatus::Cancelled) {
        if order.order.status == OrderStatus::Pending {
            cancel_locked(conn, order.clone()).await?;
        }
        return Ok(match order.order.status {
            OrderStatus::Paid | OrderStatus::Refunded => Settled::AlreadySettled,
            _ => Settled::Unkeepable,
        });
    }
    let settled = match order.order.status {
        OrderStatus::Pending => Settled::Paid,
        OrderStatus::Expired if retake_items(conn, &order.items).await? => Settled::Revived,
        OrderStatus::Expired | OrderStatus::Cancelled => return Ok(Settled::Unkeepable),
        OrderStatus::Paid | OrderStatus::Refunded => return Ok(Settled::AlreadySettled),
    };
    order.order.status.transition(OrderStatus::Paid)?;
    store::set_order_status(conn, order.order.id, OrderStatus::Paid).await?;
    tickets::issue(conn, master, order).await?;
    let order_id = order.order.id;
    SendOrderConfirmation { order_id }.enqueue(conn).await?;
    if whatsapp {
        SendOrderWhatsApp { order_id }.enqueue(conn).await?;
    }
    count_order(if settled == Settled::Revived {
        OrderOutcome::Revived
    } else {
        OrderOutcome::Became(OrderStatus::Paid)
    });
    Ok(settled)
}

/// A paid order became REFUNDED (its refund moved it, `app::refunds`).
pub(crate) fn count_refunded_order() {
    count_order(OrderOutcome::Became(OrderStatus::Refunded));
}

/// PENDING → CANCELLED for a locked order of a cancelled event: its tickets
/// return (the sweep of `app::refunds`).
pub(crate) async fn cancel_locked(conn: &mut Conn, order: OrderWithItems) -> Result<(), StoreError> {
    transition(conn, order, OrderStatus::Cancelled).await?;
    count_order(OrderOutcome::Became(OrderStatus::Cancelled));
    Ok(())
}

/// Takes an expired order's tickets again, all or none (nothing is taken
/// when one category has sold out meanwhile).
async fn retake_items(conn: &mut Conn, items: &[OrderItemRow]) -> Result<bool, StoreError> {
    let lines: Vec<(Uuid, i32)> = quantities_per_category(items).into_iter().collect();
    Ok(inventory::take_exact(conn, &lines).await?.is_none())
}

/// Moves one order under its row lock, which orders payment, expiry and
/// cancellation of that order one after another: it ends in exactly one
/// state. With `owner`, anyone else is told the order does not exist.
async fn move_order(
    state: &AppState,
    order_id: Uuid,
    owner: Option<Uuid>,
    next: OrderStatus,
) -> Result<OrderWithItems, Error> {
    state
        .db
        .write(|conn| {
            async move {
                let order = store::lock_order(conn, order_id).await?;
                let order = order
                    .filter(|o| owner.is_none_or(|user_id| o.order.user_id == user_id))
                    .ok_or_else(|| Error::not_found("order"))?;
                transition(conn, order, next).await
            }
            .scope_boxed()
        })
        .await
        .inspect(|order| {
            count_order(OrderOutcome::Became(next));
            state.live.availability_changed(order.order.event_id);
        })
}

/// One batch of the expiry worker: pending orders past `expire_time` become
/// EXPIRED and give their tickets back. Rows locked by another worker or a
/// payment in progress are skipped (taken by the next batch if still due),
/// so any number of workers can run. Returns how many orders expired.
#[tracing::instrument(name = "orders.expire_due_orders", skip_all)]
pub async fn expire_due_orders(state: &AppState, batch: i64) -> Result<usize, Error> {
    state
        .db
        .write(|conn| {
            async move {
                let due = store::claim_expired(conn, Utc::now(), batch).await?;
                if due.is_empty() {
                    return Ok(Vec::new());
                }
                let ids: Vec<Uuid> = due.iter().map(|o| o.order.id).collect();
                store::mark_orders(conn, &ids, OrderStatus::Expired).await?;
                release_items(conn, due.iter().flat_map(|o| &o.items)).await?;
                Ok(due.iter().map(|o| o.order.event_id).collect::<Vec<_>>())
            }
            .scope_boxed()
        })
        .await
        .map(|mut events| {
            let expired = events.len();
            count_orders(OrderOutcome::Became(OrderStatus::Expired), expired as u64);
            events.sort_unstable();
            events.dedup();
            events.into_iter().for_each(|event| state.live.availability_changed(event));
            expired
        })
}

fn sold_out(category_id: Uuid) -> Error {
    Error::new(Code::Aborted, "not enough tickets left in this category")
        .with_reason(Reason::SoldOut)
        .with_metadata(SOLD_OUT_CATEGORY, category_id.to_string())
}

const SOLD_OUT_CATEGORY: &str = "ticketCategoryId";

/// Categories this replica saw sell out within the last `SOLD_OUT_MEMO_MS`,
/// with the smallest quantity refused. After a sell-out buyers keep arriving
/// by the thousand, and each refusal from the database costs a place in a
/// hold batch, a write transaction on the hottest rows; from memory it
/// costs nothing. A request for fewer tickets than were refused
/// still goes to the database (the last few seats), and Postgres stays the
/// authority: a seat that comes back (an order expired or was cancelled) is
/// on sale again here once the memo lapses.
#[derive(Clone)]
pub struct SoldOutMemo(Option<moka::future::Cache<Uuid, i32>>);

impl SoldOutMemo {
    pub fn new(lifetime: std::time::Duration) -> SoldOutMemo {
        SoldOutMemo((!lifetime.is_zero()).then(|| moka::future::Cache::builder().time_to_live(lifetime).build()))
    }

    /// A category of the request that cannot have as many tickets left as it asks for.
    async fn refuses(&self, lines: &[OrderLine]) -> Option<Uuid> {
        let memo = self.0.as_ref()?;
        for line in lines {
            if memo.get(&line.ticket_category_id).await.is_some_and(|refused| line.quantity >= refused) {
                return Some(line.ticket_category_id);
            }
        }
        None
    }

    /// The database refused `lines` because `category_id` sold out.
    async fn remember(&self, category_id: Uuid, lines: &[OrderLine]) {
        let Some(memo) = &self.0 else { return };
        // One line per category (the domain refuses a category twice).
        let Some(quantity) = lines.iter().find(|line| line.ticket_category_id == category_id).map(|line| line.quantity)
        else {
            return;
        };
        let smallest = memo.get(&category_id).await.map_or(quantity, |refused| refused.min(quantity));
        memo.insert(category_id, smallest).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn line(ticket_category_id: Uuid, quantity: i32) -> OrderLine {
        OrderLine { ticket_category_id, quantity }
    }

    #[tokio::test]
    async fn a_sell_out_is_remembered_for_its_category_and_quantity_then_forgotten() {
        // Long beside the calls below, which must land inside it.
        let memo = SoldOutMemo::new(Duration::from_secs(2));
        let (gone, other) = (Uuid::now_v7(), Uuid::now_v7());

        memo.remember(gone, &[line(gone, 2)]).await;

        assert_eq!(
            memo.refuses(&[line(other, 1), line(gone, 3)]).await,
            Some(gone),
            "one short line refuses the order"
        );
        assert_eq!(memo.refuses(&[line(gone, 2)]).await, Some(gone));
        assert_eq!(memo.refuses(&[line(gone, 1)]).await, None, "the last seat may still be there: ask the database");
        assert_eq!(memo.refuses(&[line(other, 4)]).await, None);
        memo.remember(gone, &[line(gone, 1)]).await;
        assert_eq!(memo.refuses(&[line(gone, 1)]).await, Some(gone), "now none is left");
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert_eq!(memo.refuses(&[line(gone, 1)]).await, None, "seats may have come back: ask the database again");
    }

    #[tokio::test]
    async fn a_zero_lifetime_remembers_nothing() {
        let category = Uuid::now_v7();
        let off = SoldOutMemo::new(Duration::ZERO);
        off.remember(category, &[line(category, 1)]).await;
        assert_eq!(off.refuses(&[line(category, 1)]).await, None);
    }
}
