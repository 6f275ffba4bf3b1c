//! `ticketing`: the one binary. `serve` runs the API; the other subcommands
//! are operator tools. All read the same environment (`.run/env` locally).

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use secrecy::ExposeSecret;
use ticketing_domain::identity::Role;
use ticketing_facade::{bench_seed, db_top, seed, server, telemetry};
use ticketing_service::{AppState, Config, app, config::Environment};

/// jemalloc, not glibc's malloc: glibc kept a peak's freed connection
/// buffers for the life of the process, so a replica's resident memory
/// followed the most connections it had ever held, not what it uses now
/// (what its Kubernetes limit is sized on). jemalloc's background thread
/// gives freed pages back; `.cargo/config.toml` sets its options, and
/// `_RJEM_MALLOC_CONF` overrides them at run time.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "ticketing", version, about = "Ticketing backend for big events")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC, gRPC-Web and REST on LISTEN_ADDR, health on ADMIN_LISTEN_ADDR.
    Serve,
    /// Background jobs (safe to run several): expire unpaid orders, run the outbox
    /// (confirmation e-mails and WhatsApp, refunds, reports), reconcile pending
    /// payments with Midtrans; metrics on WORKER_ADMIN_LISTEN_ADDR.
    Worker,
    /// Apply pending database migrations (uses DATABASE_DIRECT_URL, not PgBouncer).
    Migrate,
    /// Print the REST API's OpenAPI 3.1 document (as served at /openapi.json).
    Openapi,
    /// Load data.
    Seed {
        /// Demo events and one account per role (printed).
        #[arg(long, required_unless_present = "bench")]
        demo: bool,
        /// Benchmark data for the k6 scenarios (`ci/bench`), printed as JSON:
        /// an event with TICKETS sold and a flash-sale stock, customers,
        /// scanner devices, filler events. Progress on stderr.
        #[arg(long, conflicts_with = "demo")]
        bench: bool,
        #[arg(long, default_value_t = 100_000, requires = "bench")]
        tickets: usize,
        #[arg(long, default_value_t = 50_000, requires = "bench")]
        flash_stock: i32,
        #[arg(long, default_value_t = 10_000, requires = "bench")]
        customers: usize,
        /// Customers of the waiting-room event (the `waiting_room` scenario's crowd).
        #[arg(long, default_value_t = 0, requires = "bench")]
        room_customers: usize,
        #[arg(long, default_value_t = 50, requires = "bench")]
        scanners: usize,
        #[arg(long, default_value_t = 0, requires = "bench")]
        filler_events: usize,
        /// Print only the first N ticket codes (default: all).
        #[arg(long, requires = "bench")]
        export_codes: Option<usize>,
        /// Paid orders (one ticket each) of an event the `cancellation`
        /// scenario cancels; one in ten paid by bank transfer.
        #[arg(long, default_value_t = 0, requires = "bench")]
        cancel_orders: usize,
    },
    /// Database visibility.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account (fails if the e-mail exists).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, env = "TICKETING_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Statements by total execution time, from pg_stat_statements (uses DATABASE_DIRECT_URL).
    Top {
        /// How many statements to show.
        #[arg(long, default_value_t = 15)]
        limit: i64,
        /// Include every database of the cluster, not only this one.
        #[arg(long)]
        all_databases: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Customer,
    Organizer,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Customer => Role::Customer,
            RoleArg::Organizer => Role::Organizer,
            RoleArg::Admin => Role::Admin,
        }
    }
}

