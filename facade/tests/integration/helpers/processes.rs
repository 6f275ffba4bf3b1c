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
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nothing listens on right now, for a listener started later.
/// Drawn below the kernel's ephemeral range (32768 and up here), so the
/// client side of another test's connection cannot take it in between
/// (a port from `bind(0)` is ephemeral and was, twice, "already in use"
/// by the time its server bound it), and below the local stacks' ports
/// (20000 and up, `ci/lib.sh`).
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(10_000..20_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
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

    async fn start_command(command: &'static str, count: usize, vars: &HashMap<String, String>) -> Processes {
        let mut processes = Processes {
            command,
            children: Vec::new(),
            bases: Vec::new(),
            admins: Vec::new(),
            ports: Vec::new(),
            vars: vars.clone(),
        };
        for _ in 0..count {
            let (port, admin) = (free_port(), free_port());
            processes.children.push(processes.spawn(port, admin));
            if command == "serve" {
                processes.bases.push(format!("http://127.0.0.1:{port}"));
            }
            processes.admins.push(format!("http://127.0.0.1:{admin}"));
            processes.ports.push((port, admin));
        }
        for index in 0..count {
            processes.wait_ready(index, true).await;
        }
        processes
    }

    fn spawn(&self, port: u16, admin: u16) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_ticketing"))
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
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ticketing serve starts")
    }

    /// Waits until the process is ready. One that exits first could not
    /// bind its ports (another test took one between `free_port` and the
    /// bind): with `may_move`, it starts again on fresh ones.
    async fn wait_ready(&mut self, index: usize, may_move: bool) {
        let http = reqwest::Client::new();
        for _ in 0..5 {
            // Generous: a debug build starting while other tests load both cores.
            for _ in 0..600 {
                let ready = http.get(format!("{}/readyz", self.admins[index])).send().await;
                if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                    return;
                }
                if self.children[index].try_wait().ok().flatten().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let exited = self.children[index].try_wait().ok().flatten();
            assert!(may_move && exited.is_some(), "{} never became ready ({exited:?})", self.admins[index]);
            let (port, admin) = (free_port(), free_port());
            self.children[index] = self.spawn(port, admin);
            self.ports[index] = (port, admin);
            if self.command == "serve" {
                self.bases[index] = format!("http://127.0.0.1:{port}");
            }
            self.admins[index] = format!("http://127.0.0.1:{admin}");
        }
        panic!("{} never started: its ports were taken five times", self.admins[index]);
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
        let (port, admin) = self.ports[index];
        self.children[index] = self.spawn(port, admin);
        // On its own ports again: tests (and nginx in front) know them.
        self.wait_ready(index, false).await;
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
