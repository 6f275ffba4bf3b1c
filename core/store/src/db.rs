//! Database access that stays correct behind PgBouncer 1.18 in transaction
//! pooling mode (shared/PGBOUNCER.md):
//!
//! - connections are built by [`establish`]: diesel-async's start-up
//!   statements run inside one transaction, and its prepared-statement cache
//!   is off, so no named statement outlives the transaction it was prepared in;
//! - the pool checks a connection without a query (its socket is open and
//!   no transaction is left broken): no statement outside a transaction, and
//!   no extra round trip per request;
//! - callers never get a bare connection: every query, reads included, runs in
//!   a transaction through [`Database::write`], [`Database::read`] or
//!   [`Database::read_replica`];
//! - the one exception is [`Database::statement`], for hot paths that fit in a
//!   single statement: tokio-postgres's `query_typed` sends an unnamed
//!   statement (parse, bind, execute) in one round trip, which is its own
//!   transaction and safe through any PgBouncer.

use std::time::Duration;

use bb8_postgres::PostgresConnectionManager;
use diesel::ConnectionError;
use diesel::connection::CacheSize;
use diesel_async::{
    AsyncConnection, AsyncPgConnection, SimpleAsyncConnection,
    pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod, bb8::Pool},
};
use futures::{FutureExt, future::BoxFuture};
use scoped_futures::ScopedBoxFuture;
use secrecy::{ExposeSecret, SecretString};
use ticketing_domain::Error;
use tracing::Instrument;

use crate::error::StoreError;

pub type Conn = AsyncPgConnection;

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub url: SecretString,
    pub max_size: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub connection_timeout: Duration,
}

/// Whether the replica is worth trying: after a failed checkout, reads skip
/// it for a while (failsafe's state machine, a breaker of one failure) and go
/// to the primary, so a dead replica costs no read its connect attempt.
type ReplicaBreaker =
    failsafe::StateMachine<failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>, ()>;

/// The primary (writes, read-your-writes) and an optional streaming replica
/// (reads that tolerate a little staleness).
#[derive(Clone)]
pub struct Database {
    primary: Pool<Conn>,
    replica_breaker: ReplicaBreaker,
    /// Plain tokio-postgres clients for [`Database::statement`].
    statements: StatementPool,
    /// The gate's own clients, one per redeem lane, also serving its event-key
    /// lookups ([`Database::gate_statement`]): an on-sale rush queueing for
    /// `statements` must not make scans wait.
    gate: StatementPool,
    replica: Option<Pool<Conn>>,
    primary_timeout: Duration,
    replica_timeout: Duration,
    /// Configured sizes (primary, replica), reported with the pool gauges.
    max_sizes: (u32, u32),
}

impl Database {
    /// Builds the pools without connecting: the service starts even while the
    /// database is down and reports that through readiness.
    pub fn new(primary: &PoolSettings, replica: Option<&PoolSettings>) -> Database {
        let retry_replica_after = failsafe::backoff::constant(Duration::from_secs(2));
        Database {
            primary: build_pool(primary),
            replica_breaker: failsafe::Config::new()
                .failure_policy(failsafe::failure_policy::consecutive_failures(1, retry_replica_after))
                .build(),
            statements: build_statement_pool(primary, primary.max_size),
            gate: build_statement_pool(primary, <crate::checkin::Redeem as crate::lanes::Batch>::LANES as u32),
            replica: replica.map(build_pool),
            primary_timeout: primary.connection_timeout,
            replica_timeout: replica.map_or(primary.connection_timeout, |r| r.connection_timeout),
            max_sizes: (primary.max_size, replica.map_or(0, |r| r.max_size)),
        }
    }

