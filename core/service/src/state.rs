use std::sync::Arc;

use ticketing_store::{Database, checkin::Redeem, events::SaleReads, lanes::Lanes, orders::Holds, redis::Redis};

use crate::{
    Config,
    adapters::{mail::Mailer, midtrans::Midtrans, whatsapp::WhatsApp},
    app::{
        checkin::GateKeys,
        limits::{Leases, LocalLimiters},
        live::Live,
        orders::{OrderPhaseTimers, SoldOutMemo},
        read_cache::ReadCache,
        waiting_room::FrontDoorKeys,
    },
    auth::{password::Passwords, token::Tokens},
};

/// How long one SMTP or WhatsApp exchange may take before the job is retried later.
const OUTGOING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What every use case may reach; holds no per-instance business state
/// (replicas are interchangeable). One `Arc`: the transports clone it for
/// every request (axum's `State`, each service), and cloning the pools,
/// caches and clients one by one cost a cached read most of its time.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub config: Arc<Config>,
    pub db: Database,
    pub redis: Redis,
    pub tokens: Arc<Tokens>,
    /// The waiting room's challenge and admission keys.
    pub front_door: FrontDoorKeys,
    /// Password hashing, a bounded number at once.
    pub passwords: Passwords,
    pub caches: CatalogCaches,
    pub local_limits: LocalLimiters,
    /// Blocks of busy subjects' requests taken from Redis ahead (`limits::check_leased`).
    pub leases: Leases,
    pub midtrans: Midtrans,
    /// `None` without `SMTP_URL`: e-mails wait in the outbox.
    pub mailer: Option<Mailer>,
    /// `None` without `WHATSAPP_API_URL`: no WhatsApp confirmations.
    pub whatsapp: Option<WhatsApp>,
    /// Events' ticket-signing keys, opened, with which the gate checks codes (they never change).
    pub gate_keys: GateKeys,
    /// Online scans, batched to the database under load.
    pub redeem_queue: Lanes<Redeem>,
    /// New orders' reads of their event, batched to the database under load.
    pub sale_reads: Lanes<SaleReads>,
    /// New orders' fast pass, batched to the database under load.
    pub hold_queue: Lanes<Holds>,
    /// Categories this replica just saw sell out.
    pub sold_out: SoldOutMemo,
    pub order_phases: OrderPhaseTimers,
    /// Live streams: their hubs, signals and cap.
    pub live: Live,
}

/// Public catalog reads. Event pages are shared through Redis and replaced
/// by key on change; listings are local only (a listing's keys cannot be
/// enumerated to invalidate them in Redis), so other replicas see a change
/// within the local TTL.
#[derive(Clone)]
pub struct CatalogCaches {
    pub event: ReadCache,
    pub listing: ReadCache,
}

impl CatalogCaches {
    /// After a catalog write that may change what the public sees: the
    /// event's `page` as the primary has it now (`None`: not public).
    pub async fn replace_event(&self, redis: &Redis, event_id: uuid::Uuid, page: Option<Vec<u8>>) {
        self.event.replace(redis, event_id.to_string(), page).await;
        self.listing.invalidate_all();
    }

    /// After such a write whose page could not be read back.
    pub async fn forget_event(&self, redis: &Redis, event_id: uuid::Uuid) {
        self.event.invalidate(redis, &event_id.to_string()).await;
        self.listing.invalidate_all();
    }
}

impl AppState {
    /// Builds pools and clients without waiting for Postgres or Redis: a
    /// replica starts while they are down and reports it through readiness.
    pub fn new(config: Config) -> Result<AppState, String> {
        let db = Database::new(&config.database, config.database_replica.as_ref());
        let redis = Redis::start(&config.redis).map_err(|e| format!("REDIS_URL: {e}"))?;
        let tokens = Arc::new(Tokens::new(&config.jwt_secret, config.jwt_ttl));
        let front_door = FrontDoorKeys::new(&config.jwt_secret);
        let passwords = Passwords::new(config.password_hash_concurrency, config.password_hash_max_wait);
        let caches = CatalogCaches {
            event: ReadCache::new("event", config.catalog_local_cache_ttl, Some(config.catalog_cache_ttl)),
            listing: ReadCache::new("listing", config.catalog_local_cache_ttl, None),
        };
        let local_limits = LocalLimiters::new(config.expected_replicas);
        let midtrans = Midtrans::new(config.midtrans.clone());
        let mailer = match &config.smtp_url {
            Some(url) => Some(Mailer::new(url, &config.mail_from, OUTGOING_TIMEOUT)?),
            None => None,
        };
        let redeem_queue = Lanes::start(db.clone(), Redeem);
        let sale_reads = Lanes::start(db.clone(), SaleReads);
        let hold_queue = Lanes::start(db.clone(), Holds { max_pending_orders: config.max_pending_orders });
        let sold_out = SoldOutMemo::new(config.sold_out_memo);
        let live = Live::new(&config, &redis);
        let whatsapp = config.whatsapp.clone().map(|settings| WhatsApp::new(settings, OUTGOING_TIMEOUT));
        Ok(AppState(Arc::new(Shared {
            config: Arc::new(config),
            db,
            redis,
            front_door,
            tokens,
            passwords,
            caches,
            local_limits,
            leases: Leases::default(),
            midtrans,
            mailer,
            whatsapp,
            gate_keys: GateKeys::default(),
            redeem_queue,
            sale_reads,
            hold_queue,
            sold_out,
            order_phases: OrderPhaseTimers::default(),
            live,
        })))
    }
}
