//! Shared state and the router: the Midtrans API behind auth and faults, the admin API beside it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use crate::notify::DeliveryAttempt;
use crate::state::{Config, Faults, Store};
use crate::{admin, api};

/// Midtrans gives up on a notification after 15 s; so does the simulator.
const NOTIFICATION_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    /// Plain mutexes: no lock is held across an await.
    pub transactions: Mutex<Store>,
    pub faults: Mutex<Faults>,
    pub deliveries: Mutex<Vec<DeliveryAttempt>>,
    pub http: reqwest::Client,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(NOTIFICATION_TIMEOUT).build()?;
        Ok(AppState(Arc::new(Inner {
            config,
            transactions: Mutex::default(),
            faults: Mutex::default(),
            deliveries: Mutex::default(),
            http,
        })))
    }
}

/// Locks even after a panic elsewhere: the data stays consistent (every update is a
/// single step under the lock), and one failed request must not wedge the simulator.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn router(state: AppState) -> Router {
    let midtrans = Router::new()
        .route("/snap/v1/transactions", post(api::create_snap_transaction))
        .route("/v2/{order_id}/status", get(api::get_status))
        .route("/v2/{order_id}/refund", post(api::refund))
        .route("/v2/{order_id}/approve", post(api::approve))
        .route("/v2/{order_id}/deny", post(api::deny))
        .route_layer(middleware::from_fn_with_state(state.clone(), api::guard));
    let admin = Router::new()
        .route("/_sim/health", get(admin::health))
        .route("/_sim/transactions", get(admin::list_transactions))
        .route("/_sim/transactions:import", post(admin::import_transactions))
        .route("/_sim/transactions/{order_id}", get(admin::get_transaction).put(admin::put_transaction))
        .route("/_sim/transactions/{order_id}/notify", post(admin::notify))
        .route("/_sim/transactions/{order_id}/{action}", post(admin::apply_action))
        .route("/_sim/deliveries", get(admin::list_deliveries))
        .route("/_sim/faults", get(admin::get_faults).post(admin::set_faults).delete(admin::reset_faults));
    midtrans.merge(admin).with_state(state)
}
