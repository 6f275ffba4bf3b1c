//! A crowd watching an on-sale page, as `ci/bench watchers` runs it: k6
//! cannot hold ten thousand open streams on this machine.
//!
//! 1. `--watchers` streams of the bench event's availability, half Server-
//!    Sent Events (one HTTP/1.1 connection each, as browsers hold them) and
//!    half gRPC server streams (a hundred to an HTTP/2 connection), each
//!    until its first state (measured: the server's RSS before and after,
//!    per watcher);
//! 2. for `--hold` seconds, while the bench runs a flash sale beside it, a
//!    marker order of one `Festival` ticket every `--marker-every-ms`: each
//!    watcher notes when it sees `Festival` drop, so the time from the
//!    marker's commit (its 201) to each watcher's receipt is measured (the
//!    flash sale's own changes arrive in the same messages);
//! 3. the server's CPU over the hold, per message it pushed.
//!
//! Prints one JSON object (the figures) on stdout; progress on stderr.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use ticketing_proto::v1::{self, catalog_service_client::CatalogServiceClient};
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    /// The server (`http://127.0.0.1:PORT`): REST, SSE and gRPC on one port.
    #[arg(long)]
    base: String,
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// `ticketing seed --bench`'s output.
    #[arg(long)]
    seed: std::path::PathBuf,
    /// The server's pid, for its RSS and CPU.
    #[arg(long)]
    server_pid: u32,
    #[arg(long, default_value_t = 10_000)]
    watchers: usize,
    /// How long the watchers stay after all are connected.
    #[arg(long, default_value_t = 30)]
    hold: u64,
    #[arg(long, default_value_t = 2_000)]
    marker_every_ms: u64,
}

/// One watcher's receipts: (marker index, when seen).
type Seen = Arc<Mutex<Vec<(usize, Instant)>>>;

struct Crowd {
    seen: Seen,
    messages: AtomicU64,
    connected: AtomicUsize,
    ended: AtomicUsize,
}

fn festival_left(categories: impl Iterator<Item = (String, i64)>, festival: &str) -> Option<i64> {
    categories.into_iter().find(|(id, _)| id == festival).map(|(_, left)| left)
}

/// What one watcher has seen so far.
#[derive(Default)]
struct Watcher {
    connected: bool,
    last_marker: usize,
}

impl Watcher {
    /// Notes a state with `left` Festival tickets: the first one connects the
    /// watcher; each marker takes one ticket, so `left` names the markers seen.
    fn saw(&mut self, crowd: &Crowd, start_left: &AtomicU64, left: i64) {
        if !self.connected {
            self.connected = true;
            crowd.connected.fetch_add(1, Ordering::Relaxed);
        }
        note(crowd, start_left, left, &mut self.last_marker);
    }
}

fn note(crowd: &Crowd, start_left: &AtomicU64, left: i64, last_marker: &mut usize) {
    crowd.messages.fetch_add(1, Ordering::Relaxed);
    let start = i64::try_from(start_left.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    let marker = usize::try_from(start - left).unwrap_or(0);
    if marker > *last_marker {
        *last_marker = marker;
        crowd.seen.lock().expect("seen").push((marker, Instant::now()));
    }
}

async fn sse_watcher(http: reqwest::Client, url: String, festival: String, crowd: Arc<Crowd>, start: Arc<AtomicU64>) {
    let Ok(response) = http.get(&url).header("accept", "text/event-stream").send().await else {
        crowd.ended.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut body = response.bytes_stream();
    let (mut buffer, mut watcher) = (String::new(), Watcher::default());
    while let Some(Ok(chunk)) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
            let Ok(update) = serde_json::from_str::<Value>(data) else { continue };
            let categories = update["categories"].as_array().cloned().unwrap_or_default().into_iter().map(|c| {
                (c["ticketCategoryId"].as_str().unwrap_or_default().to_owned(), c["available"].as_i64().unwrap_or(0))
            });
            let Some(left) = festival_left(categories, &festival) else { continue };
            watcher.saw(&crowd, &start, left);
        }
    }
    crowd.ended.fetch_add(1, Ordering::Relaxed);
}

