//! Giving money back. An organizer refunds an order or some of its tickets;
//! an event's cancellation refunds every paid order; a payment that arrives
//! for an order that could not be kept is refunded; a refund made at
//! Midtrans itself is recorded. Each is one `refunds` row written with its
//! effects in one transaction under the order's row lock — its tickets void
//! (each refunded once: the database's key), the seats back on sale unless
//! kept off, the order REFUNDED once every ticket is, the order's refunded
//! total within what was paid (the database's check) — and paid back by the
//! `IssueRefund` job through Midtrans, or by a person where Midtrans cannot
//! refund the method (`MANUAL_REQUIRED`). The buyer is e-mailed at each step.

use std::collections::BTreeMap;

use scoped_futures::ScopedFutureExt;
use sha2::{Digest, Sha256};
use ticketing_domain::{
    Code, Error, Reason,
    audit::AuditAction,
    error::Violations,
    identity::Principal,
    orders::{self as order_rules, MAX_TICKETS_PER_ORDER, OrderStatus},
    paging,
    refunds::{self as rules, RefundCause, RefundStatus},
};
use ticketing_store::{
    Conn, StoreError,
    audit::{self, NewAuditEntry},
    events, inventory,
    orders::{self as order_store, OrderWithItems},
    payments::{self as payment_store, PaymentRow},
    refunds::{self as store, NewRefund, RefundRow, RefundableTicket},
};
use uuid::Uuid;

use crate::{
    AppState,
    app::{
        catalog::{self, Access},
        idempotency,
        jobs::{IssueRefund, Job, SendRefundNotice},
        orders,
    },
};

/// What an organizer asks for.
pub struct RefundOrder {
    pub order_id: Uuid,
    /// Empty: every ticket of the order not refunded yet.
    pub ticket_ids: Vec<Uuid>,
    pub reason: String,
    /// False keeps the seats off sale (a broken seat, a blocked view).
    pub return_to_sale: bool,
    pub idempotency_key: String,
}

pub struct Issued {
    pub refund: RefundRow,
    /// An earlier request with the same key made this refund.
    pub replayed: bool,
}

/// The reason a cancellation's refunds carry.
const CANCELLATION_REASON: &str = "The event was cancelled.";

#[tracing::instrument(name = "refunds.refund_order", skip_all)]
pub async fn refund_order(state: &AppState, caller: &Principal, request: RefundOrder) -> Result<Issued, Error> {
    if request.idempotency_key.is_empty() {
        return Err(Error::invalid_argument(
            "an idempotency key is required: the Idempotency-Key header on REST, request_id on gRPC",
        )
        .with_reason(Reason::IdempotencyKeyRequired));
    }
    order_rules::validate_idempotency_key(&request.idempotency_key)?;
    let mut violations = Violations::default();
    rules::validate_reason(&request.reason, &mut violations);
    violations.check(
        request.ticket_ids.len() <= MAX_TICKETS_PER_ORDER as usize,
        "ticketIds",
        "an order has at most 20 tickets",
    );
    let mut distinct = request.ticket_ids.clone();
    distinct.sort();
    distinct.dedup();
    violations.check(distinct.len() == request.ticket_ids.len(), "ticketIds", "names a ticket twice");
    violations.into_result()?;
    let digest = refund_digest(&request, &distinct);
    let caller = caller.clone();
    let issued = state
        .db
        .write(|conn| {
            async move {
                let order = lock_managed_order(conn, &caller, request.order_id).await?;
                let key = request.idempotency_key.as_str();
                if let Some(earlier) = store::find_by_idempotency_key(conn, caller.user_id, key).await? {
                    if earlier.request_digest.as_deref() != Some(digest.as_str()) {
                        return Err(idempotency::reused().into());
                    }
                    return Ok(Issued { refund: earlier, replayed: true });
                }
                let refund = issue(
                    conn,
                    &order,
                    Refunding {
                        cause: RefundCause::Organizer,
                        tickets: (!distinct.is_empty()).then_some(distinct.as_slice()),
                        reason: request.reason.trim(),
                        return_to_sale: request.return_to_sale,
                        requested_by: Some(caller.user_id),
                        idempotency: Some((key, &digest)),
                    },
                )
                .await?
                // The key's unique index: a concurrent request with this key
                // (for another order) committed first.
                .ok_or_else(|| {
                    Error::new(Code::Aborted, "a request with this idempotency key is in progress")
                        .with_reason(Reason::IdempotencyKeyInUse)
                })?;
                audit::record(
                    conn,
                    NewAuditEntry {
                        event_id: order.order.event_id,
                        actor_id: Some(caller.user_id),
                        api_key_id: caller.api_key,
                        action: AuditAction::RefundRequested,
                        subject_id: &refund.id.to_string(),
                        before: Some(serde_json::json!({ "orderStatus": order.order.status.as_str() })),
                        after: Some(refund_summary(&refund)),
                    },
                )
                .await?;
                Ok(Issued { refund, replayed: false })
            }
            .scope_boxed()
        })
        .await?;
    if !issued.replayed {
        count_refund(issued.refund.cause, issued.refund.status);
        state.live.availability_changed(issued.refund.event_id);
    }
    Ok(issued)
}

