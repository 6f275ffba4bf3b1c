//! A light load generator for `ci/bench`'s browse and check-in and the
//! ceilings they are read against. k6 spent 126–143 % of the two cores on
//! 10,000–20,000 requests/s (stop 35), so the table measured k6; this tool
//! spends a fraction of that, and measures its own ceiling with the same code.
//! Written on hyper and tonic directly: goose (Locust-style users over
//! reqwest, a closed model, no gRPC) and oha (an HTTP-only command line)
//! cover neither the open model nor the scanners' gRPC.
//!
//! Kinds of call (`--call`):
//! - `browse`: the event list (30 %) and event pages (70 %) over HTTP/1.1,
//!   as loadtest/browse.js;
//! - `healthz`: `GET /healthz` over HTTP/1.1, a ceiling: the admin
//!   listener's trivial handler, or on the public port a path that names
//!   no route (any answer counts);
//! - `order`: one order of 1–4 tickets of the flash category (or
//!   `--category`) by a seeded customer at random, over HTTP/1.1, as
//!   loadtest/flash_sale.js (201 and 409 SOLD_OUT are the expected answers);
//! - `redeem`: distinct codes redeemed over gRPC by the seeded scanners, one
//!   HTTP/2 connection per scanner device, as loadtest/checkin.js;
//! - `grpc-health`: grpc.health.v1 Check on the same connections.
//!
//! `--rate R` is the open model: R calls/s arrive whatever the server does,
//! after a ramp of `--warmup` seconds (not measured), and a call's latency
//! runs from its arrival, so time spent waiting for a connection counts.
//! An arrival that finds `--max-waiting` calls unanswered is dropped and
//! counted. `--rate 0` is the closed model: each connection (times
//! `--streams` for gRPC) sends its next call as soon as the last returns, the
//! capacity of server and client together.
//!
//! Prints one JSON object on stdout: calls, rate, latency percentiles,
//! statuses (HTTP status or gRPC code), how many were not an expected
//! answer, Redeem results, drops, each second's calls and p95, and this
//! process's CPU seconds.

use std::{
    collections::{BTreeMap, VecDeque},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::{Value, json};
use ticketing_proto::v1::{self, check_in_service_client::CheckInServiceClient};
use tokio::{net::TcpStream, sync::Semaphore};
use tonic::{metadata::MetadataValue, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Call {
    Browse,
    Healthz,
    Order,
    Redeem,
    GrpcHealth,
}

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum)]
    call: Call,
    /// `http://HOST:PORT` of the server (REST and gRPC on one port), or of
    /// the trivial handler for `healthz`.
    #[arg(long)]
    base: String,
    /// `ticketing seed --bench`'s output: event ids, codes, scanner tokens.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Calls per second; 0: closed model, as fast as the connections go.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seconds of ramp from no load to `--rate` (closed model: of load), not measured.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// HTTP/1.1 connections (browse, healthz, order); gRPC uses one per scanner.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// gRPC calls in flight per connection in the closed model.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Calls started and not yet answered (in flight, or waiting for an
    /// HTTP connection) past which further arrivals are dropped.
    #[arg(long, default_value_t = 20_000)]
    max_waiting: usize,
    /// Where this run's codes start among the seed's (each bench scenario scans its own).
    #[arg(long, default_value_t = 0)]
    code_offset: usize,
    /// The category `order` buys; the seed's flash category by default.
    #[arg(long)]
    category: Option<String>,
    /// Signs the customers' access tokens (`order`).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
}

/// What the calls of the measured window came to.
#[derive(Default)]
struct Tally {
    micros: Vec<u32>,
    /// Each call's second of the measured window, beside its latency.
    seconds: Vec<u16>,
    statuses: BTreeMap<String, u64>,
    results: BTreeMap<String, u64>,
    unexpected: u64,
}

struct Run {
    started: Instant,
    warmup: Duration,
    measured_until: Instant,
    tally: Mutex<Tally>,
    dropped: AtomicU64,
    next_code: AtomicUsize,
}

