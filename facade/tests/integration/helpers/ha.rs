//! The highly available database (`ci/stack ha`, ci/ha.sh): three Postgres
//! nodes under Patroni and etcd, HAProxy routing to the leader and to the
//! asynchronous replica by Patroni's health checks, PgBouncer on both.

use std::{collections::HashMap, path::PathBuf, process::Command, time::Duration};

use super::{empty_database_at, env_file, stack_env, test_vars, with_database};

/// The cluster as the failover tests see it: its settings (`.run/env-ha`)
/// and each node's REST API and data directory.
#[derive(Clone)]
pub struct HaCluster {
    pub env: HashMap<String, String>,
    rest_ports: Vec<u16>,
    data_dir: PathBuf,
    http: reqwest::Client,
}

/// A node's standing, as Patroni's REST API answers HAProxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    Leader,
    SyncStandby,
    AsyncReplica,
    /// Down, starting, rewinding: none of the above.
    Other,
}

impl HaCluster {
    /// Starts the cluster if it is not running (idempotent) and waits until
    /// it has a leader, a synchronous standby and an asynchronous replica.
    pub async fn up() -> HaCluster {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/stack");
        let started = tokio::task::spawn_blocking(move || Command::new(script).arg("ha").output())
            .await
            .expect("ci/stack ha ran")
            .expect("ci/stack ha starts");
        assert!(started.status.success(), "ci/stack ha: {}", String::from_utf8_lossy(&started.stderr));
        let env = env_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../.run/env-ha"), "ci/stack ha writes it");
        let rest_ports = env["HA_REST_PORTS"].split(',').map(|p| p.parse().expect("a port")).collect();
        let data_dir = PathBuf::from(&env["HA_DATA_DIR"]);
        HaCluster { env, rest_ports, data_dir, http: reqwest::Client::new() }
    }

    pub fn nodes(&self) -> usize {
        self.rest_ports.len()
    }

    pub fn name(&self, node: usize) -> String {
        format!("node{}", node + 1)
    }

    async fn answers(&self, node: usize, path: &str) -> bool {
        let url = format!("http://127.0.0.1:{}{path}", self.rest_ports[node]);
        let asked = self.http.get(url).timeout(Duration::from_secs(1)).send().await;
        asked.is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
    }

    pub async fn role(&self, node: usize) -> NodeRole {
        if self.answers(node, "/primary").await {
            NodeRole::Leader
        } else if self.answers(node, "/sync").await {
            NodeRole::SyncStandby
        } else if self.answers(node, "/async").await {
            NodeRole::AsyncReplica
        } else {
            NodeRole::Other
        }
    }

    /// The node in `role`, when exactly one is.
    pub async fn node_in(&self, role: NodeRole) -> Option<usize> {
        let mut found = Vec::new();
        for node in 0..self.nodes() {
            if self.role(node).await == role {
                found.push(node);
            }
        }
        (found.len() == 1).then(|| found[0])
    }

    /// Waits (bounded) until the cluster has all three roles again.
    pub async fn settled(&self, patience: Duration) -> (usize, usize, usize) {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let (Some(leader), Some(sync), Some(replica)) = (
                self.node_in(NodeRole::Leader).await,
                self.node_in(NodeRole::SyncStandby).await,
                self.node_in(NodeRole::AsyncReplica).await,
            ) && self.primary_port_leads().await
            {
                return (leader, sync, replica);
            }
            assert!(tokio::time::Instant::now() < deadline, "the cluster did not settle within {patience:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether HAProxy's primary port reaches one server and it takes
    /// writes (its checks trail Patroni's roles by up to a second).
    async fn primary_port_leads(&self) -> bool {
        let stats = format!("{};csv", self.env["HA_HAPROXY_STATS_URL"]);
        let Ok(csv) = self.http.get(stats).send().await else { return false };
        let csv = csv.text().await.unwrap_or_default();
        let up = csv
            .lines()
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > 17 && f[0] == "primary" && f[1] != "FRONTEND" && f[1] != "BACKEND" && f[17] == "UP")
            .count();
        if up != 1 {
            return false;
        }
        let url = &self.env["DATABASE_DIRECT_URL"];
        let Ok(Ok((client, connection))) =
            tokio::time::timeout(Duration::from_secs(2), tokio_postgres::connect(url, tokio_postgres::NoTls)).await
        else {
            return false;
        };
        let task = tokio::spawn(connection);
        let leads = client.query_one("SELECT NOT pg_is_in_recovery()", &[]).await.is_ok_and(|row| row.get(0));
        drop(client);
        let _ = task.await;
        leads
    }

    /// The node's postmaster (from its pid file).
    pub fn postmaster_pid(&self, node: usize) -> i32 {
        let path = self.data_dir.join(self.name(node)).join("data/postmaster.pid");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines().next().and_then(|l| l.trim().parse().ok()).expect("a pid")
    }

    /// The node's Patroni process.
    pub fn patroni_pid(&self, node: usize) -> i32 {
        let path = self.data_dir.join(self.name(node)).join("patroni.pid");
        std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok()).expect("a pid")
    }

