//! Catalog use cases, and the catalog's read policy in one place: public
//! reads go to the replica through the catalog cache; anything an organizer
//! does, reads included, goes to the primary so they see their own writes,
//! and every write puts the event's page, read from the primary, in the cache.

use chrono::Utc;
use prost::Message;
use scoped_futures::{ScopedBoxFuture, ScopedFutureExt};
use ticketing_domain::{
    Error,
    audit::AuditAction,
    catalog::{CategoryDetails, CategoryPatch, EventDetails, EventPatch, EventStatus},
    error::Violations,
    identity::{Principal, Role},
    paging::{self, Cursor},
};
use ticketing_proto::v1;
use ticketing_store::{
    Conn, StoreError,
    audit::{self, NewAuditEntry},
    events::{self, CategoryRow, EventRow},
    inventory, payments as payment_store,
    refunds::{self as refund_store, CancellationProgress},
};
use uuid::Uuid;

use super::read_cache::Page;
use crate::{AppState, auth::RequestContext, wire};

/// `ListEvents` as either transport receives it: credentials, if sent, must
/// be valid even for this public read.
pub async fn list_events_for(
    state: &AppState,
    ctx: &RequestContext,
    page_size: i32,
    page_token: &str,
) -> Result<Page<v1::ListEventsResponse>, Error> {
    ctx.optional_principal()?;
    list_events(state, page_size, page_token).await
}

/// `GetEvent` as either transport receives it: the caller judged before the id.
pub async fn get_event_for(state: &AppState, ctx: &RequestContext, event_id: &str) -> Result<Page<v1::Event>, Error> {
    let caller = ctx.optional_principal()?;
    let event_id = wire::parse_id(event_id, "eventId")?;
    get_event(state, caller, event_id).await
}

/// Published events, soonest first, after `page_token`: the same page for
/// every caller, so it is served from the catalog cache (kept in its wire
/// form, as both transports answer it).
#[tracing::instrument(name = "catalog.list_events", skip_all)]
pub async fn list_events(
    state: &AppState,
    page_size: i32,
    page_token: &str,
) -> Result<Page<v1::ListEventsResponse>, Error> {
    let key = format!("{page_size}:{page_token}");
    let entry = state
        .caches
        .listing
        .get_or_load(&state.redis, key, || {
            let (state, page_token) = (state.clone(), page_token.to_owned());
            async move {
                let page = load_listing(&state, page_size, &page_token).await?;
                Ok(Some(page.encode_to_vec()))
            }
        })
        .await?;
    entry.map(Page::Shared).ok_or_else(|| Error::internal("a page cached as absent"))
}

async fn load_listing(state: &AppState, page_size: i32, page_token: &str) -> Result<v1::ListEventsResponse, Error> {
    let limit = paging::page_size(page_size)?;
    let after = Cursor::decode(page_token)?;
    let now = Utc::now();
    let events = state
        .db
        .read_replica(|conn| async move { events::list_published_events(conn, after, limit, now).await }.scope_boxed())
        .await?;
    let next_page_token =
        paging::next_page_token(&events, limit, |last| Cursor { time: last.details.start_time, id: last.id }.encode());
    Ok(v1::ListEventsResponse {
        events: events.into_iter().map(|e| wire::event_to_proto(e, Vec::new())).collect(),
        next_page_token,
    })
}

/// An event with each category and the tickets it has left, and, once
/// cancelled after it was published, how far its refunds have got.
struct EventWithCategories {
    event: EventRow,
    categories: Vec<(i32, CategoryRow)>,
    cancellation: Option<CancellationProgress>,
}

impl EventWithCategories {
    /// Published, or cancelled after it was (its buyers must learn so).
    fn is_public(&self) -> bool {
        self.event.status == EventStatus::Published || self.cancellation.is_some()
    }

    fn into_proto(self) -> v1::Event {
        let mut event = wire::event_to_proto(self.event, self.categories);
        event.cancellation = self.cancellation.map(wire::cancellation_to_proto);
        event
    }
}

/// A published event for anyone; a draft or cancelled one only for whoever
/// manages it (others get NOT_FOUND, not a hint that it exists). Those who
/// may see drafts read the primary, uncached, so their own writes show at
/// once; everyone else reads the replica through the catalog cache.
#[tracing::instrument(name = "catalog.get_event", skip_all)]
pub async fn get_event(state: &AppState, caller: Option<&Principal>, event_id: Uuid) -> Result<Page<v1::Event>, Error> {
    if caller.is_some_and(|c| matches!(c.role, Role::Organizer | Role::Admin)) {
        // Boxed, as the cache's miss is: a public read's future stays small.
        let found = Box::pin(state.db.read(|conn| load_event(conn, event_id).scope_boxed())).await?;
        return match found {
            Some(found) if found.is_public() || visible_to(&found.event, caller) => Ok(Page::Own(found.into_proto())),
            _ => Err(Error::not_found("event")),
        };
    }
    let entry = state
        .caches
        .event
        .get_or_load(&state.redis, event_id.to_string(), || {
            let state = state.clone();
            async move {
                let found = state.db.read_replica(|conn| load_event(conn, event_id).scope_boxed()).await?;
                Ok(public_page(found))
            }
        })
        .await?;
    entry.map(Page::Shared).ok_or_else(|| Error::not_found("event"))
}

