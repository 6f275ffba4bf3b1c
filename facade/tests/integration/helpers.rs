//! `TestApp`: a server with a fresh database cloned from a migrated template,
//! plus clients for both transports.

use std::{collections::HashMap, net::SocketAddr, sync::OnceLock, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use ticketing_domain::identity::Role;
use ticketing_facade::server::{self, RunningServer};
use ticketing_service::{AppState, Config, app};
use tonic::{metadata::MetadataValue, transport::Channel};
use uuid::Uuid;

/// The stack's environment: the process environment wins (CI exports it),
/// else `.run/env` of this checkout.
pub fn stack_env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../.run/env");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}; run ci/stack start first"));
        let mut vars: HashMap<String, String> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        for (key, value) in vars.iter_mut() {
            if let Ok(from_env) = std::env::var(key) {
                *value = from_env;
            }
        }
        vars
    })
}

pub fn stack(name: &str) -> String {
    stack_env().get(name).cloned().unwrap_or_else(|| panic!("{name} missing from .run/env"))
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{database}")
}

/// A single value from a direct query.
pub async fn query_value(url: &str, sql: &str) -> Option<String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    let task = tokio::spawn(connection);
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = task.await;
    messages.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    })
}

/// How many times statements of `database` whose text is LIKE each of
/// `patterns` have run on the server at `url`, as pg_stat_statements counts.
pub async fn statement_calls(url: &str, database: &str, patterns: &[&str]) -> i64 {
    let text: String = patterns.iter().map(|p| format!(" AND s.query LIKE '{}'", p.replace('\'', "''"))).collect();
    let sql = format!(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
         WHERE d.datname = '{database}'{text}"
    );
    query_value(url, &sql).await.and_then(|v| v.parse().ok()).unwrap_or(0)
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
                execute(&admin, &format!("CREATE DATABASE {name}")).await;
                ticketing_store::migrate::run_pending(&with_database(&admin, &name)).await.expect("migrations apply");
                name
            })
        })
        .join()
        .expect("template database")
    })
}

pub async fn execute(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    let task = tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = task.await;
}

/// A fresh database for one test, visible on the replica before it returns.
pub async fn fresh_database() -> String {
    let name = format!("t_{}", Uuid::now_v7().simple());
    execute(&stack("DATABASE_DIRECT_URL"), &format!("CREATE DATABASE {name} TEMPLATE {}", template())).await;
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
    // Short enough that "eventually" in tests outlasts replica lag plus a cached copy.
    vars.insert("CATALOG_CACHE_TTL_MS".into(), "500".into());
    vars.insert("CATALOG_LOCAL_CACHE_TTL_MS".into(), "200".into());
    // Tests place many orders per customer; the limit itself has its own test.
    vars.insert("ORDER_LIMIT_PER_USER".into(), "100000".into());
    // Tests buy seats back the moment they return; the sold-out memo has its own test.
    vars.insert("SOLD_OUT_MEMO_MS".into(), "0".into());
    // Payments: nothing listens on port 1 unless a test points these at its simulator.
    vars.insert("MIDTRANS_SERVER_KEY".into(), crate::gateway::TEST_MIDTRANS_SERVER_KEY.into());
    vars.insert("MIDTRANS_SNAP_URL".into(), "http://127.0.0.1:1".into());
    vars.insert("MIDTRANS_API_URL".into(), "http://127.0.0.1:1".into());
    vars.insert("MIDTRANS_BREAKER_OPEN_MS".into(), "1000".into());
    vars.insert("OUTBOX_RETRY_BASE_MS".into(), "100".into());
    vars.insert("OUTBOX_RETRY_MAX_MS".into(), "400".into());
    vars
}

pub fn config_from(vars: &HashMap<String, String>) -> Config {
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test config is valid")
}

