//! Live availability and queue places, pushed to watchers
//! (`WatchAvailability`, `WatchQueueEntry`, and their Server-Sent Events).
//!
//! Fan-out: each replica keeps one hub per watched event (and one per
//! watched queue). A hub holds one Redis subscription and does one read per
//! change for all of the replica's watchers of it, so database and Redis
//! work grow with replicas × watched events, never with watchers.
//!
//! The signal is Redis pub/sub, published after the commit by whoever
//! changed the state (any replica or worker), not Postgres LISTEN/NOTIFY: a
//! NOTIFY inside the order's transaction takes a database-wide lock from
//! pre-commit to the end of the commit, which would serialize a flash sale's
//! commits, and LISTEN needs a session outside PgBouncer's transaction pool
//! on every replica. A PUBLISH costs the request nothing it waits for, at
//! most one per event and push interval per process (coalesced here). A
//! signal carries no state: a hub reads the state from where it lives (the
//! primary, Redis' queue), so a lost signal costs freshness until the next
//! one or the hub's periodic refresh, never a wrong number.
//!
//! A watcher holds a `watch::Receiver`: only the latest state, never a
//! buffer, so a slow reader skips states (counted) instead of growing the
//! server's memory.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use chrono::Utc;
use futures::{Stream, StreamExt};
use scoped_futures::ScopedFutureExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use ticketing_domain::{Code, Error, error::Resource};
use ticketing_proto::v1;
use ticketing_store::{
    inventory,
    redis::Redis,
    signals::{Signal, Subscriber},
};
use tokio::{
    sync::{Notify, OwnedSemaphorePermit, Semaphore, watch},
    time::Instant,
};
use uuid::Uuid;

use crate::{
    AppState, Config,
    app::{catalog, waiting_room},
    auth::RequestContext,
    wire,
};

ticketing_domain::vocabulary! {
    /// What a live stream watches (`ticketing_watchers{kind}` and the other
    /// `ticketing_watch_*` metrics).
    pub enum WatchKind {
        Availability = "availability",
        QueueEntry = "queue_entry",
    }
}

/// A hub re-reads this often even without a signal: what a lost signal
/// (Redis away) or a change nobody signals (an admission running out) may
/// leave stale at most.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How long a new watcher waits for its hub's first read.
const FIRST_READ_WAIT: Duration = Duration::from_secs(5);
/// A queue hub reads this many entries per Redis script.
const STANDINGS_PER_READ: usize = 500;
/// Publishers forget events they have not signalled for a while past this.
const MAX_REMEMBERED_SIGNALS: usize = 4096;
/// When to come back after a refusal or a drain.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// One state pushed to watchers.
pub struct Pushed<T> {
    /// Counts the hub's changes: a watcher that sees it jump skipped states.
    version: u64,
    /// The Server-Sent Events `id:`: a digest of the content, the same on
    /// every replica, so `Last-Event-ID` means "I have this state" anywhere.
    pub id: String,
    pub message: T,
    json: OnceLock<String>,
}

impl<T: Serialize> Pushed<T> {
    fn new(version: u64, id: String, message: T) -> Arc<Pushed<T>> {
        Arc::new(Pushed { version, id, message, json: OnceLock::new() })
    }

    /// The message's proto3 JSON, encoded once for all SSE watchers.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| serde_json::to_string(&self.message).unwrap_or_default())
    }
}

type Latest<T> = watch::Sender<Option<Arc<Pushed<T>>>>;

/// The replica's live streams: hubs, the subscriber connection, the
/// watcher cap and the drain switch.
pub struct Live {
    subscriber: Subscriber,
    signals: Arc<Signals>,
    seats: Arc<Semaphore>,
    closing: watch::Sender<bool>,
    availability: Mutex<HashMap<Uuid, Arc<AvailabilityHub>>>,
    queues: Mutex<HashMap<Uuid, Arc<QueueHub>>>,
    dispatching: tokio::sync::OnceCell<()>,
}

struct AvailabilityHub {
    wake: Notify,
    latest: Latest<v1::AvailabilityUpdate>,
}

struct QueueHub {
    wake: Notify,
    entries: Mutex<HashMap<Uuid, Latest<v1::QueueEntry>>>,
}

fn channel(kind: WatchKind, event: Uuid) -> String {
    format!("live:{}:{event}", kind.as_str())
}

