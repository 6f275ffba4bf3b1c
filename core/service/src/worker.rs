//! `ticketing worker`: background jobs off the request path — order expiry,
//! the outbox (e-mails, refunds, reports) and payment reconciliation.
//! Stateless and safe to run several at once: every job claims its rows
//! with `FOR UPDATE SKIP LOCKED`.

use std::future::Future;

use scoped_futures::ScopedFutureExt;
use ticketing_domain::Error;
use tokio::sync::watch;

use crate::{AppState, app};

/// Payments checked with Midtrans per reconciliation batch.
const RECONCILE_BATCH: i64 = 50;

/// Runs until `stop` turns true; each loop finishes the batch in progress first.
pub async fn run(state: AppState, stop: watch::Receiver<bool>) {
    let expiry_batch = state.config.expiry_batch_size;
    let outbox_batch = state.config.outbox_batch_size;
    tokio::join!(
        repeat("expire_orders", &state, stop.clone(), expiry_batch, |s| app::orders::expire_due_orders(
            s,
            expiry_batch
        )),
        repeat("outbox", &state, stop.clone(), outbox_batch, app::jobs::run_due),
        repeat("reconcile_payments", &state, stop.clone(), RECONCILE_BATCH, |s| {
            app::payments::reconcile_pending(s, RECONCILE_BATCH)
        }),
        record_backlog(&state, stop.clone()),
        admit_waiting_rooms(&state, stop.clone()),
        refund_cancelled_events(&state, stop.clone()),
    );
}

/// How often the cancellation sweep runs; each pass refunds the pace's share.
const CANCELLATION_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Cancelled events' sweeps, by whichever worker holds the lease, at
/// `CANCELLATION_REFUNDS_PER_SECOND` in all (one holder paces them; the
/// refunds' own uniqueness keeps even two holders from refunding twice).
async fn refund_cancelled_events(state: &AppState, mut stop: watch::Receiver<bool>) {
    let holder = uuid::Uuid::now_v7().to_string();
    let lease = CANCELLATION_TICK * 8;
    let per_second = i64::from(state.config.cancellation_refunds_per_second);
    let mut budget = 0i64;
    loop {
        // Credit accrues each tick (at most a second's worth banked).
        budget = (budget + per_second * CANCELLATION_TICK.as_millis() as i64 / 1000).clamp(1, per_second.max(1));
        if lead(state, "cancellation-refunds", &holder, lease).await {
            match app::refunds::sweep_cancellations(state, budget).await {
                Ok(handled) => {
                    budget -= handled as i64;
                    if handled > 0 {
                        tracing::info!(handled, "cancellation sweep");
                    }
                }
                Err(error) => tracing::warn!(%error, "cancellation sweep failed; retrying"),
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(CANCELLATION_TICK) => {}
        }
    }
}

/// The waiting rooms' admissions, by whichever worker holds the lease; the
/// others stand by and take over within a lease's time when it stops. (The
/// admission script is atomic on Redis's clock, so even two holders at once
/// would admit each entry once and keep one pace; the lease saves the work.)
async fn admit_waiting_rooms(state: &AppState, mut stop: watch::Receiver<bool>) {
    let holder = uuid::Uuid::now_v7().to_string();
    let tick = state.config.waiting_room_tick;
    let lease = (tick * 4).max(std::time::Duration::from_secs(2));
    loop {
        if lead(state, "waiting-room-admissions", &holder, lease).await {
            match app::waiting_room::admit_due(state).await {
                Ok(count) if count > 0 => tracing::debug!(count, "waiting-room admissions"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "waiting-room admissions failed; retrying"),
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(tick) => {}
        }
    }
}

/// Takes or renews the worker lease `name` in Redis: `true` while `holder`
/// has it. Without Redis nobody leads (the work waits; nothing is lost).
async fn lead(state: &AppState, name: &str, holder: &str, ttl: std::time::Duration) -> bool {
    match ticketing_store::waiting_room::lease(&state.redis, name, holder, ttl).await {
        Ok(held) => held,
        Err(error) => {
            tracing::debug!(%error, lease = name, "no lease without Redis");
            false
        }
    }
}

/// Runs `batch` until it finds less than a full batch of work, then pauses
/// for `WORKER_POLL_MS`.
async fn repeat<'s, F, Fut>(
    name: &'static str,
    state: &'s AppState,
    mut stop: watch::Receiver<bool>,
    full: i64,
    batch: F,
) where
    F: Fn(&'s AppState) -> Fut,
    Fut: Future<Output = Result<usize, Error>>,
{
    loop {
        let done = match batch(state).await {
            Ok(count) => {
                if count > 0 {
                    tracing::info!(job = name, count, "worker batch done");
                }
                count
            }
            Err(error) => {
                tracing::warn!(job = name, %error, "worker batch failed; retrying after a pause");
                0
            }
        };
        if *stop.borrow() {
            return;
        }
        // A full batch means more is due: go again at once.
        if usize::try_from(full).is_ok_and(|f| done >= f) {
            continue;
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(state.config.worker_poll) => {}
        }
    }
}

/// `ticketing_outbox_pending` and `ticketing_outbox_oldest_age_seconds`:
/// how far behind the worker is; and the outbox's abandoned jobs buried.
async fn record_backlog(state: &AppState, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(error) = app::jobs::dead_letter_abandoned(state).await {
            tracing::debug!(%error, "could not dead-letter abandoned outbox jobs");
        }
        match state.db.read(|conn| ticketing_store::outbox::backlog(conn).scope_boxed()).await {
            Ok((pending, oldest)) => {
                metrics::gauge!("ticketing_outbox_pending").set(pending as f64);
                let age = oldest.map_or(0.0, |t| (chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0);
                metrics::gauge!("ticketing_outbox_oldest_age_seconds").set(age.max(0.0));
            }
            Err(error) => tracing::debug!(%error, "could not read the outbox backlog"),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(state.config.worker_poll * 5) => {}
        }
    }
}
