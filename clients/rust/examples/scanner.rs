//! The reference gate scanner: a command line over [`ticketing_client::scanner`].
//!
//! ```sh
//! export SCANNER_TOKEN=tks_…   # from CreateScanner, shown once
//! scanner --url http://127.0.0.1:8080 --event EVENT_ID --gate north manifest
//! scanner … scan CODE [CODE …]    # online, or decided offline and queued
//! scanner … sync                  # upload what was admitted offline
//! ```
//!
//! State (manifest and queue) lives in `--state` (default `scanner.json`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ticketing_client::{
    Connection,
    scanner::{OfflineVerdict, Scanner, Verdict},
};
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    /// The gRPC address of the ticketing service.
    #[arg(long, env = "TICKETING_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The device token CreateScanner returned.
    #[arg(long, env = "SCANNER_TOKEN", hide_env_values = true)]
    token: String,
    #[arg(long, env = "SCANNER_EVENT")]
    event: Uuid,
    #[arg(long, env = "SCANNER_GATE", default_value = "main")]
    gate: String,
    #[arg(long, default_value = "scanner.json")]
    state: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch the manifest changes since the last sync.
    Manifest,
    /// Check codes in: online if the server answers, offline if not.
    Scan { codes: Vec<String> },
    /// Upload the scans admitted offline.
    Sync,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connection = Connection::lazy(&args.url)?.with_token(&args.token)?;
    let state = Scanner::load(&args.state).await.with_context(|| format!("reading {}", args.state.display()))?;
    let mut scanner = Scanner::new(connection, args.event, &args.gate, state);

    match args.command {
        Command::Manifest => {
            scanner.refresh_manifest().await?;
            let state = scanner.state();
            println!(
                "manifest version {}: {} valid, {} void",
                state.manifest_version,
                state.valid_tickets.len(),
                state.void_tickets.len()
            );
            scanner.save(&args.state).await?;
        }
        Command::Scan { codes } => {
            for code in codes {
                match scanner.scan(&code).await {
                    Ok(Verdict::Online(response)) => println!("{}: {:?}", short(&code), response.result()),
                    Ok(Verdict::Offline(verdict)) => {
                        println!("{}: {verdict:?} (offline)", short(&code));
                        // Only an offline admission changes the state; saved
                        // at once, so a device that dies keeps its queue.
                        if verdict == OfflineVerdict::Admitted {
                            scanner.save(&args.state).await?;
                        }
                    }
                    Err(error) => println!("{}: refused: {error}", short(&code)),
                }
            }
        }
        Command::Sync => {
            let results = scanner.sync().await?;
            for result in &results {
                let conflict = if result.conflict { " (conflict: admitted at two gates)" } else { "" };
                println!("{}: {:?}{conflict}", result.scan_id, result.result());
            }
            println!("{} offline scans synced", results.len());
            scanner.save(&args.state).await?;
        }
    }
    Ok(())
}

/// The end of a code (its signature), enough to tell scans apart in the output.
fn short(code: &str) -> String {
    let tail: Vec<char> = code.chars().rev().take(10).collect();
    format!("…{}", tail.into_iter().rev().collect::<String>())
}