/// A digest of what the request asks for (ticket order does not matter).
fn refund_digest(request: &RefundOrder, sorted_tickets: &[Uuid]) -> String {
    let tickets: Vec<String> = sorted_tickets.iter().map(Uuid::to_string).collect();
    let canonical =
        format!("{}|{}|{}|{}", request.order_id, tickets.join(","), request.return_to_sale, request.reason.trim());
    format!("{:x}", Sha256::digest(canonical.as_bytes()))
}

/// The order, locked, when the caller manages its event. The buyer sees
/// their order but may not refund it (PERMISSION_DENIED); anyone else is
/// told it does not exist.
async fn lock_managed_order(conn: &mut Conn, caller: &Principal, order_id: Uuid) -> Result<OrderWithItems, StoreError> {
    let order = order_store::lock_order(conn, order_id).await?.ok_or_else(|| Error::not_found("order"))?;
    let event = events::find_event(conn, order.order.event_id).await?;
    if event.is_some_and(|e| caller.can_manage_event(e.organizer_id)) {
        return Ok(order);
    }
    if order.order.user_id == caller.user_id {
        return Err(Error::permission_denied("only the event's organizer or an admin may refund an order").into());
    }
    Err(Error::not_found("order").into())
}

/// One refund to write.
struct Refunding<'a> {
    cause: RefundCause,
    /// `None`: every ticket not refunded yet.
    tickets: Option<&'a [Uuid]>,
    reason: &'a str,
    return_to_sale: bool,
    requested_by: Option<Uuid>,
    /// The caller's key and the request's digest.
    idempotency: Option<(&'a str, &'a str)>,
}

/// Refunds tickets of a locked PAID order, in the caller's transaction;
/// `None` when a unique index says the refund exists already.
async fn issue(
    conn: &mut Conn,
    order: &OrderWithItems,
    refunding: Refunding<'_>,
) -> Result<Option<RefundRow>, StoreError> {
    ensure_paid(order)?;
    let tickets = store::tickets_for_refund(conn, &[order.order.id]).await?;
    let chosen: Vec<&RefundableTicket> = match refunding.tickets {
        Some(ids) => {
            let mut chosen = Vec::with_capacity(ids.len());
            for (i, id) in ids.iter().enumerate() {
                let ticket = tickets
                    .iter()
                    .find(|t| t.id == *id)
                    .ok_or_else(|| Error::invalid_field(&format!("ticketIds[{i}]"), "is not a ticket of this order"))?;
                if ticket.refunded {
                    return Err(Error::failed_precondition(Reason::AlreadyRefunded, "this ticket is refunded already")
                        .with_metadata("ticketId", id.to_string())
                        .into());
                }
                chosen.push(ticket);
            }
            chosen
        }
        None => tickets.iter().filter(|t| !t.refunded).collect(),
    };
    let payment_types = payment_store::payment_types(conn, &[order.order.id]).await?;
    let plan = plan(order, &tickets, chosen, &payment_types, &refunding)?;
    Ok(write(conn, vec![plan], &refunding).await?.pop())
}

/// Refunds every ticket not refunded yet of many locked PAID orders at once
/// (an event's cancellation), in the caller's transaction: a few statements
/// for the lot, not a few per order.
async fn issue_whole_orders(
    conn: &mut Conn,
    orders: &[&OrderWithItems],
    refunding: &Refunding<'_>,
) -> Result<Vec<RefundRow>, StoreError> {
    let ids: Vec<Uuid> = orders.iter().map(|o| o.order.id).collect();
    let tickets = store::tickets_for_refund(conn, &ids).await?;
    let payment_types = payment_store::payment_types(conn, &ids).await?;
    let mut plans = Vec::with_capacity(orders.len());
    for order in orders {
        ensure_paid(order)?;
        let own: Vec<RefundableTicket> = tickets.iter().filter(|t| t.order_id == order.order.id).cloned().collect();
        let chosen = own.iter().filter(|t| !t.refunded).collect();
        plans.push(plan(order, &own, chosen, &payment_types, refunding)?);
    }
    write(conn, plans, refunding).await
}

