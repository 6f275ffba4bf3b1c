//! The local stack (`ci/stack start`) and a fresh database per test.

use std::{collections::HashMap, sync::OnceLock, time::Duration};

use ticketing_service::Config;
use uuid::Uuid;

use super::{TEST_MIDTRANS_SERVER_KEY, db::connect, init_test_log};

/// The stack's environment: the process environment wins (CI exports it),
/// else `.run/env` of this checkout.
pub fn stack_env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut vars = env_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../.run/env"), "run ci/stack start first");
        for (key, value) in vars.iter_mut() {
            if let Ok(from_env) = std::env::var(key) {
                *value = from_env;
            }
        }
        vars
    })
}

/// `NAME=value` lines of a file ci/stack wrote (`#` comments skipped).
pub fn env_file(path: &str, hint: &str) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}; {hint}"));
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

pub fn stack(name: &str) -> String {
    stack_env().get(name).cloned().unwrap_or_else(|| panic!("{name} missing from .run/env"))
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{database}")
}

/// A migrated template database, made once per test run; each test clones it.
fn template() -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        // Its own runtime: the connections must not live on one test's runtime.
        std::thread::spawn(|| {
            tokio::runtime::Runtime::new().expect("runtime").block_on(async {
                let name = format!("tpl_{}", Uuid::now_v7().simple());
                let admin = stack("DATABASE_DIRECT_URL");
                create_database(&format!("CREATE DATABASE {name}")).await;
                ticketing_store::migrate::run_pending(&with_database(&admin, &name)).await.expect("migrations apply");
                name
            })
        })
        .join()
        .expect("template database")
    })
}

/// The one statement the tests build with `format!`: a database name cannot
/// be a bind parameter, and these names are generated above (`t_`/`tpl_` and
/// hex), never taken from test data.
async fn create_database(sql: &str) {
    create_database_at(&stack("DATABASE_DIRECT_URL"), sql).await;
}

/// [`create_database`] on the server `admin_url` reaches.
async fn create_database_at(admin_url: &str, sql: &str) {
    let (client, task) = connect(admin_url).await;
    client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = task.await;
}

/// An empty database (not migrated), for a test of `ticketing migrate`.
pub async fn empty_database() -> String {
    empty_database_at(&stack("DATABASE_DIRECT_URL")).await
}

/// An empty database on the server `admin_url` reaches (the HA cluster's).
pub async fn empty_database_at(admin_url: &str) -> String {
    let name = format!("t_{}", Uuid::now_v7().simple());
    create_database_at(admin_url, &format!("CREATE DATABASE {name}")).await;
    name
}

/// A fresh database for one test, visible on the replica before it returns.
pub async fn fresh_database() -> String {
    let name = format!("t_{}", Uuid::now_v7().simple());
    create_database(&format!("CREATE DATABASE {name} TEMPLATE {}", template())).await;
    on_the_replica(name).await
}

/// A copy of `database` as it is now, on the replica too before it returns.
/// Nothing writes to the copy: as a server's read replica, it is a replica
/// that never replays another change. Whatever is still connected to
/// `database` (PgBouncer's server connections) is disconnected to copy it.
pub async fn frozen_copy(database: &str) -> String {
    let name = format!("t_{}", Uuid::now_v7().simple());
    let (client, task) = connect(&stack("DATABASE_DIRECT_URL")).await;
    let disconnect = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                       WHERE datname = $1 AND pid <> pg_backend_pid()";
    let mut copied = false;
    for _ in 0..100 {
        client.query_one(disconnect, &[&database]).await.expect("disconnect the database's sessions");
        match client.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {database}")).await {
            Ok(()) => {
                copied = true;
                break;
            }
            // Someone connected again in between.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("copying {database}: {e}"),
        }
    }
    assert!(copied, "{database} kept being connected to; not copied");
    drop(client);
    let _ = task.await;
    on_the_replica(name).await
}

/// `name` once the replica has it.
async fn on_the_replica(name: String) -> String {
    let replica = with_database(&stack("DATABASE_REPLICA_DIRECT_URL"), &name);
    for _ in 0..200 {
        if tokio_postgres::connect(&replica, tokio_postgres::NoTls).await.is_ok() {
            return name;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("database {name} never reached the replica");
}

/// The environment a test server runs with: the stack, a fresh database,
/// ports chosen by the OS, and a Redis key prefix of its own.
pub fn test_vars(database: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    vars.insert("ENV".into(), "development".into());
    vars.insert("DATABASE_URL".into(), with_database(&stack("DATABASE_URL"), database));
    vars.insert("DATABASE_REPLICA_URL".into(), with_database(&stack("DATABASE_REPLICA_URL"), database));
    vars.insert("DATABASE_DIRECT_URL".into(), with_database(&stack("DATABASE_DIRECT_URL"), database));
    vars.insert("REDIS_URL".into(), stack("REDIS_URL"));
    vars.insert("REDIS_KEY_PREFIX".into(), format!("test:{database}:"));
    vars.insert("LISTEN_ADDR".into(), "127.0.0.1:0".into());
    vars.insert("ADMIN_LISTEN_ADDR".into(), "127.0.0.1:0".into());
    vars.insert("DATABASE_POOL_SIZE".into(), "4".into());
    vars.insert("DATABASE_REPLICA_POOL_SIZE".into(), "4".into());
    vars.insert("SHUTDOWN_GRACE_SECONDS".into(), "10".into());
    vars.insert("JWT_SECRET".into(), TEST_JWT_SECRET.into());
    // Tests place many unpaid orders as one customer; the cap has tests of its own.
    vars.insert("MAX_PENDING_ORDERS_PER_CUSTOMER".into(), "1000".into());
    // Short enough that "eventually" in tests outlasts replica lag plus a cached copy.
    vars.insert("CATALOG_CACHE_TTL_MS".into(), "500".into());
    vars.insert("CATALOG_LOCAL_CACHE_TTL_MS".into(), "200".into());
    // Tests place many orders per customer; the limit itself has its own test.
    vars.insert("ORDER_LIMIT_PER_USER".into(), "100000".into());
    // Tests buy seats back the moment they return; the sold-out memo has its own test.
    vars.insert("SOLD_OUT_MEMO_MS".into(), "0".into());
    // Payments: nothing listens on port 1 unless a test points these at its simulator.
    vars.insert("MIDTRANS_SERVER_KEY".into(), TEST_MIDTRANS_SERVER_KEY.into());
    vars.insert("MIDTRANS_SNAP_URL".into(), "http://127.0.0.1:1".into());
    vars.insert("MIDTRANS_API_URL".into(), "http://127.0.0.1:1".into());
    vars.insert("MIDTRANS_BREAKER_OPEN_MS".into(), "1000".into());
    vars.insert("OUTBOX_RETRY_BASE_MS".into(), "100".into());
    vars.insert("OUTBOX_RETRY_MAX_MS".into(), "400".into());
    vars
}

/// The configuration of an in-process server or state; every one is built
/// here, so this is where `TEST_LOG`'s subscriber gets installed.
pub fn config_from(vars: &HashMap<String, String>) -> Config {
    init_test_log();
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test config is valid")
}

pub const TEST_JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";