/// What the public catalog caches of an event: its page, or `None` when
/// the public may not see it.
fn public_page(found: Option<EventWithCategories>) -> Option<Vec<u8>> {
    found.filter(EventWithCategories::is_public).map(|found| found.into_proto().encode_to_vec())
}

/// After a change to an event: its public page, read from the primary, put
/// in both cache levels. Dropping the entry instead would let the next miss
/// refill it from a replica that has not replayed the change yet, and keep
/// that older page for the cache's TTL (a cancelled event shown on sale).
async fn republish_page(state: &AppState, event_id: Uuid) {
    // Boxed, as the cache's miss is: the caller's future stays small.
    match Box::pin(state.db.read(|conn| load_event(conn, event_id).scope_boxed())).await {
        Ok(found) => state.caches.replace_event(&state.redis, event_id, public_page(found)).await,
        Err(error) => {
            tracing::warn!(%error, %event_id, "changed event's page not rebuilt; dropped from the caches");
            state.caches.forget_event(&state.redis, event_id).await;
        }
    }
}

async fn load_event(conn: &mut Conn, event_id: Uuid) -> Result<Option<EventWithCategories>, StoreError> {
    let Some(event) = events::find_event(conn, event_id).await? else { return Ok(None) };
    let categories = events::categories_of_event(conn, event_id).await?;
    let ids: Vec<Uuid> = categories.iter().map(|c| c.id).collect();
    let available = inventory::available(conn, &ids).await?;
    let categories = categories.into_iter().map(|c| (available.get(&c.id).copied().unwrap_or(0), c)).collect();
    let cancellation = match event.status {
        EventStatus::Cancelled if events::cancelled_after_publishing(conn, event_id).await? => {
            Some(refund_store::cancellation_progress(conn, event_id).await?)
        }
        _ => None,
    };
    Ok(Some(EventWithCategories { event, categories, cancellation }))
}

fn visible_to(event: &EventRow, caller: Option<&Principal>) -> bool {
    event.status == EventStatus::Published || caller.is_some_and(|c| c.can_manage_event(event.organizer_id))
}

#[tracing::instrument(name = "catalog.create_event", skip_all)]
pub async fn create_event(state: &AppState, caller: &Principal, details: EventDetails) -> Result<EventRow, Error> {
    caller.require_event_creator()?;
    let mut violations = Violations::default();
    details.validate(&mut violations);
    violations.into_result()?;
    let organizer_id = caller.user_id;
    state.db.write(|conn| async move { events::insert_event(conn, organizer_id, &details).await }.scope_boxed()).await
}

/// The caller organizes the event (or is an admin); anyone else is told it
/// does not exist. For reads of an event's private data (reports, gates).
pub(crate) async fn require_event_manager(
    conn: &mut Conn,
    caller: &Principal,
    event_id: Uuid,
) -> Result<(), StoreError> {
    match events::find_event(conn, event_id).await? {
        Some(event) if caller.can_manage_event(event.organizer_id) => Ok(()),
        _ => Err(Error::not_found("event").into()),
    }
}

/// Where a transaction on an event's private data runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Access {
    /// Read-write, on the primary.
    Write,
    /// Read-only, on the primary: the caller's own writes show.
    Primary,
    /// Read-only, on the replica (seconds behind is fine).
    Replica,
}

/// Runs `body` in a transaction of `access` once the caller is known to
/// manage the event (its organizer or an admin); anyone else is told the
/// event does not exist, and `body` does not run.
pub(crate) async fn as_event_manager<T, F>(
    state: &AppState,
    caller: &Principal,
    event_id: Uuid,
    access: Access,
    body: F,
) -> Result<T, Error>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut Conn) -> ScopedBoxFuture<'static, 'c, Result<T, StoreError>> + Send + 'static,
{
    let checked = managed(caller.clone(), event_id, body);
    match access {
        Access::Write => state.db.write(checked).await,
        Access::Primary => state.db.read(checked).await,
        Access::Replica => state.db.read_replica(checked).await,
    }
}

