//! `ticketing worker`: background jobs off the request path. Stateless and
//! safe to run several at once (rows are claimed with SKIP LOCKED).

use tokio::sync::watch;

use crate::{AppState, app};

/// Runs until `stop` turns true; finishes the batch in progress first.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let batch = state.config.expiry_batch_size;
    loop {
        let expired = match app::orders::expire_due_orders(&state, batch).await {
            Ok(count) => {
                if count > 0 {
                    tracing::info!(orders.expired = count, "expired unpaid orders");
                }
                count
            }
            Err(error) => {
                tracing::warn!(%error, "expiry batch failed; retrying after a pause");
                0
            }
        };
        // A full batch means more are due: go again at once.
        if usize::try_from(batch).is_ok_and(|b| expired >= b) {
            if *stop.borrow() {
                return;
            }
            continue;
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(state.config.worker_poll) => {}
        }
    }
}
