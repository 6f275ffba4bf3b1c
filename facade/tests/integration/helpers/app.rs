//! `TestApp`: a server with a fresh database cloned from a migrated template,
//! plus clients for both transports.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use ticketing_domain::identity::Role;
use ticketing_facade::server::{self, RunningServer};
use ticketing_service::{AppState, app};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use uuid::Uuid;

use super::{
    HaCluster, Processes, Response, Sim, Table, ToSql, config_from, fresh_database, query_one, test_vars, webhook,
};

/// How long the test client keeps an idle connection for its next request.
const IDLE_CONNECTION_KEPT: Duration = Duration::from_secs(2);

pub struct TestApp {
    pub server: Option<RunningServer>,
    /// The server as a process of the real binary ([`AppBuilder::own_process`]).
    pub process: Option<Processes>,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub database: String,
    pub vars: HashMap<String, String>,
    /// The same state the server builds, for arranging data directly.
    pub state: AppState,
    pub http: reqwest::Client,
    /// The Midtrans the app asks about notifications, unless the test chose one.
    pub default_midtrans: Option<Sim>,
}

impl TestApp {
    /// A server with the test settings ([`test_vars`]) on a fresh database.
    pub async fn spawn() -> TestApp {
        TestApp::builder().spawn().await
    }

    /// The same with settings of its own:
    /// `TestApp::builder().var("NAME", "value").midtrans(&sim).spawn()`.
    pub fn builder() -> AppBuilder {
        AppBuilder::default()
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

    /// Rows in `table` of this test's database.
    pub async fn count(&self, table: Table) -> i64 {
        query_one(&self.direct_url(), table.count_sql(), &[]).await.expect("a count")
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("clean shutdown");
        }
        if let Some(process) = &mut self.process {
            process.kill(0);
        }
    }

    /// Starts the server again on the same database; on the same address
    /// when the app was spawned with a fixed `LISTEN_ADDR` or as a process.
    pub async fn restart(&mut self) {
        self.stop().await;
        if let Some(process) = &mut self.process {
            process.restart(0).await;
            return;
        }
        let server = server::start(config_from(&self.vars)).await.expect("server restarts");
        self.addr = server.addr;
        self.admin_addr = server.admin_addr;
        self.server = Some(server);
    }

    /// A session of its own on this test's database, straight to Postgres.
    pub async fn session(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.direct_url(), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        client
    }

    /// A transaction on this test's database that takes the locks `sql` takes
    /// and keeps them until the returned client commits.
    pub async fn lock(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> tokio_postgres::Client {
        let locker = self.session().await;
        locker.batch_execute("BEGIN").await.expect("a transaction");
        locker.execute(sql, params).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        locker
    }

    /// Backends of this test's database waiting on a lock.
    pub async fn lock_waiters(&self) -> usize {
        let sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'";
        let waiters: i64 = query_one(&self.direct_url(), sql, &[&self.database]).await.expect("a count");
        waiters as usize
    }

    /// Sends `count` sign-ups and returns once all of them wait on the lock.
    pub async fn hold_sign_ups(&self, count: usize) -> HeldSignUps {
        let locker = self.lock("LOCK TABLE users IN ACCESS EXCLUSIVE MODE", &[]).await;
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

/// Settings over [`test_vars`] for one [`TestApp`], applied in order (a later
/// one for the same name wins).
#[derive(Default)]
pub struct AppBuilder {
    overrides: Vec<(String, String)>,
    own_process: bool,
    cluster: Option<HaCluster>,
}

impl AppBuilder {
    /// The server as a process of the real binary, with a metrics recorder
    /// of its own: in-process servers share the test binary's one recorder,
    /// so another test's traffic could satisfy a metrics assertion.
    /// [`TestApp::serving`] is not available then.
    pub fn own_process(mut self) -> AppBuilder {
        self.own_process = true;
        self
    }

    /// The test's database on the highly available cluster, not the plain stack.
    pub fn on_cluster(mut self, cluster: &HaCluster) -> AppBuilder {
        self.cluster = Some(cluster.clone());
        self
    }

    pub fn var(mut self, name: &str, value: impl Into<String>) -> AppBuilder {
        self.overrides.push((name.to_owned(), value.into()));
        self
    }

    /// Payments through `sim`. A simulator made [`Sim::with_webhook`] also
    /// fixes the server's address (its notifications need it before the
    /// server exists), and the worker polls every 50 ms for the tests that
    /// wait on it.
    pub fn midtrans(self, sim: &Sim) -> AppBuilder {
        let builder = self.var("MIDTRANS_SNAP_URL", &sim.url).var("MIDTRANS_API_URL", &sim.url);
        match sim.app_port {
            Some(port) => builder
                .var("LISTEN_ADDR", format!("127.0.0.1:{port}"))
                .var("MIDTRANS_NOTIFICATION_URL", webhook(port))
                .var("WORKER_POLL_MS", "50"),
            None => builder,
        }
    }

    pub async fn spawn(self) -> TestApp {
        let (database, mut vars) = match &self.cluster {
            Some(cluster) => {
                let database = cluster.database().await;
                let vars = cluster.vars(&database);
                (database, vars)
            }
            None => {
                let database = fresh_database().await;
                let vars = test_vars(&database);
                (database, vars)
            }
        };
        // Notifications are confirmed with the status API: every app has a
        // Midtrans to ask, unless the test chose one (Snap stays unreachable
        // unless the test sets it).
        let chose_midtrans = self.overrides.iter().any(|(name, _)| name == "MIDTRANS_API_URL");
        let default_midtrans = if chose_midtrans { None } else { Some(Sim::start().await) };
        if let Some(sim) = &default_midtrans {
            vars.insert("MIDTRANS_API_URL".into(), sim.url.clone());
        }
        vars.extend(self.overrides);
        let (server, process, addr, admin_addr) = if self.own_process {
            let process = Processes::start(1, &vars).await;
            let address = |url: &str| url.trim_start_matches("http://").parse().expect("a process's address");
            let (addr, admin_addr) = (address(&process.bases[0]), address(&process.admins[0]));
            (None, Some(process), addr, admin_addr)
        } else {
            let server = server::start(config_from(&vars)).await.expect("server starts");
            let (addr, admin_addr) = (server.addr, server.admin_addr);
            (Some(server), None, addr, admin_addr)
        };
        let state = AppState::new(config_from(&vars)).expect("state");
        TestApp {
            addr,
            admin_addr,
            server,
            process,
            database,
            vars,
            state,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                // Under the servers' idle keep-alive deadline (HTTP_HEADER_READ_TIMEOUT_MS,
                // 5 s), as any client should be: a request sent on a connection
                // the server is closing at that moment fails (IncompleteMessage).
                .pool_idle_timeout(IDLE_CONNECTION_KEPT)
                .build()
                .expect("http client"),
            default_midtrans,
        }
    }
}

pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub token: String,
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

/// `ticketing worker`'s loops, in-process; stopped when dropped.
pub struct Worker {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn start(state: AppState) -> Worker {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(ticketing_service::worker::run(state, stopped));
        Worker { stop, task: Some(task) }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