fn parse_channel(channel: &str) -> Option<(WatchKind, Uuid)> {
    let (kind, event) = channel.strip_prefix("live:")?.split_once(':')?;
    Some((WatchKind::parse(kind)?, Uuid::parse_str(event).ok()?))
}

impl Live {
    pub fn new(config: &Config, redis: &Redis) -> Live {
        // Every series from the start, so rates and the dashboard have a
        // zero to start from rather than a gap until the first event.
        for kind in WatchKind::ALL.iter().map(|kind| kind.as_str()) {
            metrics::gauge!("ticketing_watchers", "kind" => kind).increment(0.0);
            metrics::gauge!("ticketing_watch_subscriptions", "kind" => kind).increment(0.0);
            for counter in [
                "ticketing_watch_rejected_total",
                "ticketing_watch_messages_total",
                "ticketing_watch_skipped_total",
                "ticketing_watch_refreshes_total",
                "ticketing_watch_updates_total",
            ] {
                metrics::counter!(counter, "kind" => kind).increment(0);
            }
            for outcome in ["published", "coalesced"] {
                metrics::counter!("ticketing_watch_signals_total", "kind" => kind, "outcome" => outcome).increment(0);
            }
        }
        Live {
            subscriber: Subscriber::new(&config.redis),
            signals: Arc::new(Signals {
                redis: redis.clone(),
                availability_every: config.availability_push,
                queue_every: config.queue_push,
                last: Mutex::default(),
            }),
            seats: Arc::new(Semaphore::new(config.max_watchers)),
            closing: watch::Sender::new(false),
            availability: Mutex::default(),
            queues: Mutex::default(),
            dispatching: tokio::sync::OnceCell::new(),
        }
    }

    /// After a commit that may change what `event`'s categories have left.
    pub fn availability_changed(&self, event: Uuid) {
        self.signals.changed(WatchKind::Availability, event);
    }

    /// After a join or an admission step in `event`'s queue.
    pub fn queue_changed(&self, event: Uuid) {
        self.signals.changed(WatchKind::QueueEntry, event);
    }

