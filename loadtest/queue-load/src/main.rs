//! The waiting room's on-sale, as `ci/bench waiting_room` runs it:
//!
//! 1. the organizer sets the room up (`--admit-per-minute`, proof-of-work
//!    difficulty 1: the crowd's work is not what is measured), sales an
//!    hour away: the whole crowd joins the pre-queue;
//! 2. every customer of the crowd fetches a challenge and solves it — the
//!    precomputed pool, ahead of the measured window (a browser spends its
//!    own CPU on this, not the server's);
//! 3. the crowd joins at an even arrival rate within `--join-within`
//!    seconds (measured: joins/s and latency);
//! 4. sales open (the organizer moves the start to now); each customer
//!    polls its entry — a little before the turn its estimate gives, every
//!    second near the front, every 30 s far back — and orders with
//!    its admission token as soon as it is admitted (measured: position
//!    reads, orders), for `--admit-for` seconds;
//! 5. the queue's Redis footprint per entry and the admission pace, read
//!    from Redis itself.
//!
//! Prints one JSON object (the figures) on stdout; progress on stderr.

use std::{
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use base64::Engine;
use clap::Parser;
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

#[derive(Parser)]
struct Args {
    /// The server (`http://127.0.0.1:PORT`).
    #[arg(long)]
    base: String,
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// `ticketing seed --bench --room-customers N`'s output.
    #[arg(long)]
    seed: std::path::PathBuf,
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: String,
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "ticketing:")]
    redis_key_prefix: String,
    /// How many of the seeded room customers join.
    #[arg(long, default_value_t = 100_000)]
    crowd: usize,
    #[arg(long, default_value_t = 20)]
    join_within: u64,
    #[arg(long, default_value_t = 6000)]
    admit_per_minute: i32,
    /// How long the admission phase runs (a minute or more measures the pace).
    #[arg(long, default_value_t = 75)]
    admit_for: u64,
    /// Requests in flight at most (a browser each, multiplexed).
    #[arg(long, default_value_t = 1024)]
    in_flight: usize,
}

/// Latencies in microseconds, and the answers' statuses.
#[derive(Default)]
struct Calls {
    micros: Vec<u32>,
    statuses: std::collections::BTreeMap<u16, usize>,
}

impl Calls {
    fn record(&mut self, started: Instant, status: u16) {
        self.micros.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        *self.statuses.entry(status).or_default() += 1;
    }

    fn summary(&mut self, seconds: f64) -> Value {
        self.micros.sort_unstable();
        let at = |q: f64| {
            let index = ((self.micros.len() as f64 * q).ceil() as usize).saturating_sub(1);
            self.micros.get(index).map_or(0.0, |m| f64::from(*m) / 1000.0)
        };
        json!({
            "count": self.micros.len(),
            "per_second": (self.micros.len() as f64 / seconds.max(0.001)).round(),
            "p50_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "statuses": self.statuses,
        })
    }
}

type Shared = Arc<Mutex<Calls>>;

/// The widget's value for a challenge (the altcha crate's solver).
fn solve(challenge: &Value) -> anyhow::Result<String> {
    let parsed: altcha::Challenge = serde_json::from_value(challenge.clone())?;
    let solution = altcha::solve_challenge(altcha::SolveChallengeOptions::new(&parsed))?
        .context("no solution within the solver's time")?;
    let payload = altcha::Payload { challenge: parsed, solution };
    Ok(base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&payload)?))
}

