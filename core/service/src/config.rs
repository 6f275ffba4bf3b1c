//! Configuration from environment variables, validated at start-up. Every
//! problem is reported at once; `ENV=production` has no insecure defaults.

use ipnet::IpNet;
use std::{net::SocketAddr, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use secrecy::SecretString;
use ticketing_store::{PoolSettings, redis::RedisSettings};

use crate::adapters::{midtrans::MidtransSettings, whatsapp::WhatsAppSettings};

/// Used only outside production, where any fixed value would do; production
/// refuses to start without its own `JWT_SECRET`.
const DEV_JWT_SECRET: &str = "development-only-jwt-secret-not-for-production";
const MIN_JWT_SECRET_CHARS: usize = 32;
/// Development stand-ins; production refuses to start without real values.
const DEV_MIDTRANS_SERVER_KEY: &str = "SB-Mid-server-development-only";
const DEV_TICKET_KEY_ENCRYPTION_KEY: [u8; 32] = *b"development-only-ticket-key-seal";

/// The key that seals events' ticket-signing keys (AES-256-GCM).
#[derive(Clone)]
pub struct MasterKey(pub [u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `ENV`: `production` or `development` (default).
    pub environment: Environment,
    /// `LISTEN_ADDR`: public port for gRPC, gRPC-Web and REST (default 127.0.0.1:8080).
    pub listen_addr: SocketAddr,
    /// `ADMIN_LISTEN_ADDR`: internal health/metrics listener (default 127.0.0.1:9090; never public).
    pub admin_listen_addr: SocketAddr,
    /// `WORKER_ADMIN_LISTEN_ADDR`: the worker's own (default 127.0.0.1:9091).
    pub worker_admin_listen_addr: SocketAddr,
    /// `DATABASE_URL` (through PgBouncer), `DATABASE_POOL_SIZE`, `DATABASE_POOL_TIMEOUT_MS`.
    pub database: PoolSettings,
    /// `DATABASE_REPLICA_URL` (optional), `DATABASE_REPLICA_POOL_SIZE`.
    pub database_replica: Option<PoolSettings>,
    /// `DATABASE_DIRECT_URL`: straight to Postgres, for migrations only.
    pub database_direct_url: Option<SecretString>,
    /// `REDIS_URL`, `REDIS_POOL_SIZE`, `REDIS_TIMEOUT_MS`, `REDIS_KEY_PREFIX`.
    pub redis: RedisSettings,
    /// `JWT_SECRET` (≥ 32 characters in production), `JWT_TTL_SECONDS` (default 3600).
    pub jwt_secret: SecretString,
    pub jwt_ttl: Duration,
    /// `CORS_ALLOW_ORIGINS`: comma-separated origins; `None` allows any (development only).
    pub cors_allow_origins: Option<Vec<String>>,
    /// `MAX_REQUEST_BYTES`: largest request body or gRPC message (default 1 MiB).
    pub max_request_bytes: usize,
    /// The public listener against slow and greedy clients:
    /// `HTTP_HEADER_READ_TIMEOUT_MS` (default 5000: a request's headers, and
    /// an idle keep-alive connection's next one), `HTTP_BODY_READ_TIMEOUT_MS`
    /// (default 10000: a body, read before the request takes a concurrency
    /// slot), `MAX_CONNECTIONS` (default 10000 more than `MAX_WATCHERS`
    /// per replica, so a full house of Server-Sent Events watchers, one
    /// connection each, leaves 10000 for everyone else; past it new
    /// connections are closed at once), `HTTP2_MAX_CONCURRENT_STREAMS`
    /// (default 256 per connection).
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub http2_max_concurrent_streams: u32,
    /// `LOGIN_LIMIT_PER_IP`: token requests per client address per minute
    /// (default 100); it also covers sign-ups.
    pub login_limit_per_ip: u32,
    /// `LOGIN_FAILURES_PER_ACCOUNT_AND_IP`: failed logins into one account
    /// from one address per minute (default 10); `LOGIN_FAILURES_PER_ACCOUNT`:
    /// from all addresses together (default 100). Successful logins never count.
    pub login_failures_per_account_and_ip: u32,
    pub login_failures_per_account: u32,
    /// `PASSWORD_HASH_CONCURRENCY`: argon2 hashes (19 MiB each) computed at
    /// once per replica (default: one per core); `PASSWORD_HASH_MAX_WAIT_MS`:
    /// how long a sign-up or login waits for one before it is answered 503
    /// OVERLOADED with `Retry-After` (default 500).
    pub password_hash_concurrency: usize,
    pub password_hash_max_wait: Duration,
    /// `ORDER_LIMIT_PER_USER`: order attempts per user per minute (default 30).
    pub order_limit_per_user: u32,
    /// `MAX_PENDING_ORDERS_PER_CUSTOMER`: unpaid orders one customer may hold
    /// at once (default 3); the next is refused, PENDING_ORDER_LIMIT. 0: no cap
    /// (benchmarks whose few accounts place thousands of orders).
    pub max_pending_orders: i32,
    /// `ENFORCE_TICKETS_PER_CUSTOMER`: whether orders count against the
    /// event's `maxTicketsPerCustomer` (default true). `false` exists only to
    /// measure what the count costs (`ci/bench` runs the flash sale both ways).
    pub enforce_tickets_per_customer: bool,
    /// `QUEUE_JOINS_PER_IP` / `QUEUE_JOINS_PER_CUSTOMER`: waiting-room joins
    /// per minute from one client address (default 30) and by one account
    /// (default 10), on top of the proof-of-work each join pays.
    pub queue_joins_per_ip: u32,
    pub queue_joins_per_customer: u32,
    /// `WAITING_ROOM_TICK_MS`: how often the worker admits (default 500).
    pub waiting_room_tick: Duration,
    /// `WAITING_ROOM_CHALLENGE_TTL_SECONDS`: how long a proof-of-work
    /// challenge may be solved and used (default 600).
    pub challenge_ttl: Duration,
    /// `CANCELLATION_REFUNDS_PER_SECOND`: how fast a cancelled event's paid
    /// orders are refunded (default 20), so Midtrans is not flooded.
    pub cancellation_refunds_per_second: u32,
    /// `SCAN_LIMIT_PER_SCANNER`: check-in calls per scanner device per minute (default 600).
    pub scan_limit_per_scanner: u32,
    /// `API_KEY_LIMIT_PER_MINUTE`: calls one API key may make a minute,
    /// across replicas.
    pub api_key_limit_per_minute: u32,
    /// `EXPECTED_REPLICAS`: how many replicas share the limits; each enforces
    /// its share while Redis is unreachable (default 1).
    pub expected_replicas: u32,
    /// `TRUSTED_PROXIES`: comma-separated networks of the proxies in front
    /// (`10.0.0.0/8,127.0.0.1`). A request from one of them is attributed to
    /// the right-most `X-Forwarded-For` address outside them (what the last
    /// trusted hop saw); anything to its left is the client's to invent.
    /// Empty (the default): the TCP peer is the client, the header ignored.
    pub trusted_proxies: Arc<[IpNet]>,
    /// `ORDER_HOLD_SECONDS`: how long a pending order holds its tickets (default 900).
    pub order_hold: Duration,
    /// `SOLD_OUT_MEMO_MS`: how long a replica refuses orders for a category it
    /// saw sell out without asking the database (default 1000; 0 turns it off).
    pub sold_out_memo: Duration,
    /// Live streams (`WatchAvailability`, `WatchQueueEntry` and their SSE
    /// forms): `AVAILABILITY_PUSH_MS` / `QUEUE_PUSH_MS`, the least time
    /// between two messages about one event or queue (default 1000 each);
    /// `MAX_WATCHERS`, open streams per replica (default 20000; past it 503
    /// UNAVAILABLE with Retry-After).
    pub availability_push: Duration,
    pub queue_push: Duration,
    pub max_watchers: usize,
    /// `IDEMPOTENCY_KEY_TTL_HOURS`: how long Redis remembers a key (default 25; the
    /// database keeps it for the order's lifetime).
    pub idempotency_ttl: Duration,
    /// `EXPIRY_BATCH_SIZE` / `WORKER_POLL_MS`: the expiry worker's batch and pause (defaults 500 / 1000).
    pub expiry_batch_size: i64,
    pub worker_poll: Duration,
    /// `CATALOG_CACHE_TTL_MS` (Redis, shared by replicas; default 5000; each
    /// copy lives up to a fifth less, so copies made together lapse apart) and
    /// `CATALOG_LOCAL_CACHE_TTL_MS` (in-process; default 1000): how stale public
    /// catalog reads may be (an expired local entry is served for up to one
    /// more TTL while a task reloads it). Catalog writes invalidate what they
    /// change.
    pub catalog_cache_ttl: Duration,
    pub catalog_local_cache_ttl: Duration,
    /// `HTTP_CACHE_MAX_AGE`, `HTTP_CACHE_S_MAXAGE`, `HTTP_CACHE_STALE_WHILE_REVALIDATE`
    /// (seconds; defaults 5, 5, 30): `Cache-Control` of public catalog reads.
    pub http_cache_max_age: u64,
    pub http_cache_s_maxage: u64,
    pub http_cache_stale_while_revalidate: u64,
    /// Adaptive concurrency per replica (AIMD): `CONCURRENCY_LIMIT_MIN` /
    /// `CONCURRENCY_LIMIT_MAX` bound the limit (defaults 16 / 512); it shrinks
    /// when a request takes longer than `CONCURRENCY_LATENCY_OBJECTIVE_MS`
    /// (default 1000) or the database pool is exhausted, and grows back
    /// otherwise. A request waits at most `CONCURRENCY_MAX_WAIT_MS` (default 20)
    /// for room, then is shed with 503 OVERLOADED.
    pub concurrency_min: u32,
    pub concurrency_max: u32,
    pub latency_objective: Duration,
    pub concurrency_max_wait: Duration,
    /// `METRICS_ENABLED`: Prometheus metrics on the admin listener (default true).
    pub metrics_enabled: bool,
    /// `SHUTDOWN_GRACE_SECONDS`: how long in-flight requests may finish after SIGTERM (default 25).
    pub shutdown_grace: Duration,
    /// Midtrans: `MIDTRANS_SERVER_KEY` (required in production), `MIDTRANS_SNAP_URL`
    /// and `MIDTRANS_API_URL` (sandbox hosts by default), `MIDTRANS_NOTIFICATION_URL`
    /// (our webhook, sent as `X-Override-Notification`), `PAYMENT_FINISH_URL`,
    /// `MIDTRANS_TIMEOUT_MS` (whole call, retries included; default 3000),
    /// `MIDTRANS_BREAKER_FAILURES` (default 5), `MIDTRANS_BREAKER_OPEN_MS` (≥ 1000, default 10000).
    pub midtrans: MidtransSettings,
    /// `TICKET_KEY_ENCRYPTION_KEY`: base64 of 32 random bytes; seals the events'
    /// ticket-signing keys at rest (required in production).
    pub ticket_key_encryption_key: MasterKey,
    /// `SMTP_URL` (required in production; without it e-mails wait in the
    /// outbox) and `MAIL_FROM` (default `Tickets <tickets@localhost>`).
    pub smtp_url: Option<String>,
    pub mail_from: String,
    /// `WHATSAPP_API_URL` and `WHATSAPP_TOKEN`: order confirmations also go to
    /// customers who left a phone number (optional; both or neither).
    pub whatsapp: Option<WhatsAppSettings>,
    /// Outbox: `OUTBOX_MAX_ATTEMPTS` before a job is dead-lettered (default 10);
    /// retries back off from `OUTBOX_RETRY_BASE_MS` (default 1000) doubling up to
    /// `OUTBOX_RETRY_MAX_MS` (default 300000); a claimed job is leased for
    /// `OUTBOX_LEASE_MS` (default 60000); `OUTBOX_BATCH_SIZE` (default 20).
    pub outbox_max_attempts: i32,
    pub outbox_retry_base: Duration,
    pub outbox_retry_max: Duration,
    pub outbox_lease: Duration,
    pub outbox_batch_size: i64,
    /// Reconciliation: pending payments older than `PAYMENT_RECONCILE_AFTER_SECONDS`
    /// (default 300) are checked with Midtrans's status API, each at most every
    /// `PAYMENT_RECONCILE_INTERVAL_SECONDS` (default 60).
    pub reconcile_after: Duration,
    pub reconcile_interval: Duration,
}

impl Config {
    pub fn from_env() -> Result<Config, Vec<String>> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads through `lookup` so tests can pass their own environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Vec<String>> {
        let mut env = Reader { lookup: &lookup, problems: Vec::new() };

        let environment = match env.get("ENV").as_deref() {
            Some("development") | Some("dev") | Some("test") => Environment::Development,
            Some("production") => Environment::Production,
            // Unset, a forgotten variable would start production on the
            // development secrets anyone can read in this repository.
            None => {
                env.problems.push(
                    "ENV is required: production, or development to run on the built-in development secrets".to_owned(),
                );
                Environment::Development
            }
            Some(other) => {
                env.problems.push(format!("ENV must be production or development, not {other:?}"));
                Environment::Development
            }
        };
        let production = environment == Environment::Production;

        let listen_addr = env.parse("LISTEN_ADDR").unwrap_or_else(|| ([127, 0, 0, 1], 8080).into());
        let admin_listen_addr = env.parse("ADMIN_LISTEN_ADDR").unwrap_or_else(|| ([127, 0, 0, 1], 9090).into());
        let worker_admin_listen_addr =
            env.parse("WORKER_ADMIN_LISTEN_ADDR").unwrap_or_else(|| ([127, 0, 0, 1], 9091).into());

        let pool_timeout = Duration::from_millis(env.parse("DATABASE_POOL_TIMEOUT_MS").unwrap_or(1_000));
        let pool_size = env.pool_size("DATABASE_POOL_SIZE", production);
        let database_url = env.required("DATABASE_URL");
        let replica_url = env.get("DATABASE_REPLICA_URL");
        let replica_pool_size =
            if replica_url.is_some() { env.pool_size("DATABASE_REPLICA_POOL_SIZE", production) } else { 0 };

        let redis_url = env.required("REDIS_URL");
        let redis = RedisSettings {
            url: SecretString::from(redis_url.unwrap_or_default()),
            key_prefix: env.get("REDIS_KEY_PREFIX").unwrap_or_else(|| "ticketing:".to_owned()),
            pool_size: env.parse("REDIS_POOL_SIZE").unwrap_or(4),
            command_timeout: Duration::from_millis(env.parse("REDIS_TIMEOUT_MS").unwrap_or(250)),
        };

        let jwt_secret = match env.get("JWT_SECRET") {
            Some(secret) if secret.chars().count() >= MIN_JWT_SECRET_CHARS => secret,
            Some(_) => {
                env.problems.push(format!("JWT_SECRET must be at least {MIN_JWT_SECRET_CHARS} characters"));
                String::new()
            }
            None if production => {
                env.problems.push("JWT_SECRET is required in production".to_owned());
                String::new()
            }
            None => DEV_JWT_SECRET.to_owned(),
        };

        // Retired settings are refused, not ignored: each one's meaning changed
        // (trusting the header from anyone let a client choose its address;
        // counting every login let anyone lock an owner out).
        for (retired, replacement) in [
            ("TRUST_FORWARDED_FOR", "TRUSTED_PROXIES (the proxies' networks)"),
            ("LOGIN_LIMIT_PER_EMAIL", "LOGIN_FAILURES_PER_ACCOUNT_AND_IP and LOGIN_FAILURES_PER_ACCOUNT"),
        ] {
            if env.get(retired).is_some() {
                env.problems.push(format!("{retired} is replaced by {replacement}"));
            }
        }
        let max_watchers = env.parse::<usize>("MAX_WATCHERS").unwrap_or(20_000);
        let trusted_proxies = env.get("TRUSTED_PROXIES").map_or_else(Vec::new, |list| {
            list.split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .filter_map(|entry| match parse_network(entry) {
                    Some(network) => Some(network),
                    None => {
                        env.problems.push(format!("TRUSTED_PROXIES has an invalid network {entry:?}"));
                        None
                    }
                })
                .collect()
        });

        let cors_allow_origins = match env.get("CORS_ALLOW_ORIGINS") {
            Some(list) => {
                let origins: Vec<String> =
                    list.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect();
                if origins.iter().any(|o| o == "*") {
                    if production {
                        env.problems.push("CORS_ALLOW_ORIGINS must list origins, not *, in production".to_owned());
                    }
                    None
                } else {
                    Some(origins)
                }
            }
            None if production => {
                env.problems.push("CORS_ALLOW_ORIGINS is required in production".to_owned());
                None
            }
            None => None,
        };

        let midtrans_server_key = match env.get("MIDTRANS_SERVER_KEY") {
            Some(key) => key,
            None if production => {
                env.problems.push("MIDTRANS_SERVER_KEY is required in production".to_owned());
                String::new()
            }
            None => DEV_MIDTRANS_SERVER_KEY.to_owned(),
        };
        let midtrans_timeout = Duration::from_millis(env.parse("MIDTRANS_TIMEOUT_MS").unwrap_or(3_000));
        let breaker_open = Duration::from_millis(env.parse("MIDTRANS_BREAKER_OPEN_MS").unwrap_or(10_000));
        if breaker_open < Duration::from_secs(1) {
            env.problems.push("MIDTRANS_BREAKER_OPEN_MS must be at least 1000".to_owned());
        }
        let midtrans = MidtransSettings {
            snap_url: env.get("MIDTRANS_SNAP_URL").unwrap_or_else(|| "https://app.sandbox.midtrans.com".to_owned()),
            api_url: env.get("MIDTRANS_API_URL").unwrap_or_else(|| "https://api.sandbox.midtrans.com".to_owned()),
            server_key: SecretString::from(midtrans_server_key),
            notification_url: env.get("MIDTRANS_NOTIFICATION_URL"),
            finish_url: env.get("PAYMENT_FINISH_URL"),
            timeout: midtrans_timeout,
            breaker_failures: env.parse("MIDTRANS_BREAKER_FAILURES").unwrap_or(5),
            breaker_open: breaker_open.max(Duration::from_secs(1)),
        };
        let ticket_key_encryption_key = match env.get("TICKET_KEY_ENCRYPTION_KEY") {
            Some(encoded) => match STANDARD.decode(encoded.trim()).ok().and_then(|k| <[u8; 32]>::try_from(k).ok()) {
                Some(key) => MasterKey(key),
                None => {
                    env.problems.push("TICKET_KEY_ENCRYPTION_KEY must be the base64 of 32 bytes".to_owned());
                    MasterKey([0; 32])
                }
            },
            None if production => {
                env.problems.push("TICKET_KEY_ENCRYPTION_KEY is required in production".to_owned());
                MasterKey([0; 32])
            }
            None => MasterKey(DEV_TICKET_KEY_ENCRYPTION_KEY),
        };
        let smtp_url = env.get("SMTP_URL");
        if smtp_url.is_none() && production {
            env.problems.push("SMTP_URL is required in production".to_owned());
        }

        let whatsapp = match (env.get("WHATSAPP_API_URL"), env.get("WHATSAPP_TOKEN")) {
            (Some(url), Some(token)) => Some(WhatsAppSettings { url, token: SecretString::from(token) }),
            (None, None) => None,
            _ => {
                env.problems.push("WHATSAPP_API_URL and WHATSAPP_TOKEN go together".to_owned());
                None
            }
        };

        let config = Config {
            environment,
            whatsapp,
            midtrans,
            ticket_key_encryption_key,
            smtp_url,
            mail_from: env.get("MAIL_FROM").unwrap_or_else(|| "Tickets <tickets@localhost>".to_owned()),
            outbox_max_attempts: env.parse("OUTBOX_MAX_ATTEMPTS").unwrap_or(10),
            outbox_retry_base: Duration::from_millis(env.parse("OUTBOX_RETRY_BASE_MS").unwrap_or(1_000)),
            outbox_retry_max: Duration::from_millis(env.parse("OUTBOX_RETRY_MAX_MS").unwrap_or(300_000)),
            outbox_lease: Duration::from_millis(env.parse("OUTBOX_LEASE_MS").unwrap_or(60_000)),
            outbox_batch_size: env.parse("OUTBOX_BATCH_SIZE").unwrap_or(20),
            reconcile_after: Duration::from_secs(env.parse("PAYMENT_RECONCILE_AFTER_SECONDS").unwrap_or(300)),
            reconcile_interval: Duration::from_secs(env.parse("PAYMENT_RECONCILE_INTERVAL_SECONDS").unwrap_or(60)),
            listen_addr,
            admin_listen_addr,
            worker_admin_listen_addr,
            database: PoolSettings {
                url: SecretString::from(database_url.unwrap_or_default()),
                max_size: pool_size,
                connection_timeout: pool_timeout,
            },
            database_replica: replica_url.map(|url| PoolSettings {
                url: SecretString::from(url),
                max_size: replica_pool_size,
                connection_timeout: pool_timeout,
            }),
            database_direct_url: env.get("DATABASE_DIRECT_URL").map(SecretString::from),
            redis,
            jwt_secret: SecretString::from(jwt_secret),
            jwt_ttl: Duration::from_secs(env.parse("JWT_TTL_SECONDS").unwrap_or(3_600)),
            cors_allow_origins,
            max_request_bytes: env.parse("MAX_REQUEST_BYTES").unwrap_or(1 << 20),
            header_read_timeout: Duration::from_millis(env.parse("HTTP_HEADER_READ_TIMEOUT_MS").unwrap_or(5_000)),
            body_read_timeout: Duration::from_millis(env.parse("HTTP_BODY_READ_TIMEOUT_MS").unwrap_or(10_000)),
            max_connections: env.parse::<usize>("MAX_CONNECTIONS").unwrap_or(10_000 + max_watchers).max(1),
            http2_max_concurrent_streams: env.parse("HTTP2_MAX_CONCURRENT_STREAMS").unwrap_or(256),
            login_failures_per_account_and_ip: env.quota("LOGIN_FAILURES_PER_ACCOUNT_AND_IP", 10),
            login_failures_per_account: env.quota("LOGIN_FAILURES_PER_ACCOUNT", 100),
            login_limit_per_ip: env.quota("LOGIN_LIMIT_PER_IP", 100),
            password_hash_concurrency: env
                .parse("PASSWORD_HASH_CONCURRENCY")
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
                .max(1),
            password_hash_max_wait: Duration::from_millis(env.parse("PASSWORD_HASH_MAX_WAIT_MS").unwrap_or(500)),
            max_pending_orders: env.parse::<i32>("MAX_PENDING_ORDERS_PER_CUSTOMER").unwrap_or(3).max(0),
            order_limit_per_user: env.quota("ORDER_LIMIT_PER_USER", 30),
            enforce_tickets_per_customer: env.parse("ENFORCE_TICKETS_PER_CUSTOMER").unwrap_or(true),
            queue_joins_per_ip: env.quota("QUEUE_JOINS_PER_IP", 30),
            queue_joins_per_customer: env.quota("QUEUE_JOINS_PER_CUSTOMER", 10),
            waiting_room_tick: Duration::from_millis(env.parse("WAITING_ROOM_TICK_MS").unwrap_or(500).max(10)),
            cancellation_refunds_per_second: env
                .parse("CANCELLATION_REFUNDS_PER_SECOND")
                .unwrap_or(20)
                .clamp(1, 10_000),
            challenge_ttl: Duration::from_secs(env.parse("WAITING_ROOM_CHALLENGE_TTL_SECONDS").unwrap_or(600).max(1)),
            scan_limit_per_scanner: env.quota("SCAN_LIMIT_PER_SCANNER", 600),
            api_key_limit_per_minute: env.quota("API_KEY_LIMIT_PER_MINUTE", 600),
            expected_replicas: env.parse("EXPECTED_REPLICAS").unwrap_or(1),
            trusted_proxies: trusted_proxies.into(),
            shutdown_grace: Duration::from_secs(env.parse("SHUTDOWN_GRACE_SECONDS").unwrap_or(25)),
            order_hold: Duration::from_secs(env.parse("ORDER_HOLD_SECONDS").unwrap_or(900)),
            sold_out_memo: Duration::from_millis(env.parse("SOLD_OUT_MEMO_MS").unwrap_or(1_000)),
            availability_push: Duration::from_millis(env.parse("AVAILABILITY_PUSH_MS").unwrap_or(1_000).max(10)),
            queue_push: Duration::from_millis(env.parse("QUEUE_PUSH_MS").unwrap_or(1_000).max(10)),
            max_watchers,
            metrics_enabled: env.parse("METRICS_ENABLED").unwrap_or(true),
            concurrency_min: env.parse("CONCURRENCY_LIMIT_MIN").unwrap_or(16),
            concurrency_max: env.parse("CONCURRENCY_LIMIT_MAX").unwrap_or(512),
            latency_objective: Duration::from_millis(env.parse("CONCURRENCY_LATENCY_OBJECTIVE_MS").unwrap_or(1_000)),
            concurrency_max_wait: Duration::from_millis(env.parse("CONCURRENCY_MAX_WAIT_MS").unwrap_or(20)),
            catalog_cache_ttl: Duration::from_millis(env.parse("CATALOG_CACHE_TTL_MS").unwrap_or(5_000)),
            catalog_local_cache_ttl: Duration::from_millis(env.parse("CATALOG_LOCAL_CACHE_TTL_MS").unwrap_or(1_000)),
            http_cache_max_age: env.parse("HTTP_CACHE_MAX_AGE").unwrap_or(5),
            http_cache_s_maxage: env.parse("HTTP_CACHE_S_MAXAGE").unwrap_or(5),
            http_cache_stale_while_revalidate: env.parse("HTTP_CACHE_STALE_WHILE_REVALIDATE").unwrap_or(30),
            idempotency_ttl: Duration::from_secs(3_600 * env.parse::<u64>("IDEMPOTENCY_KEY_TTL_HOURS").unwrap_or(25)),
            expiry_batch_size: env.parse("EXPIRY_BATCH_SIZE").unwrap_or(500),
            worker_poll: Duration::from_millis(env.parse("WORKER_POLL_MS").unwrap_or(1_000)),
        };
        if env.problems.is_empty() { Ok(config) } else { Err(env.problems) }
    }
}

struct Reader<'a, F: Fn(&str) -> Option<String>> {
    lookup: &'a F,
    problems: Vec<String>,
}

/// A network (`10.0.0.0/8`) or a single address (`127.0.0.1`).
fn parse_network(entry: &str) -> Option<IpNet> {
    entry.parse().ok().or_else(|| entry.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

impl<F: Fn(&str) -> Option<String>> Reader<'_, F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    fn required(&mut self, name: &str) -> Option<String> {
        let value = self.get(name);
        if value.is_none() {
            self.problems.push(format!("{name} is required"));
        }
        value
    }

    fn parse<T: std::str::FromStr>(&mut self, name: &str) -> Option<T> {
        let raw = self.get(name)?;
        match raw.trim().parse() {
            Ok(value) => Some(value),
            Err(_) => {
                self.problems.push(format!("{name} has an invalid value {raw:?}"));
                None
            }
        }
    }

    /// A rate limit's quota: at least 1, since a limit of 0 would refuse
    /// every request with no time to retry after.
    fn quota(&mut self, name: &str, default: u32) -> u32 {
        match self.parse::<u32>(name) {
            Some(0) => {
                self.problems.push(format!("{name} must be at least 1"));
                1
            }
            Some(quota) => quota,
            None => default,
        }
    }

    /// Pool sizes must be chosen for production (they size PgBouncer too);
    /// development defaults to a small pool.
    fn pool_size(&mut self, name: &str, production: bool) -> u32 {
        match self.parse::<u32>(name) {
            Some(0) => {
                self.problems.push(format!("{name} must be at least 1"));
                1
            }
            Some(size) => size,
            None if production && self.get(name).is_none() => {
                self.problems.push(format!("{name} is required in production"));
                1
            }
            None => 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, Vec<String>> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const BASE: [(&str, &str); 3] =
        [("ENV", "development"), ("DATABASE_URL", "postgres://db/t"), ("REDIS_URL", "redis://r:6379")];

    #[test]
    fn without_env_the_service_refuses_to_start_and_names_env() {
        let problems = config(&BASE[1..]).unwrap_err();
        assert!(problems.iter().any(|p| p.starts_with("ENV is required")), "{problems:?}");
    }

    #[test]
    fn development_has_safe_defaults() {
        let config = config(&BASE).unwrap();
        assert_eq!(config.environment, Environment::Development);
        assert!(config.jwt_secret.expose_secret().len() >= MIN_JWT_SECRET_CHARS);
        assert_eq!(config.listen_addr.ip().to_string(), "127.0.0.1");
        assert_eq!(config.admin_listen_addr.ip().to_string(), "127.0.0.1");
        assert_eq!(config.database.max_size, 10);
        assert!(config.database_replica.is_none());
    }

    #[test]
    fn production_reports_every_problem_at_once() {
        let problems =
            config(&[("ENV", "production"), ("JWT_SECRET", "short"), ("CORS_ALLOW_ORIGINS", "*")]).unwrap_err();
        let all = problems.join("\n");
        for expected in [
            "DATABASE_URL is required",
            "REDIS_URL is required",
            "JWT_SECRET must be at least 32",
            "CORS_ALLOW_ORIGINS must list origins",
            "DATABASE_POOL_SIZE is required in production",
            "MIDTRANS_SERVER_KEY is required in production",
            "TICKET_KEY_ENCRYPTION_KEY is required in production",
            "SMTP_URL is required in production",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in {all}");
        }
    }

    #[test]
    fn production_without_secret_or_cors_is_refused() {
        let mut vars = BASE.to_vec();
        vars.extend([("ENV", "production"), ("DATABASE_POOL_SIZE", "20")]);
        let all = config(&vars).unwrap_err().join("\n");
        assert!(all.contains("JWT_SECRET is required in production"));
        assert!(all.contains("CORS_ALLOW_ORIGINS is required in production"));
    }

    #[test]
    fn complete_production_config_is_accepted() {
        let mut vars = BASE.to_vec();
        vars.extend([
            ("ENV", "production"),
            ("DATABASE_POOL_SIZE", "20"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("CORS_ALLOW_ORIGINS", "https://tickets.example, https://admin.example"),
            ("MIDTRANS_SERVER_KEY", "Mid-server-production"),
            ("TICKET_KEY_ENCRYPTION_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
            ("SMTP_URL", "smtp://mail.example:587?tls=required"),
        ]);
        let config = config(&vars).unwrap();
        assert_eq!(config.cors_allow_origins.unwrap(), ["https://tickets.example", "https://admin.example"]);
        assert_eq!(config.database.max_size, 20);
    }

    #[test]
    fn malformed_numbers_are_reported() {
        let mut vars = BASE.to_vec();
        vars.extend([
            ("DATABASE_POOL_SIZE", "many"),
            ("LISTEN_ADDR", "nowhere"),
            ("TICKET_KEY_ENCRYPTION_KEY", "c2hvcnQ="),
        ]);
        let all = config(&vars).unwrap_err().join("\n");
        assert!(all.contains("TICKET_KEY_ENCRYPTION_KEY must be the base64 of 32 bytes"));
        assert!(all.contains("DATABASE_POOL_SIZE has an invalid value"));
        assert!(all.contains("LISTEN_ADDR has an invalid value"));
    }

    #[test]
    fn a_rate_limit_of_zero_is_refused_and_unset_limits_take_their_defaults() {
        let mut vars = BASE.to_vec();
        vars.extend([("ORDER_LIMIT_PER_USER", "0"), ("QUEUE_JOINS_PER_IP", "0")]);
        let all = config(&vars).unwrap_err().join("\n");
        assert!(all.contains("ORDER_LIMIT_PER_USER must be at least 1"), "{all}");
        assert!(all.contains("QUEUE_JOINS_PER_IP must be at least 1"), "{all}");
        let config = config(&BASE).unwrap();
        assert_eq!((config.order_limit_per_user, config.queue_joins_per_ip), (30, 30));
    }
}