fn load_config() -> Result<Config, ExitCode> {
    Config::from_env().map_err(|problems| {
        eprintln!("ticketing: configuration is invalid:");
        for problem in problems {
            eprintln!("  - {problem}");
        }
        ExitCode::from(2)
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

async fn run(command: Command) -> Result<(), ExitCode> {
    let fail = |message: String| {
        eprintln!("ticketing: {message}");
        ExitCode::FAILURE
    };
    match command {
        Command::Openapi => {
            print!("{}", ticketing_facade::rest::openapi::text());
            Ok(())
        }
        Command::Migrate => {
            let _telemetry = telemetry::init(false);
            let url =
                std::env::var("DATABASE_DIRECT_URL").map_err(|_| fail("DATABASE_DIRECT_URL is required".into()))?;
            let applied = ticketing_store::migrate::run_pending(&url)
                .await
                .map_err(|e| fail(format!("migration failed: {e}")))?;
            println!(
                "applied {} migration(s){}",
                applied.len(),
                if applied.is_empty() { String::new() } else { format!(": {}", applied.join(", ")) }
            );
            Ok(())
        }
        Command::Serve => {
            let config = load_config()?;
            let _telemetry = telemetry::init(config.environment == Environment::Production);
            if config.environment == Environment::Development
                && config.jwt_secret.expose_secret().starts_with("development-only")
            {
                tracing::warn!("JWT_SECRET is not set: using the development secret");
            }
            let running = server::start(config).await.map_err(|e| fail(format!("{e:#}")))?;
            tracing::info!(addr = %running.addr, admin_addr = %running.admin_addr, "serving gRPC, gRPC-Web and REST");
            // The bound addresses, for whoever started us with port 0.
            println!("listening public={} admin={}", running.addr, running.admin_addr);
            let stop = running.stopper();
            tokio::spawn(async move {
                wait_for_termination().await;
                let _ = stop.send(true);
            });
            running.wait().await.map_err(|e| fail(format!("{e:#}")))
        }
        Command::Worker => {
            let config = load_config()?;
            let _telemetry = telemetry::init(config.environment == Environment::Production);
            // Before the state, as `serve`'s (server::start).
            if config.metrics_enabled {
                ticketing_facade::metrics::install();
            }
            let state = AppState::new(config).map_err(fail)?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                wait_for_termination().await;
                let _ = stop.send(true);
            });
            let listener = server::bind_worker_admin(&state.config).await.map_err(|e| fail(format!("{e:#}")))?;
            println!("listening admin={}", listener.local_addr().map_err(|e| fail(e.to_string()))?);
            let admin = tokio::spawn(server::serve_worker_admin(state.clone(), listener, stopped.clone()));
            tracing::info!("worker started");
            ticketing_service::worker::run(state, stopped).await;
            tracing::info!("worker stopped");
            admin.await.map_err(|e| fail(e.to_string()))?.map_err(|e| fail(format!("{e:#}")))
        }
        Command::Seed {
            bench: true,
            tickets,
            flash_stock,
            customers,
            room_customers,
            scanners,
            filler_events,
            export_codes,
            cancel_orders,
            ..
        } => {
            let config = load_config()?;
            let _telemetry = telemetry::init(false);
            let state = AppState::new(config).map_err(fail)?;
            let spec = bench_seed::BenchSpec {
                tickets,
                flash_stock,
                customers,
                room_customers,
                scanners,
                filler_events,
                export_codes,
                cancel_orders,
            };
            let data = bench_seed::bench(&state, &spec).await.map_err(|e| fail(format!("{e:#}")))?;
            println!("{}", serde_json::to_string(&data).map_err(|e| fail(e.to_string()))?);
            Ok(())
        }
        Command::Seed { .. } => {
            let config = load_config()?;
            let _telemetry = telemetry::init(false);
            let state = AppState::new(config).map_err(fail)?;
            let created = seed::demo(&state).await.map_err(|e| fail(e.to_string()))?;
            println!("{}", if created { "demo data created" } else { "demo data already present" });
            for account in &seed::DEMO_ACCOUNTS {
                println!("  {:<10} {:<32} password: {}", account.role.as_str(), account.email, account.password);
            }
            Ok(())
        }
        Command::Db { command: DbCommand::Top { limit, all_databases } } => {
            let url =
                std::env::var("DATABASE_DIRECT_URL").map_err(|_| fail("DATABASE_DIRECT_URL is required".into()))?;
            let rows = db_top::top_statements(&url, limit, all_databases).await.map_err(|e| fail(e.to_string()))?;
            print!("{}", db_top::render(&rows));
            Ok(())
        }
        Command::User { command: UserCommand::Create { email, password, role } } => {
            let config = load_config()?;
            let _telemetry = telemetry::init(false);
            let state = AppState::new(config).map_err(fail)?;
            let user = app::auth::create_user(&state, &email, password, role.into())
                .await
                .map_err(|e| fail(e.message.clone()))?;
            println!("created {} {} ({})", user.role.as_str(), user.email, user.id);
            Ok(())
        }
    }
}

/// SIGTERM (orchestrators) or Ctrl-C (a terminal).
async fn wait_for_termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