/// Only a paid order's tickets are refunded.
fn ensure_paid(order: &OrderWithItems) -> Result<(), Error> {
    match order.order.status {
        OrderStatus::Paid => Ok(()),
        OrderStatus::Refunded => {
            Err(Error::failed_precondition(Reason::AlreadyRefunded, "every ticket of this order is refunded"))
        }
        status => Err(Error::failed_precondition(
            Reason::OrderNotPaid,
            format!("the order is {status}; only a paid order's tickets can be refunded"),
        )),
    }
}

/// One refund decided: its row, the seats it gives back per category, and
/// whether it leaves the order with no valid ticket.
struct Planned {
    id: Uuid,
    order: OrderWithItems,
    ticket_ids: Vec<Uuid>,
    amount: i64,
    status: RefundStatus,
    payment_type: Option<String>,
    per_category: BTreeMap<Uuid, i32>,
    completes: bool,
}

/// Refunding `chosen` of the order's `tickets`: what was paid for them, and
/// where the refund starts (a method Midtrans cannot refund by API goes to a
/// person at once).
fn plan(
    order: &OrderWithItems,
    tickets: &[RefundableTicket],
    chosen: Vec<&RefundableTicket>,
    payment_types: &std::collections::HashMap<Uuid, String>,
    refunding: &Refunding<'_>,
) -> Result<Planned, Error> {
    if chosen.is_empty() {
        return Err(Error::failed_precondition(Reason::AlreadyRefunded, "every ticket of this order is refunded"));
    }
    let mut per_category: BTreeMap<Uuid, i32> = BTreeMap::new();
    for ticket in &chosen {
        *per_category.entry(ticket.ticket_category_id).or_default() += 1;
    }
    let mut amount = 0i64;
    for (category_id, count) in &per_category {
        let item = order.items.iter().find(|i| i.ticket_category_id == *category_id);
        let unit = item.ok_or_else(|| Error::internal("a ticket of a category the order does not list"))?;
        amount += unit.unit_price_units * i64::from(*count);
    }
    let payment_type = payment_types.get(&order.order.id).cloned();
    let status = match refunding.cause {
        RefundCause::Provider => RefundStatus::Succeeded,
        _ => rules::initial_status(payment_type.as_deref()),
    };
    let completes = chosen.len() == tickets.iter().filter(|t| !t.refunded).count();
    if completes {
        order.order.status.transition(OrderStatus::Refunded)?;
    }
    Ok(Planned {
        id: Uuid::now_v7(),
        order: order.clone(),
        ticket_ids: chosen.iter().map(|t| t.id).collect(),
        amount,
        status,
        payment_type,
        per_category,
        completes,
    })
}

