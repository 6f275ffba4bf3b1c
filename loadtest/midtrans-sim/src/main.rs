//! `midtrans-sim`: serves the simulator (see the library's docs) on `--listen`.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use midtrans_sim::Config;

#[derive(Parser)]
#[command(version, about = "A local Midtrans simulator for tests and load tests")]
struct Cli {
    /// Address to listen on; port 0 picks a free one. The bound address is the first
    /// line on stdout: `listening on 127.0.0.1:PORT`.
    #[arg(long, env = "MIDTRANS_SIM_LISTEN", default_value = "127.0.0.1:0")]
    listen: String,

    /// The server key clients must send (Basic auth user name) and that signs notifications.
    #[arg(long, env = "MIDTRANS_SERVER_KEY", hide_env_values = true)]
    server_key: String,

    #[arg(long, env = "MIDTRANS_MERCHANT_ID", default_value = "M-SIM")]
    merchant_id: String,

    /// Where notifications go when a Snap create has no `X-Override-Notification` header.
    #[arg(long, env = "MIDTRANS_SIM_NOTIFICATION_URL")]
    notification_url: Option<String>,

    /// Base of the Snap `redirect_url` [default: http://<bound address>].
    #[arg(long, env = "MIDTRANS_SIM_PUBLIC_URL")]
    public_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr: stdout carries only the address line that scripts wait for.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    let cli = Cli::parse();
    anyhow::ensure!(!cli.server_key.is_empty(), "the server key must not be empty");
    let listener = TcpListener::bind(&cli.listen).await.with_context(|| format!("binding {}", cli.listen))?;
    let address = listener.local_addr()?;
    let public_url = cli.public_url.unwrap_or_else(|| format!("http://{address}"));
    let config = Config {
        server_key: cli.server_key,
        merchant_id: cli.merchant_id,
        notification_url: cli.notification_url,
        public_url: public_url.trim_end_matches('/').to_string(),
    };

    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {address}")?;
    stdout.flush()?;
    tracing::info!(%address, notification_url = ?config.notification_url, "midtrans simulator ready");

    midtrans_sim::serve(listener, config, shutdown_signal()).await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