    /// Runs `body` in a read-write transaction on the primary.
    pub async fn write<'a, R, F>(&self, body: F) -> Result<R, Error>
    where
        R: Send + 'a,
        F: for<'r> FnOnce(&'r mut Conn) -> ScopedBoxFuture<'a, 'r, Result<R, StoreError>> + Send + 'a,
    {
        let span = tracing::info_span!("db.transaction", db.pool = PRIMARY, db.access = "read_write");
        async move {
            let mut conn = checkout(&self.primary, PRIMARY, self.primary_timeout).await?;
            let timer = QueryTimer::start(PRIMARY);
            let result = conn.transaction(async move |conn| body(conn).await).await;
            timer.stop();
            Ok(result?)
        }
        .instrument(span)
        .await
    }

    /// Runs `body` in a read-only transaction on the primary: for reads that
    /// must see the caller's own writes.
    pub async fn read<'a, R, F>(&self, body: F) -> Result<R, Error>
    where
        R: Send + 'a,
        F: for<'r> FnOnce(&'r mut Conn) -> ScopedBoxFuture<'a, 'r, Result<R, StoreError>> + Send + 'a,
    {
        read_only(&self.primary, PRIMARY, self.primary_timeout, body).await
    }

    /// Runs `body` in a read-only transaction on the replica when one is
    /// configured and reachable, else on the primary: losing the replica
    /// costs the primary some reads (`ticketing_db_replica_fallbacks_total`);
    /// only a read caught on a connection that dies under it fails, once.
    pub async fn read_replica<'a, R, F>(&self, body: F) -> Result<R, Error>
    where
        R: Send + 'a,
        F: for<'r> FnOnce(&'r mut Conn) -> ScopedBoxFuture<'a, 'r, Result<R, StoreError>> + Send + 'a,
    {
        if let Some(replica) = self.replica.as_ref().filter(|_| self.replica_breaker.is_call_permitted()) {
            match checkout(replica, REPLICA, self.replica_timeout).await {
                Ok(conn) => {
                    let result = in_read_only(conn, REPLICA, body).await;
                    // A connection that died under the query: this read fails
                    // (its body is spent), the next ones go to the primary.
                    let broken = |e: &Error| {
                        matches!(e.code, ticketing_domain::Code::Unavailable | ticketing_domain::Code::Internal)
                    };
                    if result.as_ref().is_err_and(broken) {
                        self.replica_breaker.on_error();
                    } else {
                        self.replica_breaker.on_success();
                    }
                    return result;
                }
                Err(error) => {
                    self.replica_breaker.on_error();
                    tracing::warn!(%error, "read replica unavailable; reading from the primary");
                }
            }
        }
        if self.replica.is_some() {
            metrics::counter!("ticketing_db_replica_fallbacks_total").increment(1);
        }
        read_only(&self.primary, PRIMARY, self.primary_timeout, body).await
    }

    /// Sets `ticketing_db_replica_lag_seconds`: how far the replica's replay
    /// trails (0 when it has replayed all it received).
    pub async fn record_replica_lag(&self) {
        let Some(replica) = &self.replica else { return };
        // Exported with the lag, so "no fallback yet" reads as 0, not as absent.
        metrics::counter!("ticketing_db_replica_fallbacks_total").increment(0);
        let lag = async {
            let conn = checkout(replica, REPLICA, self.replica_timeout).await?;
            in_read_only(conn, REPLICA, |conn| {
                async move {
                    #[derive(diesel::QueryableByName)]
                    struct Lag {
                        #[diesel(sql_type = diesel::sql_types::Double)]
                        seconds: f64,
                    }
                    let lag: Lag = diesel_async::RunQueryDsl::get_result(
                        diesel::sql_query(
                            "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                                    ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
                                    END::float8 AS seconds",
                        ),
                        conn,
                    )
                    .await?;
                    Ok(lag.seconds)
                }
                .scope_boxed()
            })
            .await
            .map_err(StoreError::from)
        };
        match lag.await {
            Ok(seconds) => metrics::gauge!("ticketing_db_replica_lag_seconds").set(seconds),
            Err(error) => tracing::debug!(%error, "replica lag not measured"),
        }
    }

    /// Runs one statement on the primary, outside any explicit transaction,
    /// in one round trip (no BEGIN/COMMIT): for hot paths whose whole work is
    /// one statement, such as an order's hold.
    pub async fn statement(
        &self,
        sql: &str,
        params: &[StatementParam<'_>],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.run_statement(&self.statements, STATEMENTS, sql, params).await
    }

    /// As [`Database::statement`], on the gate's own connections.
    pub async fn gate_statement(
        &self,
        sql: &str,
        params: &[StatementParam<'_>],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.run_statement(&self.gate, GATE, sql, params).await
    }

    async fn run_statement(
        &self,
        pool: &StatementPool,
        pool_name: &'static str,
        sql: &str,
        params: &[StatementParam<'_>],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let span = tracing::info_span!("db.statement", db.pool = PRIMARY);
        async move {
            let started = std::time::Instant::now();
            let client = pool.get().await;
            record_acquire(pool_name, started);
            let client = client.map_err(|e| match e {
                bb8::RunError::TimedOut => {
                    metrics::counter!("ticketing_db_pool_timeouts_total", "pool" => pool_name).increment(1);
                    StoreError::PoolTimeout(self.primary_timeout)
                }
                bb8::RunError::User(error) => StoreError::Connection(error.to_string()),
            })?;
            let timer = QueryTimer::start(pool_name);
            let rows = client.query_typed(sql, params).await;
            timer.stop();
            rows.map_err(StoreError::from)
        }
        .instrument(span)
        .await
    }

    /// True when the primary answers a query.
    pub async fn primary_is_reachable(&self) -> bool {
        // Every connection in use is busy, not down: a probe queued behind the
        // requests would wait out the pool's timeout and fail a loaded
        // replica's readiness, taking it out of the balancer when it is needed.
        let pool = self.primary.state();
        if pool.connections > 0 && pool.idle_connections == 0 {
            return true;
        }
        self.write(|conn| async move { Ok(conn.batch_execute("SELECT 1").await?) }.scope_boxed()).await.is_ok()
    }

    /// Sets the pool gauges (size, idle, in use) for a metrics scrape.
    pub fn record_pool_state(&self) {
        let pools =
            [(PRIMARY, Some(&self.primary), self.max_sizes.0), (REPLICA, self.replica.as_ref(), self.max_sizes.1)];
        for (name, pool, max_size) in pools {
            let Some(pool) = pool else { continue };
            let state = pool.state();
            metrics::gauge!("ticketing_db_pool_max_size", "pool" => name).set(f64::from(max_size));
            metrics::gauge!("ticketing_db_pool_connections", "pool" => name, "state" => "idle")
                .set(f64::from(state.idle_connections));
            metrics::gauge!("ticketing_db_pool_connections", "pool" => name, "state" => "in_use")
                .set(f64::from(state.connections - state.idle_connections));
        }
    }
}

use scoped_futures::ScopedFutureExt;

const PRIMARY: &str = "primary";
const STATEMENTS: &str = "statements";
const GATE: &str = "gate";
const REPLICA: &str = "replica";

/// Takes a connection, measuring the wait: the pool is where overload shows
/// first (`ticketing_db_pool_waiters`, `…_acquire_seconds`, `…_timeouts_total`).
async fn checkout<'p>(
    pool: &'p Pool<Conn>,
    name: &'static str,
    timeout: Duration,
) -> Result<bb8::PooledConnection<'p, AsyncDieselConnectionManager<Conn>>, StoreError> {
    let waiters = metrics::gauge!("ticketing_db_pool_waiters", "pool" => name);
    waiters.increment(1.0);
    let started = std::time::Instant::now();
    let result = pool.get().await;
    waiters.decrement(1.0);
    record_acquire(name, started);
    result.map_err(|e| {
        metrics::counter!("ticketing_db_pool_timeouts_total", "pool" => name).increment(1);
        pool_error(e, timeout)
    })
}

