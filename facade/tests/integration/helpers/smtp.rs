//! A real SMTP server (aiosmtpd, from the stack's Python tools).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{free_port, stack};

/// A real SMTP server (aiosmtpd) keeping what it receives in a Maildir.
pub struct SmtpSink {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl SmtpSink {
    /// Reserves a port and a Maildir without listening yet.
    pub fn unstarted() -> SmtpSink {
        let dir = std::env::temp_dir().join(format!("ticketing-mail-{}", uuid::Uuid::now_v7().simple()));
        SmtpSink { port: free_port(), dir, child: None }
    }

    pub async fn start() -> SmtpSink {
        let mut sink = SmtpSink::unstarted();
        sink.listen().await;
        sink
    }

    pub async fn listen(&mut self) {
        let child = Command::new(stack("PYTHON_TOOLS"))
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{}", self.port)])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts (ci/stack installs it)");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("aiosmtpd never listened on {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, raw.
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("new")) else { return Vec::new() };
        entries.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
