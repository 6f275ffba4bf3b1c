//! A local stand-in for Midtrans (Snap create, Core API status and refund,
//! signed HTTP notifications) with an admin API under `/_sim` for tests and
//! load tests. See shared/MIDTRANS.md for the behaviour it follows. The
//! `midtrans-sim` binary serves it; the backend's integration tests embed it
//! through [`serve`] so they can stop it (refused connections) and start it
//! again on the same port.

mod admin;
mod api;
mod app;
mod notify;
mod state;
#[cfg(test)]
mod tests;

use std::future::Future;

pub use crate::state::Config;
use tokio::net::TcpListener;

/// Serves the simulator on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let router = app::router(app::AppState::new(config)?);
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