    /// Draining: every open stream ends (retryably) and no new one starts.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub async fn shutdown(&self) {
        self.close();
        self.subscriber.shutdown().await;
    }

    fn seat(&self, kind: WatchKind) -> Result<Seat, Error> {
        if *self.closing.borrow() {
            return Err(Error::unavailable("the server is shutting down: reconnect", RETRY_AFTER));
        }
        let Ok(permit) = self.seats.clone().try_acquire_owned() else {
            metrics::counter!("ticketing_watch_rejected_total", "kind" => kind.as_str()).increment(1);
            return Err(Error::overloaded(
                Resource::Watchers,
                "this server holds as many live streams as it may: retry shortly",
                RETRY_AFTER,
            ));
        };
        metrics::gauge!("ticketing_watchers", "kind" => kind.as_str()).increment(1.0);
        Ok(Seat { _permit: permit, kind })
    }

    /// Routes the subscriber's signals to the hubs, from the first hub on.
    async fn ensure_dispatching(&self, state: &AppState) {
        self.dispatching
            .get_or_init(|| async {
                let state = state.clone();
                tokio::spawn(async move {
                    loop {
                        match state.live.subscriber.signals().await {
                            Ok(signals) => {
                                let mut signals = std::pin::pin!(signals);
                                while let Some(signal) = signals.next().await {
                                    state.live.dispatch(signal);
                                }
                            }
                            Err(error) => tracing::warn!(%error, "live signals unavailable"),
                        }
                        if *state.live.closing.borrow() {
                            return;
                        }
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                });
            })
            .await;
    }

    fn dispatch(&self, signal: Signal) {
        match signal {
            Signal::Changed(channel) => match parse_channel(&channel) {
                Some((WatchKind::Availability, event)) => {
                    if let Some(hub) = lock(&self.availability).get(&event) {
                        hub.wake.notify_one();
                    }
                }
                Some((WatchKind::QueueEntry, event)) => {
                    if let Some(hub) = lock(&self.queues).get(&event) {
                        hub.wake.notify_one();
                    }
                }
                None => {}
            },
            // Whatever was published meanwhile is lost: everyone re-reads.
            Signal::Reconnected | Signal::Missed => {
                lock(&self.availability).values().for_each(|hub| hub.wake.notify_one());
                lock(&self.queues).values().for_each(|hub| hub.wake.notify_one());
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A watcher's place under `MAX_WATCHERS`, given back when its stream ends.
struct Seat {
    _permit: OwnedSemaphorePermit,
    kind: WatchKind,
}

impl Drop for Seat {
    fn drop(&mut self) {
        metrics::gauge!("ticketing_watchers", "kind" => self.kind.as_str()).decrement(1.0);
    }
}

/// Coalesced publishing: the first change after a quiet interval is
/// published at once, later ones within the interval fold into one publish
/// at its end, so a flash sale's thousands of orders a second cost one
/// PUBLISH per event and interval per process.
struct Signals {
    redis: Redis,
    availability_every: Duration,
    queue_every: Duration,
    last: Mutex<HashMap<(WatchKind, Uuid), Published>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Published {
    At(Instant),
    /// A publish is scheduled: later changes are in it.
    Pending,
}

impl Signals {
    fn every(&self, kind: WatchKind) -> Duration {
        match kind {
            WatchKind::Availability => self.availability_every,
            WatchKind::QueueEntry => self.queue_every,
        }
    }

    fn changed(self: &Arc<Self>, kind: WatchKind, event: Uuid) {
        let every = self.every(kind);
        let now = Instant::now();
        let mut last = lock(&self.last);
        let publish_at = publish_at(last.get(&(kind, event)).copied(), now, every);
        let outcome = match publish_at {
            None => "coalesced",
            Some(at) if at > now => {
                last.insert((kind, event), Published::Pending);
                "coalesced"
            }
            Some(_) => {
                if last.len() >= MAX_REMEMBERED_SIGNALS {
                    last.retain(|_, p| matches!(p, Published::At(at) if now < *at + every));
                }
                last.insert((kind, event), Published::At(now));
                "published"
            }
        };
        drop(last);
        metrics::counter!("ticketing_watch_signals_total", "kind" => kind.as_str(), "outcome" => outcome).increment(1);
        if let Some(at) = publish_at {
            let signals = self.clone();
            // Decided now, not when the task runs: a trailing publish must
            // end the pending state even if its task starts late.
            let trailing = at > now;
            tokio::spawn(async move {
                if trailing {
                    tokio::time::sleep_until(at).await;
                    lock(&signals.last).insert((kind, event), Published::At(Instant::now()));
                }
                if let Err(error) = signals.redis.publish(&channel(kind, event)).await {
                    tracing::debug!(%error, "live signal not published");
                }
            });
        }
    }
}

/// When a change made `now` is published, given the event's last publish:
/// at once after a quiet interval, at the interval's end after a recent
/// one, not by itself while a publish is pending (that one covers it).
fn publish_at(last: Option<Published>, now: Instant, every: Duration) -> Option<Instant> {
    match last {
        Some(Published::Pending) => None,
        Some(Published::At(at)) if now < at + every => Some(at + every),
        _ => Some(now),
    }
}

/// Waits for a hub's next turn: a signal, the periodic refresh or the
/// drain (`false`), then the rest of the push interval since `last`.
async fn next_turn(wake: &Notify, closing: &mut watch::Receiver<bool>, last: Instant, every: Duration) -> bool {
    tokio::select! {
        () = wake.notified() => {}
        () = tokio::time::sleep(REFRESH_EVERY) => {}
        _ = closing.wait_for(|closing| *closing) => return false,
    }
    tokio::select! {
        () = tokio::time::sleep_until(last + every) => true,
        _ = closing.wait_for(|closing| *closing) => false,
    }
}

/// A hub's subscription to its channel, retried each turn until it holds
/// (until then the hub's periodic refresh keeps it current).
struct Subscription {
    kind: WatchKind,
    event: Uuid,
    held: bool,
}

impl Subscription {
    async fn open(state: &AppState, kind: WatchKind, event: Uuid) -> Subscription {
        metrics::gauge!("ticketing_watch_subscriptions", "kind" => kind.as_str()).increment(1.0);
        state.live.ensure_dispatching(state).await;
        let mut subscription = Subscription { kind, event, held: false };
        subscription.retry(state).await;
        subscription
    }

    async fn retry(&mut self, state: &AppState) {
        if self.held {
            return;
        }
        match state.live.subscriber.subscribe(&channel(self.kind, self.event)).await {
            Ok(()) => self.held = true,
            Err(error) => {
                tracing::warn!(%error, event = %self.event, "live subscription failed; refreshing on a timer")
            }
        }
    }

    async fn close(self, state: &AppState) {
        metrics::gauge!("ticketing_watch_subscriptions", "kind" => self.kind.as_str()).decrement(1.0);
        if self.held
            && let Err(error) = state.live.subscriber.unsubscribe(&channel(self.kind, self.event)).await
        {
            tracing::debug!(%error, "live unsubscribe failed");
        }
    }
}

fn digest(parts: impl IntoIterator<Item = String>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    format!("{:x}", hasher.finalize())[..24].to_owned()
}

/// The event's availability now, from the primary (a replica could be
/// behind the signal that woke the hub).
async fn read_availability(state: &AppState, event: Uuid) -> Result<v1::AvailabilityUpdate, Error> {
    let rows = state.db.read(|conn| inventory::of_event(conn, event).scope_boxed()).await?;
    let categories = rows
        .into_iter()
        .map(|(category, available)| v1::CategoryAvailability {
            ticket_category_id: category.to_string(),
            available: available.max(0),
            sold_out: available <= 0,
        })
        .collect();
    Ok(v1::AvailabilityUpdate { event_id: event.to_string(), categories, update_time: wire::timestamp(Utc::now()) })
}

fn availability_id(update: &v1::AvailabilityUpdate) -> String {
    digest(update.categories.iter().map(|c| format!("{}={}", c.ticket_category_id, c.available)))
}

/// One event's hub: reads on each turn and pushes what changed, until no
/// watcher is left.
async fn run_availability_hub(state: AppState, event: Uuid, hub: Arc<AvailabilityHub>) {
    let kind = WatchKind::Availability;
    let mut subscription = Subscription::open(&state, kind, event).await;
    let mut closing = state.live.closing.subscribe();
    let mut version = 0;
    loop {
        let started = Instant::now();
        subscription.retry(&state).await;
        metrics::counter!("ticketing_watch_refreshes_total", "kind" => kind.as_str()).increment(1);
        match read_availability(&state, event).await {
            Ok(update) => {
                let changed = hub.latest.borrow().as_ref().is_none_or(|p| p.message.categories != update.categories);
                if changed {
                    version += 1;
                    metrics::counter!("ticketing_watch_updates_total", "kind" => kind.as_str()).increment(1);
                    hub.latest.send_replace(Some(Pushed::new(version, availability_id(&update), update)));
                }
            }
            Err(error) => tracing::warn!(%error, %event, "availability not refreshed"),
        }
        if !next_turn(&hub.wake, &mut closing, started, state.config.availability_push).await {
            break;
        }
        let mut hubs = lock(&state.live.availability);
        if hub.latest.receiver_count() == 0 {
            hubs.remove(&event);
            break;
        }
    }
    subscription.close(&state).await;
}

/// One queue's hub: reads the standing of every watched entry in a few
/// scripts per turn, and pushes each entry's change to its watchers.
async fn run_queue_hub(state: AppState, event: Uuid, hub: Arc<QueueHub>) {
    let kind = WatchKind::QueueEntry;
    let mut subscription = Subscription::open(&state, kind, event).await;
    let mut closing = state.live.closing.subscribe();
    loop {
        let started = Instant::now();
        subscription.retry(&state).await;
        let watched: Vec<Uuid> = {
            let mut entries = lock(&hub.entries);
            entries.retain(|_, latest| latest.receiver_count() > 0);
            entries.keys().copied().collect()
        };
        metrics::counter!("ticketing_watch_refreshes_total", "kind" => kind.as_str()).increment(1);
        for chunk in watched.chunks(STANDINGS_PER_READ) {
            match waiting_room::entries_now(&state, event, chunk).await {
                Ok(views) => {
                    let mut entries = lock(&hub.entries);
                    // An entry the queue no longer has (its customer joined
                    // again after it expired): its watchers' streams end,
                    // and a reconnect finds out why.
                    let found: HashSet<&str> = views.iter().map(|view| view.id.as_str()).collect();
                    entries.retain(|id, _| !chunk.contains(id) || found.contains(id.to_string().as_str()));
                    for view in views {
                        let Some(latest) = Uuid::parse_str(&view.id).ok().and_then(|id| entries.get(&id)) else {
                            continue;
                        };
                        if latest.borrow().as_ref().is_some_and(|p| p.message == view) {
                            continue;
                        }
                        let version = latest.borrow().as_ref().map_or(1, |p| p.version + 1);
                        metrics::counter!("ticketing_watch_updates_total", "kind" => kind.as_str()).increment(1);
                        latest.send_replace(Some(Pushed::new(version, queue_entry_id(&view), view)));
                    }
                }
                // The room closed (sales over, event unpublished, room
                // disabled): nothing more will move, so the streams end.
                Err(error) if matches!(error.code, Code::FailedPrecondition | Code::NotFound) => {
                    lock(&hub.entries).retain(|id, _| !chunk.contains(id));
                }
                Err(error) => tracing::warn!(%error, %event, "queue places not refreshed"),
            }
        }
        if !next_turn(&hub.wake, &mut closing, started, state.config.queue_push).await {
            break;
        }
        let mut hubs = lock(&state.live.queues);
        let mut entries = lock(&hub.entries);
        entries.retain(|_, latest| latest.receiver_count() > 0);
        if entries.is_empty() {
            hubs.remove(&event);
            break;
        }
    }
    subscription.close(&state).await;
}

fn queue_entry_id(entry: &v1::QueueEntry) -> String {
    let admission = entry.admission.as_ref().map(|a| a.token.clone()).unwrap_or_default();
    digest([entry.status.to_string(), entry.position.to_string(), entry.estimated_wait_seconds.to_string(), admission])
}

/// A live stream of `T`: the latest state on each change, until the state
/// is final, the hub goes, or the server drains.
pub struct Watch<T> {
    latest: watch::Receiver<Option<Arc<Pushed<T>>>>,
    closing: watch::Receiver<bool>,
    seat: Seat,
    seen: Option<u64>,
    /// The state the client says it has (`Last-Event-ID`): not sent again.
    has: Option<String>,
    is_final: fn(&T) -> bool,
    done: bool,
}

impl<T: Send + Sync + 'static> Watch<T> {
    /// A watcher in `seat` of `latest`, which ends after a state `is_final` says is.
    fn new(
        state: &AppState,
        seat: Seat,
        latest: watch::Receiver<Option<Arc<Pushed<T>>>>,
        is_final: fn(&T) -> bool,
    ) -> Watch<T> {
        Watch { latest, closing: state.live.closing.subscribe(), seat, seen: None, has: None, is_final, done: false }
    }

    /// The client already has the state with this id (SSE `Last-Event-ID`).
    pub fn resuming_from(mut self, last_event_id: Option<String>) -> Watch<T> {
        self.has = last_event_id;
        self
    }

    /// Whether the client's state (`last_event_id`) is final: nothing more
    /// will come (SSE answers 204, which ends an `EventSource`'s reconnects).
    pub fn has_final(&self, last_event_id: Option<&str>) -> bool {
        let current = self.latest.borrow();
        current.as_ref().is_some_and(|p| Some(p.id.as_str()) == last_event_id && (self.is_final)(&p.message))
    }

    async fn next(&mut self) -> Option<Result<Arc<Pushed<T>>, Error>> {
        if self.done {
            return None;
        }
        loop {
            let current = self.latest.borrow_and_update().clone();
            if let Some(pushed) = current
                && self.seen != Some(pushed.version)
            {
                let kind = self.seat.kind.as_str();
                if let Some(seen) = self.seen
                    && pushed.version > seen + 1
                {
                    metrics::counter!("ticketing_watch_skipped_total", "kind" => kind)
                        .increment(pushed.version - seen - 1);
                }
                self.seen = Some(pushed.version);
                self.done = (self.is_final)(&pushed.message);
                if self.has.take().is_none_or(|has| has != pushed.id) {
                    metrics::counter!("ticketing_watch_messages_total", "kind" => kind).increment(1);
                    return Some(Ok(pushed));
                }
                if self.done {
                    // The client has the final state already.
                    return None;
                }
            }
            tokio::select! {
                changed = self.latest.changed() => if changed.is_err() {
                    self.done = true;
                    return Some(Err(Error::unavailable("the stream's source went away: reconnect", RETRY_AFTER)));
                },
                _ = self.closing.wait_for(|closing| *closing) => {
                    self.done = true;
                    return Some(Err(Error::unavailable("the server is shutting down: reconnect", RETRY_AFTER)));
                }
            }
        }
    }

    pub fn into_stream(self) -> impl Stream<Item = Result<Arc<Pushed<T>>, Error>> + Send + 'static {
        futures::stream::unfold(self, |mut watch| async move { watch.next().await.map(|item| (item, watch)) })
    }

    /// The messages themselves (gRPC), each an error's status at the end.
    pub fn into_messages(self) -> impl Stream<Item = Result<T, Error>> + Send + 'static
    where
        T: Clone,
    {
        self.into_stream().map(|item| item.map(|pushed| pushed.message.clone()))
    }
}

/// Waits for a hub's first state (a new hub reads before it has one).
async fn first_state<T>(latest: &mut watch::Receiver<Option<Arc<Pushed<T>>>>) -> Result<(), Error> {
    match tokio::time::timeout(FIRST_READ_WAIT, latest.wait_for(Option::is_some)).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(Error::unavailable("availability could not be read: retry shortly", RETRY_AFTER)),
    }
}

/// `WatchAvailability`: anyone may watch an event they may see.
#[tracing::instrument(name = "live.watch_availability", skip_all)]
pub async fn watch_availability(
    state: &AppState,
    ctx: &RequestContext,
    event: Uuid,
) -> Result<Watch<v1::AvailabilityUpdate>, Error> {
    catalog::get_event(state, ctx.optional_principal()?, event).await?;
    let seat = state.live.seat(WatchKind::Availability)?;
    let mut latest = {
        let mut hubs = lock(&state.live.availability);
        match hubs.get(&event) {
            Some(hub) => hub.latest.subscribe(),
            None => {
                let hub = Arc::new(AvailabilityHub { wake: Notify::new(), latest: watch::Sender::new(None) });
                let latest = hub.latest.subscribe();
                hubs.insert(event, hub.clone());
                tokio::spawn(run_availability_hub(state.clone(), event, hub));
                latest
            }
        }
    };
    first_state(&mut latest).await?;
    Ok(Watch::new(state, seat, latest, |_| false))
}

/// `WatchQueueEntry`: the caller's own entry (anyone else's is NOT_FOUND).
#[tracing::instrument(name = "live.watch_queue_entry", skip_all)]
pub async fn watch_queue_entry(
    state: &AppState,
    ctx: &RequestContext,
    event: Uuid,
    entry_id: &str,
) -> Result<Watch<v1::QueueEntry>, Error> {
    let current = waiting_room::get_queue_entry(state, ctx, event, entry_id).await?;
    let entry = Uuid::parse_str(&current.id).map_err(Error::internal)?;
    let seat = state.live.seat(WatchKind::QueueEntry)?;
    let latest = {
        let mut hubs = lock(&state.live.queues);
        let hub = match hubs.get(&event) {
            Some(hub) => hub.clone(),
            None => {
                let hub = Arc::new(QueueHub { wake: Notify::new(), entries: Mutex::default() });
                hubs.insert(event, hub.clone());
                tokio::spawn(run_queue_hub(state.clone(), event, hub.clone()));
                hub
            }
        };
        let mut entries = lock(&hub.entries);
        let latest = entries.entry(entry).or_insert_with(|| watch::Sender::new(None));
        if latest.borrow().is_none() {
            latest.send_replace(Some(Pushed::new(0, queue_entry_id(&current), current)));
        }
        latest.subscribe()
    };
    Ok(Watch::new(state, seat, latest, |entry| entry.status == i32::from(v1::QueueEntryStatus::Expired)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_millis(1000);

    #[test]
    fn the_first_change_after_a_quiet_interval_is_published_at_once() {
        let now = Instant::now();
        assert_eq!(publish_at(None, now, EVERY), Some(now));
        let long_ago = now.checked_sub(EVERY * 2).expect("a monotonic clock this old");
        assert_eq!(publish_at(Some(Published::At(long_ago)), now, EVERY), Some(now));
    }

    #[test]
    fn changes_within_the_interval_fold_into_one_publish_at_its_end() {
        let published = Instant::now();
        let soon = published + Duration::from_millis(300);
        assert_eq!(publish_at(Some(Published::At(published)), soon, EVERY), Some(published + EVERY));
        assert_eq!(publish_at(Some(Published::Pending), soon, EVERY), None, "the pending publish covers it");
    }

    #[test]
    fn a_channel_names_its_kind_and_event_and_nothing_else_parses() {
        let event = Uuid::now_v7();
        for kind in WatchKind::ALL {
            assert_eq!(parse_channel(&channel(*kind, event)), Some((*kind, event)));
        }
        assert_eq!(parse_channel("live:nope:x"), None);
        assert_eq!(parse_channel(&format!("cache:availability:{event}")), None);
    }
}