async fn grpc_watcher(channel: Channel, event_id: String, festival: String, crowd: Arc<Crowd>, start: Arc<AtomicU64>) {
    let request = v1::WatchAvailabilityRequest { event_id };
    let Ok(response) = CatalogServiceClient::new(channel).watch_availability(request).await else {
        crowd.ended.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut stream = response.into_inner();
    let mut watcher = Watcher::default();
    while let Ok(Some(update)) = stream.message().await {
        let categories = update.categories.into_iter().map(|c| (c.ticket_category_id, i64::from(c.available)));
        let Some(left) = festival_left(categories, &festival) else { continue };
        watcher.saw(&crowd, &start, left);
    }
    crowd.ended.fetch_add(1, Ordering::Relaxed);
}

/// The process's resident set (KiB) and CPU seconds (user + system).
fn process_usage(pid: u32) -> anyhow::Result<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("the server's /proc status")?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat[stat.rfind(')').context("stat")? + 2..].split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok((rss, ticks / 100.0))
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    Some(sorted[((last as f64) * q).round() as usize])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed: Value = serde_json::from_slice(&std::fs::read(&args.seed)?)?;
    let text = |key: &str| seed[key].as_str().map(str::to_owned).with_context(|| format!("{key} in the seed"));
    let (event_id, festival) = (text("event_id")?, text("ticket_category_id")?);
    // A buyer of their own per marker: the seeded buyer holds far more than
    // the per-customer limit.
    let buyers: Vec<String> = seed["customer_ids"]
        .as_array()
        .context("customer_ids in the seed")?
        .iter()
        .rev()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    let crowd = Arc::new(Crowd {
        seen: Seen::default(),
        messages: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
        ended: AtomicUsize::new(0),
    });
    let start_left = Arc::new(AtomicU64::new(u64::MAX));
    let http = reqwest::Client::builder().build()?;
    let event: Value = http.get(format!("{}/v1/events/{event_id}", args.base)).send().await?.json().await?;
    let left = event["ticketCategories"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == festival.as_str()))
        .and_then(|c| c["available"].as_i64())
        .context("Festival's tickets left")?;
    start_left.store(u64::try_from(left)?, Ordering::Relaxed);

    let (rss_before, _) = process_usage(args.server_pid)?;
    let connecting = Instant::now();
    let sse_count = args.watchers / 2;
    let url = format!("{}/v1/events/{event_id}:watchAvailability", args.base);
    let mut tasks = Vec::with_capacity(args.watchers);
    for _ in 0..sse_count {
        tasks.push(tokio::spawn(sse_watcher(
            http.clone(),
            url.clone(),
            festival.clone(),
            crowd.clone(),
            start_left.clone(),
        )));
    }
    let grpc_count = args.watchers - sse_count;
    for group in 0..grpc_count.div_ceil(100) {
        let channel = Channel::from_shared(args.base.clone())?.connect().await?;
        for _ in 0..100.min(grpc_count - group * 100) {
            let (event_id, festival) = (event_id.clone(), festival.clone());
            tasks.push(tokio::spawn(grpc_watcher(
                channel.clone(),
                event_id,
                festival,
                crowd.clone(),
                start_left.clone(),
            )));
        }
    }
    while crowd.connected.load(Ordering::Relaxed) + crowd.ended.load(Ordering::Relaxed) < args.watchers {
        if connecting.elapsed() > Duration::from_secs(120) {
            bail!("{} of {} watchers connected in 120 s", crowd.connected.load(Ordering::Relaxed), args.watchers);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected_in = connecting.elapsed().as_secs_f64();
    let refused = crowd.ended.load(Ordering::Relaxed);
    // Let allocations settle before reading the resident set.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_after, cpu_before) = process_usage(args.server_pid)?;
    let messages_before = crowd.messages.load(Ordering::Relaxed);
    eprintln!(
        "{} watchers connected in {connected_in:.1} s ({refused} refused); holding {} s",
        args.watchers - refused,
        args.hold
    );

    let mut markers: Vec<Instant> = vec![Instant::now()]; // index 0: no marker
    let holding = Instant::now();
    let mut marker_errors = 0;
    while holding.elapsed() < Duration::from_secs(args.hold) {
        tokio::time::sleep(Duration::from_millis(args.marker_every_ms)).await;
        let buyer = buyers.get(markers.len() + marker_errors).context("a buyer for every marker")?;
        let token = load_kit::mint(&args.jwt_secret, buyer, "customer")?;
        let body = json!({ "eventId": event_id, "items": [{ "ticketCategoryId": festival, "quantity": 1 }] });
        let answer = http
            .post(format!("{}/v1/orders", args.base))
            .bearer_auth(&token)
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .json(&body)
            .send()
            .await;
        match answer {
            Ok(response) if response.status() == reqwest::StatusCode::CREATED => markers.push(Instant::now()),
            Ok(response) => {
                marker_errors += 1;
                eprintln!("marker order refused: {} {}", response.status(), response.text().await.unwrap_or_default());
            }
            Err(error) => {
                marker_errors += 1;
                eprintln!("marker order failed: {error}");
            }
        }
    }
    // The last marker's pushes arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_end, cpu_after) = process_usage(args.server_pid)?;
    let messages = crowd.messages.load(Ordering::Relaxed) - messages_before;
    let watching = args.watchers - crowd.ended.load(Ordering::Relaxed);
    let mut latencies: Vec<f64> = crowd
        .seen
        .lock()
        .expect("seen")
        .iter()
        .filter(|(marker, _)| *marker > 0 && *marker < markers.len())
        .map(|(marker, seen)| seen.saturating_duration_since(markers[*marker]).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let marker_count = markers.len() - 1;
    let expected = marker_count * watching;
    for task in tasks {
        task.abort();
    }
    #[allow(clippy::cast_precision_loss)]
    let report = json!({
        "watchers": args.watchers,
        "sse": sse_count,
        "grpc": grpc_count,
        "refused_or_ended": refused,
        "still_watching": watching,
        "connected_seconds": connected_in,
        "rss_before_kib": rss_before,
        "rss_connected_kib": rss_after,
        "rss_end_kib": rss_end,
        "kib_per_watcher": (rss_after.saturating_sub(rss_before)) as f64 / (args.watchers - refused).max(1) as f64,
        "hold_seconds": args.hold,
        "markers": marker_count,
        "marker_errors": marker_errors,
        "marker_receipts": latencies.len(),
        "marker_receipts_expected": expected,
        "commit_to_watcher_ms": {
            "p50": percentile(&latencies, 0.5),
            "p95": percentile(&latencies, 0.95),
            "p99": percentile(&latencies, 0.99),
            "max": latencies.last(),
        },
        "messages": messages,
        "server_cpu_seconds": cpu_after - cpu_before,
        "server_cpu_us_per_message": (cpu_after - cpu_before) * 1e6 / messages.max(1) as f64,
    });
    println!("{report}");
    Ok(())
}