fn redis_cli(url: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("redis-cli").args(["-u", url, "--raw"]).args(args).output()?;
    if !output.status.success() {
        bail!("redis-cli {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn used_memory(url: &str) -> anyhow::Result<i64> {
    let info = redis_cli(url, &["INFO", "memory"])?;
    let line = info.lines().find_map(|l| l.strip_prefix("used_memory:")).context("used_memory in INFO")?;
    Ok(line.trim().parse()?)
}

struct Crowd {
    http: reqwest::Client,
    base: String,
    event: String,
    category: String,
    gate: Semaphore,
}

impl Crowd {
    async fn send(&self, request: reqwest::RequestBuilder, calls: &Shared) -> Option<(u16, Value)> {
        let _turn = self.gate.acquire().await.ok()?;
        let started = Instant::now();
        let response = request.send().await;
        let status = response.as_ref().map_or(0, |r| r.status().as_u16());
        let body = match response {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        calls.lock().unwrap_or_else(|p| p.into_inner()).record(started, status);
        Some((status, body))
    }
}

/// Sets the sales start (and the room, when given) as the organizer, and
/// waits until the public event shows it (the catalog cache refills from
/// the replica).
async fn open_sales(
    crowd: &Crowd,
    organizer: &str,
    start: chrono::DateTime<chrono::Utc>,
    room: Option<Value>,
) -> anyhow::Result<()> {
    let event_url = format!("{}/v1/events/{}", crowd.base, crowd.event);
    let mut change = json!({ "salesStartTime": start.to_rfc3339() });
    if let Some(room) = room {
        change["waitingRoom"] = room;
    }
    let patched = crowd.http.patch(&event_url).bearer_auth(organizer).json(&change).send().await?;
    if !patched.status().is_success() {
        bail!("setting the room up: {} {}", patched.status(), patched.text().await?);
    }
    for _ in 0..100 {
        let event: Value = crowd.http.get(&event_url).send().await?.json().await?;
        let shown = event["salesStartTime"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        if shown.is_some_and(|t| (t.to_utc() - start).num_milliseconds().abs() < 1000) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the event never showed its new sales start")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed: Value = serde_json::from_slice(&std::fs::read(&args.seed)?)?;
    let text = |key: &str| seed[key].as_str().map(str::to_owned).with_context(|| format!("{key} in the seed"));
    let customers: Vec<String> = seed["room_customer_ids"]
        .as_array()
        .context("room_customer_ids in the seed")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .take(args.crowd)
        .collect();
    if customers.len() < args.crowd {
        bail!("the seed has {} room customers, {} asked for", customers.len(), args.crowd);
    }
    let crowd = Arc::new(Crowd {
        http: reqwest::Client::builder().pool_max_idle_per_host(args.in_flight).build()?,
        base: args.base.clone(),
        event: text("room_event_id")?,
        category: text("room_category_id")?,
        gate: Semaphore::new(args.in_flight),
    });
    let organizer = load_kit::mint(&args.jwt_secret, &text("organizer_id")?, "organizer")?;

    // 1. The room, sales not open yet: everyone joins the pre-queue.
    let room = json!({ "enabled": true, "admitPerMinute": args.admit_per_minute, "admissionMinutes": 10,
                       "maxActiveBuyers": 0, "challengeDifficulty": 1 });
    open_sales(&crowd, &organizer, chrono::Utc::now() + chrono::Duration::hours(1), Some(room)).await?;
    let tokens: Vec<String> =
        customers.iter().map(|id| load_kit::mint(&args.jwt_secret, id, "customer")).collect::<anyhow::Result<_>>()?;
    let memory_before = used_memory(&args.redis_url)?;

    // 2. The pool: a solved challenge per customer, before the measured window.
    eprintln!("queue-load: {} challenges fetched and solved", tokens.len());
    let challenges: Shared = Arc::default();
    let solving = Instant::now();
    let solved: Vec<Option<String>> = stream::iter(tokens.iter().cloned())
        .map(|token| {
            let (crowd, challenges) = (crowd.clone(), challenges.clone());
            async move {
                let url = format!("{}/v1/events/{}/queue:challenge", crowd.base, crowd.event);
                let (status, challenge) = crowd.send(crowd.http.get(url).bearer_auth(&token), &challenges).await?;
                if status != 200 {
                    return None;
                }
                tokio::task::spawn_blocking(move || solve(&challenge).ok()).await.ok().flatten()
            }
        })
        .buffered(args.in_flight)
        .collect()
        .await;
    let solving_seconds = solving.elapsed().as_secs_f64();

    // 3. The crowd joins, evenly within the window.
    eprintln!("queue-load: {} join within {} s", tokens.len(), args.join_within);
    let joins: Shared = Arc::default();
    let interval = Duration::from_secs(args.join_within).div_f64(tokens.len() as f64);
    let joining = Instant::now();
    let late = Arc::new(AtomicUsize::new(0));
    let mut joiners = Vec::with_capacity(tokens.len());
    for (n, (token, altcha)) in tokens.iter().cloned().zip(solved).enumerate() {
        let due = joining + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let (crowd, joins, late) = (crowd.clone(), joins.clone(), late.clone());
        joiners.push(tokio::spawn(async move {
            if due.elapsed() > Duration::from_millis(100) {
                late.fetch_add(1, Ordering::Relaxed);
            }
            let url = format!("{}/v1/events/{}/queue:join", crowd.base, crowd.event);
            let body = json!({ "altcha": altcha.unwrap_or_default() });
            let (status, entry) = crowd.send(crowd.http.post(url).bearer_auth(&token).json(&body), &joins).await?;
            (status == 201).then(|| (token, entry["id"].as_str().unwrap_or_default().to_owned()))
        }));
    }
    let mut entries = Vec::with_capacity(joiners.len());
    for joiner in joiners {
        if let Ok(Some(entry)) = joiner.await {
            entries.push(entry);
        }
    }
    let join_seconds = joining.elapsed().as_secs_f64();
    let memory_after = used_memory(&args.redis_url)?;
    let prefix = format!("{}wr:{{{}}}:", args.redis_key_prefix, crowd.event);
    let mut queue_bytes = 0i64;
    for key in ["entries", "customers", "q"] {
        let usage = redis_cli(&args.redis_url, &["MEMORY", "USAGE", &format!("{prefix}{key}"), "SAMPLES", "0"])?;
        queue_bytes += usage.trim().parse::<i64>().unwrap_or(0);
    }

    // 4. Sales open; everyone polls until admitted, then orders.
    eprintln!("queue-load: {} waiting; sales open", entries.len());
    open_sales(&crowd, &organizer, chrono::Utc::now(), None).await?;
    let reads: Shared = Arc::default();
    let orders: Shared = Arc::default();
    let ends = Instant::now() + Duration::from_secs(args.admit_for);
    let admitting = Instant::now();
    let waiters = entries.into_iter().enumerate().map(|(n, (token, entry))| {
        let (crowd, reads, orders) = (crowd.clone(), reads.clone(), orders.clone());
        // First looks spread over 30 s, as pages reload on their own timers.
        let first = Duration::from_millis((n as u64 * 7919) % 30_000);
        tokio::spawn(async move {
            tokio::time::sleep(first).await;
            while Instant::now() < ends {
                let url = format!("{}/v1/events/{}/queue/{entry}", crowd.base, crowd.event);
                let Some((_, read)) = crowd.send(crowd.http.get(url).bearer_auth(&token), &reads).await else { return };
                if let Some(admission) = read["admission"]["token"].as_str() {
                    let body = json!({ "eventId": crowd.event,
                                       "items": [{ "ticketCategoryId": crowd.category, "quantity": 1 }] });
                    let request = crowd
                        .http
                        .post(format!("{}/v1/orders", crowd.base))
                        .bearer_auth(&token)
                        .header("idempotency-key", uuid::Uuid::now_v7().to_string())
                        .header("ticketing-admission", admission)
                        .json(&body);
                    crowd.send(request, &orders).await;
                    return;
                }
                // Again a little before the turn the estimate gives.
                let wait = read["estimatedWaitSeconds"].as_u64().unwrap_or(30);
                tokio::time::sleep(Duration::from_secs((wait * 4 / 5).clamp(1, 30))).await;
            }
        })
    });
    let waiters: Vec<_> = waiters.collect();
    for waiter in waiters {
        let _ = waiter.await;
    }
    let admit_seconds = admitting.elapsed().as_secs_f64();

    // 5. The pace, from the queue's own records (Redis's clock).
    let records = redis_cli(&args.redis_url, &["HVALS", &format!("{prefix}entries")])?;
    let mut admitted: Vec<i64> =
        records.lines().filter_map(|r| r.split(',').nth(2)?.parse::<i64>().ok()).filter(|at| *at > 0).collect();
    admitted.sort_unstable();
    let first_minute = admitted.first().map_or(0, |first| admitted.iter().filter(|at| **at < first + 60_000).count());

    let joined = joins.lock().unwrap_or_else(|p| p.into_inner()).micros.len();
    let report = json!({
        "crowd": tokens.len(),
        "challenges": challenges.lock().unwrap_or_else(|p| p.into_inner()).summary(solving_seconds),
        "joins": joins.lock().unwrap_or_else(|p| p.into_inner()).summary(join_seconds),
        "joins_started_late": late.load(Ordering::Relaxed),
        "join_window_seconds": join_seconds,
        "redis_queue_bytes_per_entry": queue_bytes / i64::try_from(joined.max(1))?,
        "redis_used_memory_bytes_per_join": (memory_after - memory_before) / i64::try_from(joined.max(1))?,
        "position_reads": reads.lock().unwrap_or_else(|p| p.into_inner()).summary(admit_seconds),
        "orders": orders.lock().unwrap_or_else(|p| p.into_inner()).summary(admit_seconds),
        "admitted_total": admitted.len(),
        "admitted_first_minute": first_minute,
        "admit_per_minute": args.admit_per_minute,
        "admission_accuracy": first_minute as f64 / f64::from(args.admit_per_minute.max(1)),
    });
    println!("{report}");
    Ok(())
}
