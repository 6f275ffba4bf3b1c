//! Real nginx (deploy/nginx, rendered by ci/nginx-conf) in front of replicas.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::free_port;

pub struct Nginx {
    child: Child,
    run_dir: std::path::PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: on TERM nginx's master stops its workers and
        // cache manager; killed outright, it left them running for good, each
        // test run's pair still holding its ports.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

pub async fn start_nginx(upstreams: &[String], rate: &str, burst: &str) -> (Nginx, String, String) {
    let run_dir = std::env::temp_dir().join(format!("ticketing-nginx-{}", uuid::Uuid::now_v7().simple()));
    let (http_port, grpc_port) = (free_port(), free_port());
    let mut render = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/nginx-conf"));
    render.arg(&run_dir).arg(http_port.to_string()).arg(grpc_port.to_string());
    render.args(upstreams.iter().map(|u| u.trim_start_matches("http://")));
    // One rate and burst for every zone (catalog, sign-ins, orders, gRPC).
    for zone in ["PUBLIC", "AUTH", "ORDER", "GRPC"] {
        render.env(format!("{zone}_RATE"), rate).env(format!("{zone}_BURST"), burst);
    }
    let output = render.output().expect("ci/nginx-conf runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let conf = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    // Debian installs it in /usr/sbin, which a minimal PATH may leave out.
    let binary = if std::path::Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" };
    let child = Command::new(binary)
        .args(["-p", run_dir.to_str().unwrap(), "-c", &conf, "-g", "daemon off;"])
        .stdout(Stdio::null())
        .spawn()
        .expect("nginx starts (Debian package nginx-light)");
    let nginx = Nginx { child, run_dir };
    for attempt in 0.. {
        if tokio::net::TcpStream::connect(("127.0.0.1", http_port)).await.is_ok() {
            break;
        }
        assert!(attempt < 200, "nginx did not listen");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (nginx, format!("http://127.0.0.1:{http_port}"), format!("http://127.0.0.1:{grpc_port}"))
}