fn managed<T, F>(
    caller: Principal,
    event_id: Uuid,
    body: F,
) -> impl for<'c> FnOnce(&'c mut Conn) -> ScopedBoxFuture<'static, 'c, Result<T, StoreError>> + Send + 'static
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut Conn) -> ScopedBoxFuture<'static, 'c, Result<T, StoreError>> + Send + 'static,
{
    move |conn| {
        async move {
            require_event_manager(conn, &caller, event_id).await?;
            body(conn).await
        }
        .scope_boxed()
    }
}

/// Locks the event and checks the caller may change it: NOT_FOUND when the
/// caller cannot even see it, PERMISSION_DENIED when they see but do not own it.
async fn lock_managed_event(conn: &mut Conn, caller: &Principal, event_id: Uuid) -> Result<EventRow, StoreError> {
    let event = events::lock_event(conn, event_id).await?.filter(|e| visible_to(e, Some(caller)));
    let event = event.ok_or_else(|| Error::not_found("event"))?;
    if !caller.can_manage_event(event.organizer_id) {
        return Err(Error::permission_denied("only the event's organizer or an admin may change it").into());
    }
    Ok(event)
}

/// The skeleton every change to an event shares: in one transaction, lock
/// the event and check the caller manages it, then `change` it; afterwards,
/// put its new public page in the caches.
async fn edit_event<T, F>(state: &AppState, caller: &Principal, event_id: Uuid, change: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut Conn, EventRow) -> ScopedBoxFuture<'static, 'c, Result<T, StoreError>> + Send + 'static,
{
    let caller = caller.clone();
    let result = state
        .db
        .write(|conn| {
            async move {
                let event = lock_managed_event(conn, &caller, event_id).await?;
                change(conn, event).await
            }
            .scope_boxed()
        })
        .await;
    if result.is_ok() {
        republish_page(state, event_id).await;
        state.live.availability_changed(event_id);
    }
    result
}

#[tracing::instrument(name = "catalog.update_event", skip_all)]
pub async fn update_event(
    state: &AppState,
    caller: &Principal,
    event_id: Uuid,
    patch: EventPatch,
) -> Result<EventRow, Error> {
    let actor = caller.clone();
    edit_event(state, caller, event_id, move |conn, event| {
        async move {
            event.status.ensure_editable()?;
            let details = event.details.clone().apply(patch);
            let mut violations = Violations::default();
            details.validate(&mut violations);
            // Moving the event must not strand a category's sales window outside it.
            for category in events::categories_of_event(conn, event_id).await? {
                let (_, sales_end) = category.details().sales_window(&details);
                if sales_end > details.end_time {
                    violations.add("endTime", format!("category {} sells until after this end time", category.name));
                }
            }
            violations.into_result()?;
            let updated = events::update_event(conn, event_id, &details).await?;
            record_change(conn, &actor, AuditAction::EventUpdated, &event, &updated).await?;
            Ok(updated)
        }
        .scope_boxed()
    })
    .await
}

#[tracing::instrument(name = "catalog.publish_event", skip_all)]
pub async fn publish_event(state: &AppState, caller: &Principal, event_id: Uuid) -> Result<EventRow, Error> {
    change_status(state, caller, event_id, AuditAction::EventPublished, |event, categories| {
        event.status.publish(categories, &event.details, Utc::now())
    })
    .await
}

/// CANCELLED. A published event's tickets are void at once (scanners turn
/// them away, online and in the next manifest delta); the worker's sweep
/// then cancels its pending orders and refunds every paid one
/// (`app::refunds::sweep_cancellations`).
#[tracing::instrument(name = "catalog.cancel_event", skip_all)]
pub async fn cancel_event(state: &AppState, caller: &Principal, event_id: Uuid) -> Result<EventRow, Error> {
    let actor = caller.clone();
    edit_event(state, caller, event_id, move |conn, event| {
        async move {
            let status = event.status.cancel()?;
            let cancelled = if event.status == EventStatus::Published {
                let cancelled = events::mark_cancelled(conn, event_id).await?;
                let voided = payment_store::void_event_tickets(conn, event_id).await?;
                tracing::info!(%event_id, voided, "event cancelled; its refunds start");
                cancelled
            } else {
                events::set_event_status(conn, event_id, status).await?
            };
            record_change(conn, &actor, AuditAction::EventCancelled, &event, &cancelled).await?;
            Ok(cancelled)
        }
        .scope_boxed()
    })
    .await
}

/// An organizer's change to an event, in the audit trail.
async fn record_change(
    conn: &mut Conn,
    actor: &Principal,
    action: AuditAction,
    before: &EventRow,
    after: &EventRow,
) -> Result<(), StoreError> {
    let json = |event: &EventRow| serde_json::to_value(wire::event_to_proto(event.clone(), Vec::new())).ok();
    audit::record(
        conn,
        NewAuditEntry {
            event_id: before.id,
            actor_id: Some(actor.user_id),
            api_key_id: actor.api_key,
            action,
            subject_id: &before.id.to_string(),
            before: json(before),
            after: json(after),
        },
    )
    .await
}