async fn read_only<'a, R, F>(pool: &Pool<Conn>, name: &'static str, timeout: Duration, body: F) -> Result<R, Error>
where
    R: Send + 'a,
    F: for<'r> FnOnce(&'r mut Conn) -> ScopedBoxFuture<'a, 'r, Result<R, StoreError>> + Send + 'a,
{
    let conn = checkout(pool, name, timeout).await?;
    in_read_only(conn, name, body).await
}

/// Runs `body` in a read-only transaction on a connection already taken.
async fn in_read_only<'a, R, F>(
    mut conn: bb8::PooledConnection<'_, AsyncDieselConnectionManager<Conn>>,
    name: &'static str,
    body: F,
) -> Result<R, Error>
where
    R: Send + 'a,
    F: for<'r> FnOnce(&'r mut Conn) -> ScopedBoxFuture<'a, 'r, Result<R, StoreError>> + Send + 'a,
{
    let span = tracing::info_span!("db.transaction", db.pool = name, db.access = "read_only");
    async move {
        let timer = QueryTimer::start(name);
        let result = conn.build_transaction().read_only().run(async move |conn| body(conn).await).await;
        timer.stop();
        Ok(result?)
    }
    .instrument(span)
    .await
}

/// The wait for a connection, from any pool (`ticketing_db_pool_acquire_seconds`).
fn record_acquire(pool: &'static str, started: std::time::Instant) {
    metrics::histogram!("ticketing_db_pool_acquire_seconds", "pool" => pool).record(started.elapsed().as_secs_f64());
}