pub struct TestApp {
    pub server: Option<RunningServer>,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub database: String,
    pub vars: HashMap<String, String>,
    /// The same state the server builds, for arranging data directly.
    pub state: AppState,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(&[]).await
    }

    pub async fn spawn_with(overrides: &[(&str, &str)]) -> TestApp {
        let database = fresh_database().await;
        let mut vars = test_vars(&database);
        for (key, value) in overrides {
            vars.insert((*key).to_owned(), (*value).to_owned());
        }
        let server = server::start(config_from(&vars)).await.expect("server starts");
        let state = AppState::new(config_from(&vars)).expect("state");
        TestApp {
            addr: server.addr,
            admin_addr: server.admin_addr,
            server: Some(server),
            database,
            vars,
            state,
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client"),
        }
    }

    /// The running server's own state (the test's `state` has pools of its own).
    pub fn serving(&self) -> &AppState {
        &self.server.as_ref().expect("the server is running").state
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn direct_url(&self) -> String {
        self.vars["DATABASE_DIRECT_URL"].clone()
    }

    /// One REST call; returns status, headers and the JSON body (Null if none).
    pub async fn rest(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Response::read(request.send().await.expect("request sent")).await
    }

    pub async fn raw(&self, request: reqwest::RequestBuilder) -> Response {
        Response::read(request.send().await.expect("request sent")).await
    }

    /// Creates an account directly and returns a token for it (over REST).
    pub async fn user(&self, role: Role) -> TestUser {
        let email = format!("{}-{}@example.com", role.as_str(), Uuid::now_v7().simple());
        let password = "a long enough password".to_owned();
        let user = app::auth::create_user(&self.state, &email, password.clone(), role).await.expect("user created");
        let response = self
            .rest(Method::POST, "/v1/auth/token", None, Some(json!({ "email": email, "password": password })))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
        TestUser { id: user.id, email, token: response.body["accessToken"].as_str().expect("token").to_owned() }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).expect("uri").connect().await.expect("gRPC connects")
    }

    /// The admin listener's Prometheus text.
    pub async fn metrics(&self) -> String {
        let response = self.http.get(format!("http://{}/metrics", self.admin_addr)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        query_value(&self.direct_url(), &format!("SELECT count(*) FROM {table}"))
            .await
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("clean shutdown");
        }
    }

    /// Starts the server again on the same database; on the same address
    /// when the app was spawned with a fixed `LISTEN_ADDR`.
    pub async fn restart(&mut self) {
        self.stop().await;
        let server = server::start(config_from(&self.vars)).await.expect("server restarts");
        self.addr = server.addr;
        self.admin_addr = server.admin_addr;
        self.server = Some(server);
    }
}

pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

/// A gRPC request with a bearer token.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("ascii token");
    request.metadata_mut().insert("authorization", value);
    request
}