    /// The node's own Postgres, not through HAProxy.
    pub fn node_url(&self, node: usize) -> String {
        let port = self.env["HA_PG_PORTS"].split(',').nth(node).expect("a port");
        format!("postgres://ticketing@127.0.0.1:{port}/ticketing")
    }

    /// Freezes the node as a partition would cut it off: its Patroni, its
    /// postmaster and every Postgres process under it (SIGSTOP), until the
    /// returned guard thaws them ([`Frozen::thaw`], or when it is dropped:
    /// a failed test never leaves the shared cluster frozen).
    pub fn freeze(&self, node: usize) -> Frozen {
        let postmaster = self.postmaster_pid(node);
        let children = Command::new("pgrep").args(["-P", &postmaster.to_string()]).output().expect("pgrep runs");
        let mut pids = vec![self.patroni_pid(node), postmaster];
        pids.extend(String::from_utf8_lossy(&children.stdout).lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        for pid in &pids {
            signal(*pid, "-STOP");
        }
        Frozen { pids }
    }

    /// `patronictl switchover` from `leader` to `candidate`, now.
    pub async fn switchover(&self, leader: usize, candidate: usize) {
        let config = self.data_dir.join("node1/patroni.yml");
        let (leader, candidate) = (self.name(leader), self.name(candidate));
        let done = tokio::task::spawn_blocking(move || {
            let config = config.to_string_lossy().into_owned();
            let patronictl = ["patronictl", "-c", &config, "switchover", "--leader", &leader];
            let mut command = if running_as_root() {
                let mut command = Command::new("setpriv");
                command.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
                command.args(patronictl);
                command
            } else {
                let mut command = Command::new(patronictl[0]);
                command.args(&patronictl[1..]);
                command
            };
            command.args(["--candidate", &candidate, "--force"]).output()
        })
        .await
        .expect("patronictl ran")
        .expect("patronictl starts");
        assert!(done.status.success(), "switchover: {}", String::from_utf8_lossy(&done.stdout));
    }

    /// A database of the test's own on the cluster, migrated.
    pub async fn database(&self) -> String {
        let name = empty_database_at(&self.env["DATABASE_DIRECT_URL"]).await;
        let url = with_database(&self.env["DATABASE_DIRECT_URL"], &name);
        ticketing_store::migrate::run_pending(&url).await.expect("migrations apply");
        name
    }

    /// The settings of a server on `database` of the cluster; Redis and the
    /// rest from the plain stack, as [`test_vars`] gives them.
    pub fn vars(&self, database: &str) -> HashMap<String, String> {
        let mut vars = test_vars(database);
        for name in ["DATABASE_URL", "DATABASE_REPLICA_URL", "DATABASE_DIRECT_URL"] {
            vars.insert(name.into(), with_database(&self.env[name], database));
        }
        vars.insert("REDIS_URL".into(), stack_env()["REDIS_URL"].clone());
        vars
    }
}

/// Sends `signal` (`-KILL`, `-STOP`, `-CONT`) to `pid`.
pub fn signal(pid: i32, signal: &str) {
    let sent = Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill runs");
    assert!(sent.success(), "kill {signal} {pid}");
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Processes of a node frozen by [`HaCluster::freeze`].
pub struct Frozen {
    pids: Vec<i32>,
}

impl Frozen {
    /// Resumes them (SIGCONT).
    pub fn thaw(self) {
        drop(self);
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for pid in &self.pids {
            // Not `signal`: a process may have died meanwhile, and a panic
            // here, while a failed test unwinds, would abort the run.
            let _ = Command::new("kill").args(["-CONT", &pid.to_string()]).status();
        }
    }
}
