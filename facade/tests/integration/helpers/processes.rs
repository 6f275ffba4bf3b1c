//! Processes of the real binary and of the tools a test relies on.

use std::{collections::HashMap, time::Duration};

use reqwest::StatusCode;

use super::test_log;

/// `ticketing serve` (or `ticketing worker`) processes of the real binary;
/// killed when dropped, even when an assertion fails.
pub struct Processes {
    command: &'static str,
    children: Vec<std::process::Child>,
    pub bases: Vec<String>,
    /// Each replica's admin listener (`http://…`).
    pub admins: Vec<String>,
    ports: Vec<(u16, u16)>,
    vars: HashMap<String, String>,
    /// Where the processes' logs go, when not to the test's stderr.
    log: Option<std::path::PathBuf>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nothing listens on right now, for a listener that must be named
/// before it exists (nginx's configuration, a Redis or SMTP server of the
/// test's own, the webhook address a simulator calls). Drawn below the
/// kernel's ephemeral range (32768 and up here), which every outgoing
/// connection and every `bind(0)` takes from, and below the local stacks'
/// ports (20000 and up, `ci/lib.sh`); never the same port twice in one test
/// run, so no two tests of this binary hold one at once. Servers of the
/// binary itself bind port 0 instead and say which port they got
/// ([`Processes`]).
pub fn free_port() -> u16 {
    use rand::Rng;
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().expect("port registry");
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(10_000..20_000);
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no free port between 10000 and 20000");
}

impl Processes {
    /// Starts `count` replicas with `vars` and waits until each is ready.
    pub async fn start(count: usize, vars: &HashMap<String, String>) -> Processes {
        Processes::start_command("serve", count, vars).await
    }

    /// Starts `count` workers with `vars` and waits until each is ready
    /// (`bases` stays empty: a worker has no public port).
    pub async fn start_workers(count: usize, vars: &HashMap<String, String>) -> Processes {
        Processes::start_command("worker", count, vars).await
    }

    /// One replica whose logs (stderr) go to `log`, for a test that reads them.
    pub async fn start_logging(vars: &HashMap<String, String>, log: &std::path::Path) -> Processes {
        Processes::start_command_logging("serve", 1, vars, Some(log.to_owned())).await
    }

    async fn start_command(command: &'static str, count: usize, vars: &HashMap<String, String>) -> Processes {
        Processes::start_command_logging(command, count, vars, None).await
    }

    async fn start_command_logging(
        command: &'static str,
        count: usize,
        vars: &HashMap<String, String>,
        log: Option<std::path::PathBuf>,
    ) -> Processes {
        let mut processes = Processes {
            command,
            children: Vec::new(),
            bases: Vec::new(),
            admins: Vec::new(),
            ports: Vec::new(),
            vars: vars.clone(),
            log,
        };
        for _ in 0..count {
            // Port 0: the kernel picks, and the process says what it got.
            let (child, port, admin) = processes.spawn(0, 0).await;
            processes.children.push(child);
            if command == "serve" {
                processes.bases.push(format!("http://127.0.0.1:{port}"));
            }
            processes.admins.push(format!("http://127.0.0.1:{admin}"));
            processes.ports.push((port, admin));
        }
        for index in 0..count {
            processes.wait_ready(index).await;
        }
        processes
    }

    /// Starts the process on `port` and `admin` (0: any) and returns it with
    /// the ports it bound, read from the line it prints once it listens.
    async fn spawn(&self, port: u16, admin: u16) -> (std::process::Child, u16, u16) {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ticketing"))
            .arg(self.command)
            .env_clear()
            .envs(self.vars.iter().filter(|(k, _)| *k != "RUST_LOG"))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("ADMIN_LISTEN_ADDR", format!("127.0.0.1:{admin}"))
            .env("WORKER_ADMIN_LISTEN_ADDR", format!("127.0.0.1:{admin}"))
            // A test's own RUST_LOG first, then TEST_LOG's; errors only by default.
            .env("RUST_LOG", self.vars.get("RUST_LOG").map(String::as_str).or(test_log()).unwrap_or("error"))
            // Logs go to stderr, which stays the test binary's (libtest does
            // not capture a child's), so they show beside the test's output.
            .stdout(std::process::Stdio::piped())
            .stderr(match &self.log {
                Some(path) => std::fs::File::create(path).expect("log file").into(),
                None => std::process::Stdio::inherit(),
            })
            .spawn()
            .expect("ticketing starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let what = format!("ticketing {}", self.command);
        let line = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut reader = std::io::BufReader::new(stdout);
            let mut line = String::new();
            reader.read_line(&mut line)?;
            // The rest is drained, so a later print never meets a closed pipe.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            Ok::<_, std::io::Error>(line)
        })
        .await
        .expect("reader task")
        .unwrap_or_else(|e| panic!("{what}: reading its stdout: {e}"));
        // `listening public=127.0.0.1:P admin=127.0.0.1:A` (a worker: admin only).
        let bound = |key: &str| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix(key))
                .map(|addr| addr.parse::<std::net::SocketAddr>().expect("an address").port())
        };
        let admin = bound("admin=").unwrap_or_else(|| {
            let log = self.log.as_ref().map(std::fs::read_to_string).transpose().ok().flatten().unwrap_or_default();
            panic!("{what} did not start: printed {line:?}\n{log}")
        });
        (child, bound("public=").unwrap_or(0), admin)
    }

    /// Waits until the process answers ready on its admin listener.
    async fn wait_ready(&mut self, index: usize) {
        let http = reqwest::Client::new();
        // Generous: a debug build starting while other tests load both cores.
        for _ in 0..600 {
            let ready = http.get(format!("{}/readyz", self.admins[index])).send().await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            let exited = self.children[index].try_wait().ok().flatten();
            assert!(exited.is_none(), "{} exited before it was ready: {exited:?}", self.admins[index]);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} never became ready", self.admins[index]);
    }

    /// Process `index`'s Prometheus text (its admin listener's `/metrics`).
    pub async fn metrics(&self, index: usize) -> String {
        let response = reqwest::get(format!("{}/metrics", self.admins[index])).await.expect("the admin listener");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("metrics")
    }

    /// `series` summed over the processes (each has a recorder of its own);
    /// absent counts as 0.
    pub async fn metric_sum(&self, series: &str) -> f64 {
        let mut sum = 0.0;
        for index in 0..self.admins.len() {
            sum += super::metric_sample(&self.metrics(index).await, series);
        }
        sum
    }

    /// `kill -9`: no drain, connections cut mid-request.
    pub fn kill(&mut self, index: usize) {
        let _ = self.children[index].kill();
        let _ = self.children[index].wait();
    }

    /// SIGTERM: the process drains and exits by itself.
    pub fn terminate(&self, index: usize) {
        let pid = self.children[index].id().to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(sent.success(), "SIGTERM to {pid}");
    }

    /// Waits for the process to exit by itself (panics after `patience`:
    /// a guard against hanging, not a measure of speed).
    pub async fn wait_exit(&mut self, index: usize, patience: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(status) = self.children[index].try_wait().expect("wait on the child") {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "the process did not exit within {patience:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a killed replica again on its ports and waits until it is ready.
    pub async fn restart(&mut self, index: usize) {
        // On its own ports again: tests (and nginx in front) know them.
        let (port, admin) = self.ports[index];
        (self.children[index], _, _) = self.spawn(port, admin).await;
        self.wait_ready(index).await;
    }
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