impl Run {
    fn record(&self, arrived: Instant, status: String, expected: bool, result: Option<&'static str>) {
        if arrived < self.started + self.warmup || arrived >= self.measured_until {
            return;
        }
        let micros = u32::try_from(arrived.elapsed().as_micros()).unwrap_or(u32::MAX);
        let second = u16::try_from((arrived - self.started - self.warmup).as_secs()).unwrap_or(u16::MAX);
        let mut tally = self.tally.lock().expect("tally");
        tally.micros.push(micros);
        tally.seconds.push(second);
        *tally.statuses.entry(status).or_default() += 1;
        tally.unexpected += u64::from(!expected);
        if let Some(result) = result {
            *tally.results.entry(result.to_owned()).or_default() += 1;
        }
    }
}

#[derive(Default)]
struct Seed {
    event_ids: Vec<String>,
    codes: Vec<String>,
    scanner_tokens: Vec<String>,
    customer_ids: Vec<String>,
    event_id: String,
    flash_category_id: String,
}

fn read_seed(path: Option<&PathBuf>) -> anyhow::Result<Seed> {
    let Some(path) = path else {
        return Ok(Seed::default());
    };
    let seed: Value = serde_json::from_slice(&std::fs::read(path).context("reading the seed")?)?;
    let strings = |key: &str| -> Vec<String> {
        seed[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    };
    let text = |key: &str| seed[key].as_str().unwrap_or_default().to_owned();
    Ok(Seed {
        event_ids: strings("event_ids"),
        codes: strings("codes"),
        scanner_tokens: strings("scanner_tokens"),
        customer_ids: strings("customer_ids"),
        event_id: text("event_id"),
        flash_category_id: text("flash_category_id"),
    })
}

/// One kind of call with the connections it is made on.
enum Target {
    Http { authority: String, request: HttpCall, pool: HttpPool },
    Grpc { channels: Vec<(Channel, MetadataValue<tonic::metadata::Ascii>)>, codes: Arc<[String]>, redeem: bool },
}

enum HttpCall {
    /// GET one of `paths`, or the event list with this probability; a
    /// ceiling (`healthz`) takes any HTTP answer, a 404 from a path that
    /// names no route included.
    Get { paths: Vec<String>, list_share: f64, any_answer: bool },
    /// POST an order as one of the customers (their `Authorization` values).
    Order { event_id: String, category: String, customers: Vec<http::HeaderValue> },
}

impl HttpCall {
    fn request(&self, authority: &str, n: usize) -> http::Request<Full<Bytes>> {
        let mut random = rand::thread_rng();
        let builder = http::Request::builder().header("host", authority);
        match self {
            HttpCall::Get { paths, list_share, .. } => {
                let path = if random.gen_bool(*list_share) {
                    "/v1/events?pageSize=20"
                } else {
                    &paths[random.gen_range(0..paths.len())]
                };
                builder.uri(path).body(Full::default())
            }
            HttpCall::Order { event_id, category, customers } => {
                let body = json!({
                    "eventId": event_id,
                    "items": [{ "ticketCategoryId": category, "quantity": random.gen_range(1..=4) }],
                });
                builder
                    .method("POST")
                    .uri("/v1/orders")
                    .header("content-type", "application/json")
                    .header("authorization", &customers[random.gen_range(0..customers.len())])
                    .header("idempotency-key", format!("arrival-load-{}-{n}", std::process::id()))
                    .body(Full::new(Bytes::from(body.to_string())))
            }
        }
        .expect("a valid request")
    }

    /// 200 for reads; 201 or 409 (sold out) for an order.
    fn expected(&self, status: u16) -> bool {
        match self {
            HttpCall::Get { any_answer, .. } => *any_answer || status == 200,
            HttpCall::Order { .. } => status == 201 || status == 409,
        }
    }
}

/// HTTP/1.1 connections, each carrying one call at a time, taken in turn
/// (oldest free first): none sits idle past the server's keep-alive
/// deadline (`HTTP_HEADER_READ_TIMEOUT_MS`) while others work.
struct HttpPool {
    free: Mutex<VecDeque<SendRequest<Full<Bytes>>>>,
    permits: Semaphore,
}

impl Target {
    async fn call(&self, run: &Run, n: usize, arrived: Instant) {
        match self {
            Target::Http { authority, request, pool } => {
                let _permit = pool.permits.acquire().await.expect("open");
                let mut sender = pool.free.lock().expect("pool").pop_front().expect("a connection per permit");
                // One the server closed while it was free is replaced before use, as a browser would.
                if sender.is_closed()
                    && let Ok(fresh) = http_connection(authority).await
                {
                    sender = fresh;
                }
                let (status, expected) = match sender.send_request(request.request(authority, n)).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        match response.into_body().collect().await {
                            Ok(_) => (status.to_string(), request.expected(status)),
                            Err(_) => ("body error".to_owned(), false),
                        }
                    }
                    Err(_) => {
                        // The server closed it: a new connection takes its place.
                        if let Ok(fresh) = http_connection(authority).await {
                            sender = fresh;
                        }
                        ("transport error".to_owned(), false)
                    }
                };
                pool.free.lock().expect("pool").push_back(sender);
                run.record(arrived, status, expected, None);
            }
            Target::Grpc { channels, codes, redeem } => {
                let (channel, token) = &channels[n % channels.len()];
                let (status, result) = if *redeem {
                    let code = codes[run.next_code.fetch_add(1, Ordering::Relaxed) % codes.len()].clone();
                    let mut request = tonic::Request::new(v1::RedeemRequest {
                        code,
                        gate: format!("gate-{}", n % 8),
                        ..Default::default()
                    });
                    request.metadata_mut().insert("authorization", token.clone());
                    match CheckInServiceClient::new(channel.clone()).redeem(request).await {
                        Ok(answer) => ("OK".to_owned(), Some(answer.get_ref().result().as_str_name())),
                        Err(status) => (format!("{:?}", status.code()), None),
                    }
                } else {
                    match HealthClient::new(channel.clone()).check(HealthCheckRequest::default()).await {
                        Ok(_) => ("OK".to_owned(), None),
                        Err(status) => (format!("{:?}", status.code()), None),
                    }
                };
                let expected = status == "OK";
                run.record(arrived, status, expected, result);
            }
        }
    }
}