/// Writes planned refunds with their effects: the rows, the orders' totals
/// and statuses, the tickets void, the seats back on sale (or, kept off
/// sale, out of the capacity too), Midtrans's calls and the buyers' e-mails.
/// A plan a unique index refuses is skipped whole.
async fn write(conn: &mut Conn, plans: Vec<Planned>, refunding: &Refunding<'_>) -> Result<Vec<RefundRow>, StoreError> {
    let rows: Vec<(NewRefund<'_>, bool)> = plans
        .iter()
        .map(|plan| {
            let refund = NewRefund {
                id: plan.id,
                order_id: plan.order.order.id,
                event_id: plan.order.order.event_id,
                cause: refunding.cause,
                ticket_ids: &plan.ticket_ids,
                currency_code: &plan.order.order.currency_code,
                amount_units: plan.amount,
                status: plan.status,
                reason: refunding.reason,
                return_to_sale: refunding.return_to_sale,
                payment_type: plan.payment_type.as_deref(),
                requested_by: refunding.requested_by,
                idempotency_key: refunding.idempotency.map(|(key, _)| key),
                request_digest: refunding.idempotency.map(|(_, digest)| digest),
            };
            (refund, plan.completes)
        })
        .collect();
    let written = store::insert_refunds(conn, &rows).await?;
    let mut per_category: BTreeMap<Uuid, i32> = BTreeMap::new();
    for plan in plans.iter().filter(|p| written.iter().any(|w| w.id == p.id)) {
        for (category_id, count) in &plan.per_category {
            *per_category.entry(*category_id).or_default() += count;
        }
        if plan.completes {
            orders::count_refunded_order();
        }
    }
    // Categories in id order, the lock order of every inventory change.
    for (category_id, count) in per_category {
        if refunding.return_to_sale {
            inventory::release(conn, category_id, count).await?;
        } else {
            inventory::withdraw(conn, category_id, count).await?;
        }
    }
    follow_up(conn, &written).await?;
    Ok(written)
}

/// What new refunds need next: Midtrans's refund call while PENDING, and
/// the buyer's e-mail in every case.
async fn follow_up(conn: &mut Conn, refunds: &[RefundRow]) -> Result<(), StoreError> {
    let calls: Vec<IssueRefund> =
        refunds.iter().filter(|r| r.status == RefundStatus::Pending).map(|r| IssueRefund { refund_id: r.id }).collect();
    IssueRefund::enqueue_all(&calls, conn).await?;
    let notices: Vec<SendRefundNotice> =
        refunds.iter().map(|r| SendRefundNotice { refund_id: r.id, status: r.status }).collect();
    SendRefundNotice::enqueue_all(&notices, conn).await
}

/// Money arrived for an order that cannot be kept (expired and sold out
/// since, cancelled, or its event cancelled): all of it goes back.
pub(crate) async fn refund_unkept_payment(
    conn: &mut Conn,
    order: &OrderWithItems,
    payment: &PaymentRow,
    reason: &str,
) -> Result<(), StoreError> {
    let refund = NewRefund {
        id: Uuid::now_v7(),
        order_id: order.order.id,
        event_id: order.order.event_id,
        cause: RefundCause::UnkeptPayment,
        ticket_ids: &[],
        currency_code: &order.order.currency_code,
        amount_units: payment.gross_amount,
        status: rules::initial_status(payment.payment_type.as_deref()),
        reason,
        return_to_sale: false,
        payment_type: payment.payment_type.as_deref(),
        requested_by: None,
        idempotency_key: None,
        request_digest: None,
    };
    let written = store::insert_refunds(conn, &[(refund, false)]).await?;
    for refund in &written {
        count_refund(refund.cause, refund.status);
    }
    follow_up(conn, &written).await
}

/// Midtrans says a paid order's money went back (its dashboard, a
/// chargeback): the tickets still valid are refunded as done.
pub(crate) async fn record_provider_refund(conn: &mut Conn, order: &OrderWithItems) -> Result<(), StoreError> {
    let refunding = Refunding {
        cause: RefundCause::Provider,
        tickets: None,
        reason: "Refunded at Midtrans.",
        return_to_sale: true,
        requested_by: None,
        idempotency: None,
    };
    if let Some(refund) = issue(conn, order, refunding).await? {
        count_refund(refund.cause, refund.status);
    }
    Ok(())
}

/// `ticketing_refunds_total{cause, status}`: refunds made, by how they started.
fn count_refund(cause: RefundCause, status: RefundStatus) {
    metrics::counter!("ticketing_refunds_total", "cause" => cause.as_str(), "status" => status.as_str()).increment(1);
}

pub struct RefundPage {
    pub refunds: Vec<RefundRow>,
    pub next_page_token: String,
}

/// An event's refunds for its organizer, oldest first, of one status or all.
#[tracing::instrument(name = "refunds.list_refunds", skip_all)]
pub async fn list_refunds(
    state: &AppState,
    caller: &Principal,
    event_id: Uuid,
    status: Option<RefundStatus>,
    page_size: i32,
    page_token: &str,
) -> Result<RefundPage, Error> {
    let limit = paging::page_size(page_size)?;
    let after = paging::Cursor::decode(page_token)?.map(|c| c.id);
    let refunds = catalog::as_event_manager(state, caller, event_id, Access::Primary, move |conn| {
        store::list_refunds(conn, event_id, status, after, limit).scope_boxed()
    })
    .await?;
    let next_page_token =
        paging::next_page_token(&refunds, limit, |last| paging::Cursor { time: last.created_at, id: last.id }.encode());
    Ok(RefundPage { refunds, next_page_token })
}

/// A person paid a MANUAL_REQUIRED (or FAILED) refund back by hand: closed
/// with who, when and the bank's reference.
#[tracing::instrument(name = "refunds.complete_manual_refund", skip_all)]
pub async fn complete_manual_refund(
    state: &AppState,
    caller: &Principal,
    refund_id: Uuid,
    reference: String,
) -> Result<RefundRow, Error> {
    let mut violations = Violations::default();
    rules::validate_reference(&reference, &mut violations);
    violations.into_result()?;
    let caller = caller.clone();
    let refund = state
        .db
        .write(|conn| {
            async move {
                let refund = store::lock_refund(conn, refund_id).await?.ok_or_else(|| Error::not_found("refund"))?;
                let event = events::find_event(conn, refund.event_id).await?;
                if !event.is_some_and(|e| caller.can_manage_event(e.organizer_id)) {
                    return Err(Error::not_found("refund").into());
                }
                if !refund.status.awaits_a_person() {
                    return Err(Error::failed_precondition(
                        Reason::RefundNotManual,
                        format!("the refund is {}; only a manual or failed refund is completed by hand", refund.status),
                    )
                    .into());
                }
                let done = store::complete_manually(conn, refund_id, caller.user_id, reference.trim()).await?;
                audit::record(
                    conn,
                    NewAuditEntry {
                        event_id: refund.event_id,
                        actor_id: Some(caller.user_id),
                        api_key_id: caller.api_key,
                        action: AuditAction::RefundCompletedManually,
                        subject_id: &refund_id.to_string(),
                        before: Some(refund_summary(&refund)),
                        after: Some(refund_summary(&done)),
                    },
                )
                .await?;
                SendRefundNotice { refund_id, status: done.status }.enqueue(conn).await?;
                Ok(done)
            }
            .scope_boxed()
        })
        .await?;
    Ok(refund)
}

/// What the audit trail keeps of a refund.
fn refund_summary(refund: &RefundRow) -> serde_json::Value {
    serde_json::json!({
        "refundId": refund.id,
        "orderId": refund.order_id,
        "status": refund.status.as_str(),
        "amount": refund.amount_units,
        "currencyCode": refund.currency_code,
        "ticketIds": refund.ticket_ids,
        "reason": refund.reason,
        "returnToSale": refund.return_to_sale,
        "manualReference": refund.manual_reference,
    })
}

/// Orders one sweep transaction handles at most: its locks stay short.
const SWEEP_CHUNK: i64 = 100;

/// Up to `limit` of the event's live orders, in one transaction; none left
/// marks its sweep done. Returns how many it handled.
async fn sweep_chunk(state: &AppState, event_id: Uuid, limit: i64) -> Result<usize, Error> {
    let (count, refunds) = state
        .db
        .write(|conn| {
            async move {
                let due = order_store::claim_live_orders_of_event(conn, event_id, limit).await?;
                if due.is_empty() {
                    events::mark_cancellation_settled(conn, event_id).await?;
                    return Ok((0, Vec::new()));
                }
                let (paid, pending): (Vec<&OrderWithItems>, Vec<&OrderWithItems>) =
                    due.iter().partition(|o| o.order.status == OrderStatus::Paid);
                for order in pending {
                    orders::cancel_locked(conn, order.clone()).await?;
                }
                // Released: nothing is sold for a cancelled event.
                let refunding = Refunding {
                    cause: RefundCause::EventCancelled,
                    tickets: None,
                    reason: CANCELLATION_REASON,
                    return_to_sale: true,
                    requested_by: None,
                    idempotency: None,
                };
                let written = issue_whole_orders(conn, &paid, &refunding).await?;
                Ok((due.len(), written.into_iter().map(|r| r.status).collect::<Vec<_>>()))
            }
            .scope_boxed()
        })
        .await?;
    for status in refunds {
        count_refund(RefundCause::EventCancelled, status);
    }
    Ok(count)
}

/// One pass of the cancellation sweep, at most `budget` orders: a cancelled
/// event's PENDING orders are cancelled (holds released) and its PAID orders
/// refunded, each exactly once (the order's lock and the refunds' unique
/// index), so a sweep killed mid-way and run again finishes the work. It
/// waits for orders a payment holds rather than skipping them, so a payment
/// that settles while the event is cancelled is refunded too; an event is
/// done when a pass finds nothing left. Returns the orders handled.
#[tracing::instrument(name = "refunds.sweep_cancellations", skip_all)]
pub async fn sweep_cancellations(state: &AppState, budget: i64) -> Result<usize, Error> {
    let cancelled = state.db.read(|conn| events::cancellations_in_progress(conn).scope_boxed()).await?;
    let mut handled = 0usize;
    for event_id in cancelled {
        loop {
            let chunk = (budget - handled as i64).min(SWEEP_CHUNK);
            if chunk <= 0 {
                return Ok(handled);
            }
            let count = sweep_chunk(state, event_id, chunk).await?;
            handled += count;
            if (count as i64) < chunk {
                break;
            }
        }
    }
    Ok(handled)
}