#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Response {
    /// Status, headers and the JSON body (Null if none) of an answer.
    pub async fn read(response: reqwest::Response) -> Response {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body read");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Response { status, headers, body }
    }

    /// Asserts the documented error shape and returns its ErrorInfo reason.
    pub fn error_reason(&self, http: u16, status: &str) -> String {
        assert_eq!(self.status.as_u16(), http, "unexpected status; body: {}", self.body);
        let error = &self.body["error"];
        assert_eq!(error["code"], http, "body: {}", self.body);
        assert_eq!(error["status"], status, "body: {}", self.body);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "body: {}", self.body);
        let info = error["details"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"))
            .unwrap_or_else(|| panic!("no ErrorInfo in {}", self.body));
        assert_eq!(info["domain"], "ticketing");
        info["reason"].as_str().expect("reason").to_owned()
    }

    /// Field paths of the BadRequest detail.
    pub fn bad_fields(&self) -> Vec<String> {
        self.body["error"]["details"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest"))
            .map(|b| {
                b["fieldViolations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| v["field"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A valid event body, times relative to now.
pub fn event_body(name: &str) -> Value {
    let now = chrono::Utc::now();
    json!({
        "name": name,
        "description": "An evening of jazz",
        "venue": "JIExpo Kemayoran",
        "timeZone": "Asia/Jakarta",
        "startTime": (now + chrono::Duration::days(30)).to_rfc3339(),
        "endTime": (now + chrono::Duration::days(30) + chrono::Duration::hours(4)).to_rfc3339(),
        "salesStartTime": (now - chrono::Duration::hours(1)).to_rfc3339(),
        "salesEndTime": (now + chrono::Duration::days(29)).to_rfc3339(),
    })
}

pub fn category_body(name: &str, capacity: i32) -> Value {
    json!({
        "name": name,
        "price": { "currencyCode": "IDR", "units": "750000", "nanos": 0 },
        "capacity": capacity,
        "maxPerOrder": 4,
    })
}

/// Creates, fills and publishes an event over REST; returns its id.
pub async fn published_event(app: &TestApp, organizer: &TestUser, name: &str) -> String {
    let created = app.rest(Method::POST, "/v1/events", Some(&organizer.token), Some(event_body(name))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let category = app
        .rest(
            Method::POST,
            &format!("/v1/events/{id}/ticketCategories"),
            Some(&organizer.token),
            Some(category_body("Festival", 500)),
        )
        .await;
    assert_eq!(category.status, StatusCode::CREATED, "{}", category.body);
    let published = app.rest(Method::POST, &format!("/v1/events/{id}:publish"), Some(&organizer.token), None).await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.body);
    id
}

/// Retries `check` until it returns Some (reads from the replica trail the
/// primary by a few milliseconds); bounded by attempts, not wall-clock.
pub async fn eventually<T, F, Fut>(check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(100, Duration::from_millis(20), check).await
}

/// [`eventually`] with its own number of tries and pause between them.
pub async fn eventually_within<T, F, Fut>(tries: usize, pause: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..tries {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(pause).await;
    }
    panic!("condition never held");
}

/// `ticketing serve` processes of the real binary; killed when dropped, even
/// when an assertion fails.
pub struct ServeProcesses {
    children: Vec<std::process::Child>,
    pub bases: Vec<String>,
    /// Each replica's admin listener (`http://…`).
    pub admins: Vec<String>,
    ports: Vec<(u16, u16)>,
    vars: HashMap<String, String>,
}

impl Drop for ServeProcesses {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("port").port()
}

impl ServeProcesses {
    /// Starts `count` replicas with `vars` and waits until each is ready.
    pub async fn start(count: usize, vars: &HashMap<String, String>) -> ServeProcesses {
        let mut processes = ServeProcesses {
            children: Vec::new(),
            bases: Vec::new(),
            admins: Vec::new(),
            ports: Vec::new(),
            vars: vars.clone(),
        };
        for _ in 0..count {
            let (port, admin) = (free_port(), free_port());
            processes.children.push(processes.spawn(port, admin));
            processes.bases.push(format!("http://127.0.0.1:{port}"));
            processes.admins.push(format!("http://127.0.0.1:{admin}"));
            processes.ports.push((port, admin));
        }
        for index in 0..count {
            processes.wait_ready(index).await;
        }
        processes
    }

    fn spawn(&self, port: u16, admin: u16) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_ticketing"))
            .arg("serve")
            .env_clear()
            .envs(self.vars.iter().filter(|(k, _)| *k != "RUST_LOG"))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("ADMIN_LISTEN_ADDR", format!("127.0.0.1:{admin}"))
            .env("RUST_LOG", self.vars.get("RUST_LOG").map_or("error", String::as_str))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ticketing serve starts")
    }

    async fn wait_ready(&self, index: usize) {
        let http = reqwest::Client::new();
        // Generous: a debug build starting while other tests load both cores.
        for _ in 0..600 {
            let ready = http.get(format!("{}/readyz", self.admins[index])).send().await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} never became ready", self.admins[index]);
    }

    /// `kill -9`: no drain, connections cut mid-request.
    pub fn kill(&mut self, index: usize) {
        let _ = self.children[index].kill();
        let _ = self.children[index].wait();
    }

    /// Starts a killed replica again on its ports and waits until it is ready.
    pub async fn restart(&mut self, index: usize) {
        let (port, admin) = self.ports[index];
        self.children[index] = self.spawn(port, admin);
        self.wait_ready(index).await;
    }
}

pub const TEST_JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// A token for `user_id` signed with [`TEST_JWT_SECRET`]: for tests that need
/// many accounts without paying argon2 for each.
pub fn mint_token(user_id: Uuid, role: Role) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "sub": user_id, "role": role.as_str(), "iss": "ticketing", "iat": now, "exp": now + 3600 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .expect("token")
}

/// Inserts `count` customers directly (their password hash is unusable).
pub async fn bulk_customers(direct_url: &str, count: usize) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let values: Vec<String> =
        ids.iter().map(|id| format!("('{id}', 'bulk-{}@example.com', 'unusable', 'customer')", id.simple())).collect();
    execute(direct_url, &format!("INSERT INTO users (id, email, password_hash, role) VALUES {}", values.join(",")))
        .await;
    ids
}

/// Sign-ups provably in flight: a transaction locks `users`, and the
/// sign-ups wait on it inside the database until [`HeldSignUps::release`].
pub struct HeldSignUps {
    locker: tokio_postgres::Client,
    requests: Vec<tokio::task::JoinHandle<reqwest::Result<StatusCode>>>,
}

impl HeldSignUps {
    /// Commits the lock; returns each held sign-up's status.
    pub async fn release(self) -> Vec<StatusCode> {
        self.locker.batch_execute("COMMIT").await.expect("lock released");
        let mut statuses = Vec::new();
        for request in self.requests {
            statuses.push(request.await.expect("request task").expect("request answered"));
        }
        statuses
    }
}

impl TestApp {
    /// A transaction on this test's database that takes the locks `sql` takes
    /// and keeps them until the returned client commits.
    pub async fn lock(&self, sql: &str) -> tokio_postgres::Client {
        let (locker, connection) =
            tokio_postgres::connect(&self.direct_url(), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        locker.batch_execute(&format!("BEGIN; {sql}")).await.expect("locks taken");
        locker
    }

    /// Backends of this test's database waiting on a lock.
    pub async fn lock_waiters(&self) -> usize {
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND wait_event_type = 'Lock'",
            self.database
        );
        query_value(&self.direct_url(), &sql).await.and_then(|n| n.parse().ok()).expect("a count")
    }

    /// Sends `count` sign-ups and returns once all of them wait on the lock.
    pub async fn hold_sign_ups(&self, count: usize) -> HeldSignUps {
        let locker = self.lock("LOCK TABLE users IN ACCESS EXCLUSIVE MODE;").await;
        let requests = (0..count)
            .map(|n| {
                let request = self
                    .http
                    .post(self.url("/v1/auth/register"))
                    .json(&json!({ "email": format!("held{n}-{}@example.com", Uuid::now_v7().simple()), "password": "a long enough password" }));
                tokio::spawn(async move { request.send().await.map(|r| r.status()) })
            })
            .collect();
        for attempt in 0.. {
            if self.lock_waiters().await == count {
                break;
            }
            assert!(attempt < 500, "sign-ups never reached the database");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        HeldSignUps { locker, requests }
    }
}

/// POSTs `body` as JSON with a bearer token; returns the JSON answer.
pub async fn post_json(http: &reqwest::Client, url: &str, token: &str, body: &Value) -> Value {
    http.post(url).bearer_auth(token).json(body).send().await.expect("sent").json().await.expect("JSON answer")
}

/// The value of the first sample whose line starts with `prefix` (0 when none).
pub fn metric_sample(text: &str, prefix: &str) -> f64 {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

/// Runs a program a test relies on (a client suite, a checker) and returns
/// its standard output; a failure's whole output is the panic message.
pub async fn run(command: &mut tokio::process::Command, what: &str) -> String {
    let output = command.kill_on_drop(true).output().await.unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