/// A category's change, in the audit trail.
async fn record_category_change(
    conn: &mut Conn,
    actor: &Principal,
    action: AuditAction,
    before: Option<&CategoryRow>,
    after: &CategoryRow,
) -> Result<(), StoreError> {
    let json = |category: &CategoryRow| serde_json::to_value(wire::category_to_proto(0, category.clone())).ok();
    audit::record(
        conn,
        NewAuditEntry {
            event_id: after.event_id,
            actor_id: Some(actor.user_id),
            api_key_id: actor.api_key,
            action,
            subject_id: &after.id.to_string(),
            before: before.and_then(json),
            after: json(after),
        },
    )
    .await
}

/// Moves the event to the status `decide` gives it from the event and its
/// number of categories.
async fn change_status(
    state: &AppState,
    caller: &Principal,
    event_id: Uuid,
    action: AuditAction,
    decide: impl FnOnce(&EventRow, usize) -> Result<EventStatus, Error> + Send + 'static,
) -> Result<EventRow, Error> {
    let actor = caller.clone();
    edit_event(state, caller, event_id, move |conn, event| {
        async move {
            let categories = events::categories_of_event(conn, event_id).await?;
            let status = decide(&event, categories.len())?;
            let changed = events::set_event_status(conn, event_id, status).await?;
            record_change(conn, &actor, action, &event, &changed).await?;
            Ok(changed)
        }
        .scope_boxed()
    })
    .await
}

#[tracing::instrument(name = "catalog.create_ticket_category", skip_all)]
pub async fn create_ticket_category(
    state: &AppState,
    caller: &Principal,
    event_id: Uuid,
    details: CategoryDetails,
) -> Result<(i32, CategoryRow), Error> {
    let actor = caller.clone();
    edit_event(state, caller, event_id, move |conn, event| {
        async move {
            event.status.ensure_editable()?;
            let mut violations = Violations::default();
            details.validate(&event.details, &mut violations);
            violations.into_result()?;
            let category = events::insert_category(conn, event_id, &details).await?;
            inventory::create_buckets(conn, category.id, category.capacity).await?;
            record_category_change(conn, &actor, AuditAction::CategoryCreated, None, &category).await?;
            Ok((category.capacity, category))
        }
        .scope_boxed()
    })
    .await
}

#[tracing::instrument(name = "catalog.update_ticket_category", skip_all)]
pub async fn update_ticket_category(
    state: &AppState,
    caller: &Principal,
    event_id: Uuid,
    category_id: Uuid,
    patch: CategoryPatch,
) -> Result<(i32, CategoryRow), Error> {
    let actor = caller.clone();
    edit_event(state, caller, event_id, move |conn, event| {
        async move {
            event.status.ensure_editable()?;
            let category = events::find_category(conn, event_id, category_id).await?;
            let category = category.ok_or_else(|| Error::not_found("ticket category"))?;
            let details = category.details().apply(patch);
            let mut violations = Violations::default();
            details.validate(&event.details, &mut violations);
            violations.into_result()?;
            if details.capacity != category.capacity {
                inventory::resize(conn, category_id, details.capacity).await?;
            }
            let updated = events::update_category(conn, category_id, &details).await?;
            record_category_change(conn, &actor, AuditAction::CategoryUpdated, Some(&category), &updated).await?;
            let category = updated;
            let available = inventory::available(conn, &[category_id]).await?;
            Ok((available.get(&category_id).copied().unwrap_or(0), category))
        }
        .scope_boxed()
    })
    .await
}

pub struct AuditPage {
    pub entries: Vec<ticketing_store::audit::AuditEntryRow>,
    pub next_page_token: String,
}

/// The event's audit trail for whoever manages it, oldest first. The page
/// token is the last entry's number.
#[tracing::instrument(name = "catalog.list_audit_entries", skip_all)]
pub async fn list_audit_entries(
    state: &AppState,
    caller: &Principal,
    event_id: Uuid,
    page_size: i32,
    page_token: &str,
) -> Result<AuditPage, Error> {
    let limit = paging::page_size(page_size)?;
    let after: i64 = match page_token {
        "" => 0,
        token => token.parse().map_err(|_| Error::invalid_field("pageToken", "is not a token this list gave"))?,
    };
    let entries = as_event_manager(state, caller, event_id, Access::Primary, move |conn| {
        audit::list(conn, event_id, after, limit).scope_boxed()
    })
    .await?;
    let next_page_token = paging::next_page_token(&entries, limit, |last| last.id.to_string());
    Ok(AuditPage { entries, next_page_token })
}