/// Time with a connection in hand, until the database's answer
/// (`ticketing_db_query_seconds`): a request's database phase, apart from
/// waiting for the connection (`…_pool_acquire_seconds`) and from the service's
/// own work (the rest of `ticketing_request_duration_seconds`).
struct QueryTimer {
    pool: &'static str,
    started: std::time::Instant,
}

impl QueryTimer {
    fn start(pool: &'static str) -> QueryTimer {
        QueryTimer { pool, started: std::time::Instant::now() }
    }

    fn stop(self) {
        metrics::histogram!("ticketing_db_query_seconds", "pool" => self.pool)
            .record(self.started.elapsed().as_secs_f64());
    }
}

fn pool_error(error: bb8::RunError<diesel_async::pooled_connection::PoolError>, timeout: Duration) -> StoreError {
    match error {
        bb8::RunError::TimedOut => StoreError::PoolTimeout(timeout),
        bb8::RunError::User(error) => StoreError::Connection(error.to_string()),
    }
}

fn build_pool(settings: &PoolSettings) -> Pool<Conn> {
    let mut config = ManagerConfig::default();
    config.custom_setup = Box::new(establish);
    // The default "verified" ping is a prepared statement outside a
    // transaction, and any ping costs a round trip per request: a connection
    // whose socket closed, or whose transaction broke, is known without asking.
    config.recycling_method = RecyclingMethod::CustomFunction(Box::new(|conn| {
        let broken = PoolableConnection::is_broken(conn);
        async move { if broken { Err(diesel::result::Error::BrokenTransactionManager) } else { Ok(()) } }.boxed()
    }));
    let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(settings.url.expose_secret(), config);
    Pool::builder()
        .max_size(settings.max_size)
        .min_idle(Some(0))
        .connection_timeout(settings.connection_timeout)
        .retry_connection(false)
        .build_unchecked(manager)
}

type StatementPool = bb8::Pool<PostgresConnectionManager<tokio_postgres::NoTls>>;

/// A statement's parameter with its type (`query_typed`: no prepare round trip).
pub type StatementParam<'a> = (&'a (dyn tokio_postgres::types::ToSql + Sync), tokio_postgres::types::Type);

/// A single-statement pool of `max_size` clients with the primary's timeout;
/// no ping on checkout (a closed client is noticed without one).
fn build_statement_pool(settings: &PoolSettings, max_size: u32) -> StatementPool {
    let config: tokio_postgres::Config =
        settings.url.expose_secret().parse().unwrap_or_else(|_| tokio_postgres::Config::new());
    bb8::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        .connection_timeout(settings.connection_timeout)
        .test_on_check_out(false)
        .retry_connection(false)
        .connection_customizer(Box::new(SessionTimeZone))
        .build_unchecked(PostgresConnectionManager::new(config, tokio_postgres::NoTls))
}

/// Statement connections ask for the session time zone diesel-async's
/// connections set (UTC). PgBouncer keeps each client's TimeZone and, where
/// a server connection last served the other kind, sends a `SET` before the
/// query: with the two kinds interleaved that was one more statement on most
/// orders and scans. A `SET` outside a transaction is safe here: PgBouncer
/// records it for this client and applies it wherever the client goes.
#[derive(Debug)]
struct SessionTimeZone;

impl bb8::CustomizeConnection<tokio_postgres::Client, tokio_postgres::Error> for SessionTimeZone {
    fn on_acquire<'a>(
        &'a self,
        client: &'a mut tokio_postgres::Client,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a>> {
        Box::pin(client.batch_execute("SET TimeZone = 'UTC'"))
    }
}

/// Opens one connection the PgBouncer-safe way (the recipe of
/// shared/PGBOUNCER.md): diesel-async's own start-up statements run inside a
/// transaction, so they are prepared and closed on one server connection.
pub fn establish(url: &str) -> BoxFuture<'_, diesel::ConnectionResult<Conn>> {
    async move {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "database connection closed");
            }
        });
        client.batch_execute("BEGIN").await.map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
        let mut conn = AsyncPgConnection::try_from(client).await?;
        conn.set_prepared_statement_cache_size(CacheSize::Disabled);
        conn.batch_execute("COMMIT").await.map_err(ConnectionError::CouldntSetupConfiguration)?;
        Ok(conn)
    }
    .boxed()
}