async fn http_connection(address: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn target(args: &Args, seed: &Seed) -> anyhow::Result<Target> {
    let authority = args.base.trim_start_matches("http://").trim_end_matches('/').to_owned();
    match args.call {
        Call::Browse | Call::Healthz | Call::Order => {
            let request = match args.call {
                Call::Healthz => {
                    HttpCall::Get { paths: vec![String::from("/healthz")], list_share: 0.0, any_answer: true }
                }
                Call::Browse if !seed.event_ids.is_empty() => HttpCall::Get {
                    paths: seed.event_ids.iter().map(|id| format!("/v1/events/{id}")).collect(),
                    list_share: 0.3,
                    any_answer: false,
                },
                Call::Order if !seed.customer_ids.is_empty() => {
                    let secret = args.jwt_secret.as_deref().context("order needs --jwt-secret (or JWT_SECRET)")?;
                    let customers = seed
                        .customer_ids
                        .iter()
                        .map(|id| Ok(format!("Bearer {}", load_kit::mint(secret, id, "customer")?).parse()?))
                        .collect::<anyhow::Result<_>>()?;
                    let category = args.category.clone().unwrap_or_else(|| seed.flash_category_id.clone());
                    HttpCall::Order { event_id: seed.event_id.clone(), category, customers }
                }
                _ => bail!("browse and order need --seed (event ids, customers)"),
            };
            let mut free = VecDeque::with_capacity(args.connections);
            for _ in 0..args.connections {
                free.push_back(http_connection(&authority).await?);
            }
            let pool = HttpPool { free: Mutex::new(free), permits: Semaphore::new(args.connections) };
            Ok(Target::Http { authority, request, pool })
        }
        Call::Redeem | Call::GrpcHealth => {
            if seed.scanner_tokens.is_empty() {
                bail!("gRPC calls need --seed with scanner_tokens (one connection per scanner)");
            }
            let mut channels = Vec::with_capacity(seed.scanner_tokens.len());
            for token in &seed.scanner_tokens {
                let channel = Channel::from_shared(args.base.clone())?.connect().await.context("gRPC connect")?;
                channels.push((channel, format!("Bearer {token}").parse()?));
            }
            let mut codes = seed.codes.clone();
            let offset = args.code_offset % codes.len().max(1);
            codes.rotate_left(offset);
            Ok(Target::Grpc { channels, codes: codes.into(), redeem: args.call == Call::Redeem })
        }
    }
}

/// Arrivals due by `elapsed` at `rate`/s after a linear ramp over `warmup`.
fn due(rate: f64, warmup: f64, elapsed: f64) -> u64 {
    let arrivals =
        if elapsed < warmup { rate * elapsed * elapsed / (2.0 * warmup) } else { rate * (elapsed - warmup / 2.0) };
    arrivals as u64
}

async fn open_model(args: &Args, target: Arc<Target>, run: Arc<Run>) {
    let waiting = Arc::new(AtomicUsize::new(0));
    let (rate, warmup) = (args.rate as f64, args.warmup as f64);
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < run.measured_until {
        ticks.tick().await;
        let now = Instant::now();
        let target_count = due(rate, warmup, (now - run.started).as_secs_f64());
        while sent < target_count {
            sent += 1;
            if waiting.load(Ordering::Relaxed) >= args.max_waiting {
                if now >= run.started + run.warmup {
                    run.dropped.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            waiting.fetch_add(1, Ordering::Relaxed);
            let (target, run, waiting) = (target.clone(), run.clone(), waiting.clone());
            let n = sent as usize;
            tasks.spawn(async move {
                target.call(&run, n, now).await;
                waiting.fetch_sub(1, Ordering::Relaxed);
            });
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

async fn closed_model(args: &Args, target: Arc<Target>, run: Arc<Run>) {
    let workers = match &*target {
        Target::Http { .. } => args.connections,
        Target::Grpc { channels, .. } => channels.len() * args.streams,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let (target, run) = (target.clone(), run.clone());
        // The ramp: workers join evenly over the warm-up.
        let joins = run.warmup.mul_f64(worker as f64 / workers as f64);
        tasks.spawn(async move {
            tokio::time::sleep(joins).await;
            let mut n = worker;
            while Instant::now() < run.measured_until {
                target.call(&run, n, Instant::now()).await;
                n += workers;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn own_cpu_seconds() -> f64 {
    // /proc/self/stat fields 14 and 15: user and system ticks of every thread.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Each second of the measured window (by arrival): its calls and their p95,
/// so a window's tail shows whether one stall or the whole window made it.
fn by_second(tally: &Tally) -> Vec<Value> {
    let mut seconds: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
    for (&second, &micros) in tally.seconds.iter().zip(&tally.micros) {
        seconds.entry(second).or_default().push(micros);
    }
    seconds
        .into_iter()
        .map(|(second, mut micros)| {
            micros.sort_unstable();
            json!({"second": second, "calls": micros.len(), "p95_ms": percentile(&micros, 0.95)})
        })
        .collect()
}

fn percentile(sorted: &[u32], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(f64::from(sorted[((last as f64) * q).round() as usize]) / 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = read_seed(args.seed.as_ref())?;
    let target = Arc::new(target(&args, &seed).await?);
    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let warmup = Duration::from_secs(args.warmup);
    let run = Arc::new(Run {
        started,
        warmup,
        measured_until: started + warmup + Duration::from_secs(args.duration),
        tally: Mutex::new(Tally::default()),
        dropped: AtomicU64::new(0),
        next_code: AtomicUsize::new(0),
    });
    if args.rate > 0 {
        open_model(&args, target, run.clone()).await;
    } else {
        closed_model(&args, target, run.clone()).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = own_cpu_seconds() - cpu_before;
    let mut tally = std::mem::take(&mut *run.tally.lock().expect("tally"));
    let seconds = by_second(&tally);
    tally.micros.sort_unstable();
    let calls = tally.micros.len();
    let report = json!({
        "call": args.call.to_possible_value().map(|v| v.get_name().to_owned()),
        "offered_per_s": args.rate,
        "measured_seconds": args.duration,
        "calls": calls,
        "per_second": calls as f64 / args.duration as f64,
        "p50_ms": percentile(&tally.micros, 0.50),
        "p95_ms": percentile(&tally.micros, 0.95),
        "p99_ms": percentile(&tally.micros, 0.99),
        "max_ms": percentile(&tally.micros, 1.0),
        "statuses": tally.statuses,
        "unexpected": tally.unexpected,
        "results": tally.results,
        "dropped": run.dropped.load(Ordering::Relaxed),
        "by_second": seconds,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
    });
    println!("{report}");
    Ok(())
}
