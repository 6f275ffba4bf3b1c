//! Redis as tests see it: a server of a test's own (to stop, kill or
//! restart without disturbing other tests), and reads of what the service
//! keeps there.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use super::TestApp;

/// A `redis-server` of one test's own.
pub struct OwnRedis {
    pub port: u16,
    /// With an append-only file in this directory: what the stack runs.
    dir: Option<PathBuf>,
    child: Option<Child>,
}

impl OwnRedis {
    /// Nothing kept across a restart.
    pub fn start(port: u16) -> OwnRedis {
        let mut redis = OwnRedis { port, dir: None, child: None };
        redis.spawn();
        redis
    }

    /// Persistent as `ci/stack`'s: `appendonly yes`, `appendfsync everysec`.
    pub fn start_persistent(port: u16) -> OwnRedis {
        let dir = std::env::temp_dir().join(format!("ticketing-redis-{port}-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("redis directory");
        let mut redis = OwnRedis { port, dir: Some(dir), child: None };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""]);
        match &self.dir {
            Some(dir) => command.args(["--appendonly", "yes", "--appendfsync", "everysec"]).arg("--dir").arg(dir),
            None => command.args(["--appendonly", "no"]),
        };
        self.child = Some(command.stdout(Stdio::null()).spawn().expect("redis-server starts"));
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `kill -9`: what the append-only file had by then is all that is left.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `SCRIPT FLUSH`: the script cache emptied, as a restart or a failover leaves it.
    pub async fn forget_scripts(&self) {
        let out = redis_cli(&self.url(), &["SCRIPT", "FLUSH"]).await.expect("redis-cli SCRIPT FLUSH");
        assert_eq!(out.trim(), "OK");
    }

    /// Scripts it has run by their SHA-1 (`INFO commandstats`): what the
    /// service's scripted decisions cost it in round trips.
    pub async fn script_calls(&self) -> u64 {
        let out = redis_cli(&self.url(), &["INFO", "commandstats"]).await.expect("redis-cli INFO");
        let Some(line) = out.lines().find(|line| line.starts_with("cmdstat_evalsha:")) else { return 0 };
        let calls = line.split([':', ',']).find_map(|field| field.strip_prefix("calls="));
        calls.expect("calls=").parse().expect("a count")
    }

    /// Starts it again on its port (and its file), and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn();
        for _ in 0..100 {
            if redis_cli(&self.url(), &["PING"]).await.is_some_and(|out| out.trim() == "PONG") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("redis on {} never came back", self.port);
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn redis_cli(url: &str, args: &[&str]) -> Option<String> {
    let output = tokio::process::Command::new("redis-cli").args(["-u", url, "--raw"]).args(args).output().await.ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

impl TestApp {
    /// Deletes what the service keeps under `key` (its key prefix added).
    pub async fn redis_delete(&self, key: &str) {
        let key = format!("{}{key}", self.vars["REDIS_KEY_PREFIX"]);
        redis_cli(&self.vars["REDIS_URL"], &["DEL", &key]).await.expect("redis-cli DEL");
    }

    /// How long `key` (its key prefix added) has left to live, in ms; `None`
    /// for a key that is missing or never expires.
    pub async fn redis_pttl(&self, key: &str) -> Option<u64> {
        let key = format!("{}{key}", self.vars["REDIS_KEY_PREFIX"]);
        let out = redis_cli(&self.vars["REDIS_URL"], &["PTTL", &key]).await.expect("redis-cli PTTL");
        out.trim().parse::<i64>().ok().and_then(|millis| u64::try_from(millis).ok())
    }

    /// A hash the service keeps under `key` (its key prefix added).
    pub async fn redis_hash(&self, key: &str) -> HashMap<String, String> {
        let key = format!("{}{key}", self.vars["REDIS_KEY_PREFIX"]);
        let out = redis_cli(&self.vars["REDIS_URL"], &["HGETALL", &key]).await.expect("redis-cli HGETALL");
        let lines: Vec<&str> = out.lines().collect();
        lines.chunks(2).filter_map(|pair| Some((pair.first()?.to_string(), pair.get(1)?.to_string()))).collect()
    }
}
