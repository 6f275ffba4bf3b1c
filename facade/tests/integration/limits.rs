//! The distributed limiter across real replicas, with Redis lost and back,
//! and a scanner's budget taken from it in blocks.
//! This test runs its own Redis, so stopping it disturbs no other test.

use futures::{StreamExt, stream};
use reqwest::StatusCode;
use serde_json::json;
use ticketing_domain::identity::Role;
use ticketing_proto::v1::{self, RedeemResult, check_in_service_client::CheckInServiceClient};
use tonic::{Code, transport::Channel};

use crate::helpers::{
    OwnRedis, Processes, TestApp, authed, eventually, free_port, fresh_database, metric_sample, on_sale, scanner,
    test_vars,
};

const LIMIT: usize = 12;
const REPLICAS: usize = 3;

/// Sends `attempts` logins for one e-mail, spread over the first `spread`
/// replicas; returns how many were not rate limited.
async fn admitted(replicas: &Processes, spread: usize, email: &str, attempts: usize) -> usize {
    let http = reqwest::Client::new();
    let statuses: Vec<StatusCode> = stream::iter(0..attempts)
        .map(|n| {
            let request = http
                .post(format!("{}/v1/auth/token", replicas.bases[n % spread]))
                .json(&json!({ "email": email, "password": "not the password" }));
            async move { request.send().await.expect("replica answers").status() }
        })
        .buffer_unordered(6)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    statuses.iter().filter(|s| **s != StatusCode::TOO_MANY_REQUESTS).count()
}

#[tokio::test]
async fn one_login_limit_across_replicas_and_a_local_share_without_redis() {
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    let database = fresh_database().await;
    let mut vars = test_vars(&database);
    vars.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{port}/0"));
    vars.insert("REDIS_TIMEOUT_MS".into(), "100".into());
    vars.insert("LOGIN_FAILURES_PER_ACCOUNT_AND_IP".into(), LIMIT.to_string());
    vars.insert("LOGIN_LIMIT_PER_IP".into(), "100000".into());
    vars.insert("EXPECTED_REPLICAS".into(), REPLICAS.to_string());
    // The limit is the subject, not the hashing bound: a login waiting for
    // its argon2 turn while the whole suite loads the cores once answered
    // 503 OVERLOADED here.
    vars.insert("PASSWORD_HASH_MAX_WAIT_MS".into(), "30000".into());
    let replicas = Processes::start(REPLICAS, &vars).await;

    // Shared in Redis: N per minute in all — not N per replica, and all N
    // available through any one replica.
    assert_eq!(admitted(&replicas, REPLICAS, "spread@example.com", 3 * LIMIT).await, LIMIT);
    assert_eq!(admitted(&replicas, 1, "one-replica@example.com", 3 * LIMIT).await, LIMIT);

    // Redis gone: each replica enforces its share (N / replicas); the service stays up.
    redis.stop();
    assert_eq!(admitted(&replicas, 1, "fallback-one@example.com", 3 * LIMIT).await, LIMIT / REPLICAS);
    assert_eq!(admitted(&replicas, REPLICAS, "fallback-spread@example.com", 3 * LIMIT).await, LIMIT);
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{}/v1/events", replicas.bases[0])).send().await.unwrap().status(), StatusCode::OK);

    // Redis back (empty): once the replica reconnects, one replica admits all N again.
    let _redis = OwnRedis::start(redis.port);
    let resumed = eventually(|| {
        let replicas = &replicas;
        async move {
            let email = format!("resumed-{}@example.com", uuid::Uuid::now_v7().simple());
            let admitted = admitted(replicas, 1, &email, 3 * LIMIT).await;
            (admitted == LIMIT).then_some(admitted)
        }
    })
    .await;
    assert_eq!(resumed, LIMIT);
}

/// Scripts run by their SHA-1: a Redis whose script cache was emptied (a
/// restart, a failover to a replica that never loaded them) answers NOSCRIPT,
/// and the limit is still decided in Redis, not by a replica's share.
#[tokio::test]
async fn a_redis_that_forgot_the_scripts_still_decides_the_shared_limit() {
    let port = free_port();
    let redis = OwnRedis::start(port);
    let database = fresh_database().await;
    let mut vars = test_vars(&database);
    vars.insert("REDIS_URL".into(), redis.url());
    vars.insert("LOGIN_FAILURES_PER_ACCOUNT_AND_IP".into(), LIMIT.to_string());
    vars.insert("LOGIN_LIMIT_PER_IP".into(), "100000".into());
    // A fallback would admit a third of the limit: the test can tell.
    vars.insert("EXPECTED_REPLICAS".into(), REPLICAS.to_string());
    vars.insert("PASSWORD_HASH_MAX_WAIT_MS".into(), "30000".into());
    let replica = Processes::start(1, &vars).await;

    assert_eq!(admitted(&replica, 1, "before@example.com", 2 * LIMIT).await, LIMIT);
    redis.forget_scripts().await;
    assert_eq!(admitted(&replica, 1, "after@example.com", 2 * LIMIT).await, LIMIT);
}

/// Sends `scans` scans of a code that is not a ticket with one scanner's
/// token, `concurrent` at a time, spread over `bases`; returns how many were
/// not rate limited.
async fn scans_admitted(bases: &[String], token: &str, scans: usize, concurrent: usize) -> usize {
    let mut clients = Vec::new();
    for base in bases {
        let channel = Channel::from_shared(base.clone()).unwrap().connect().await.unwrap();
        clients.push(CheckInServiceClient::new(channel));
    }
    let answers: Vec<Result<RedeemResult, Code>> = stream::iter(0..scans)
        .map(|n| {
            let mut client = clients[n % clients.len()].clone();
            let scan = v1::RedeemRequest { code: "not a ticket".into(), gate: "north".into(), ..Default::default() };
            let request = authed(scan, token);
            async move { client.redeem(request).await.map(|r| r.into_inner().result()).map_err(|s| s.code()) }
        })
        .buffer_unordered(concurrent)
        .collect()
        .await;
    assert!(
        answers.iter().all(|a| matches!(a, Ok(RedeemResult::Invalid) | Err(Code::ResourceExhausted))),
        "{answers:?}"
    );
    answers.iter().filter(|a| a.is_ok()).count()
}

/// A busy scanner's budget comes from Redis in blocks: a round trip per
/// block, not per scan, while each scan is still counted there.
#[tokio::test]
async fn a_busy_scanner_takes_its_budget_from_redis_in_blocks() {
    const SCANS: usize = 400;
    let redis = OwnRedis::start(free_port());
    let app = TestApp::builder()
        .own_process()
        .var("REDIS_URL", redis.url())
        .var("SCAN_LIMIT_PER_SCANNER", "60000")
        .spawn()
        .await;
    let organizer = app.user(Role::Organizer).await;
    let (event_id, _) = on_sale(&app, &organizer, 10, 4).await;
    let (_, token) = scanner(&app, &organizer, &event_id, "north").await;

    let before = redis.script_calls().await;
    assert_eq!(scans_admitted(&[app.url("")], &token, SCANS, 8).await, SCANS);
    let round_trips = redis.script_calls().await - before;
    // Blocks of 1, 2, 4, … (each scan took ~1 ms here, so no block lapsed):
    // about log2(SCANS) of them, plus the ones asked for at once by scans in
    // flight together.
    assert!(round_trips <= 40, "{round_trips} round trips to Redis for {SCANS} scans");
    let metrics = app.metrics().await;
    let decided = |decision: &str| {
        let series = format!(r#"ticketing_rate_limit_decisions_total{{limit="scans_scanner",decision="{decision}"}}"#);
        metric_sample(&metrics, &series)
    };
    assert_eq!(decided("allowed") + decided("leased"), SCANS as f64);
    assert_eq!(decided("allowed") as u64, round_trips);
}

/// Three replicas spending one scanner's budget in blocks: together they
/// admit no more than its quota (plus the refill while they scan and one
/// block), and lose no more than a block each.
#[tokio::test]
async fn three_replicas_share_one_scanners_budget_with_at_most_a_block_over() {
    const QUOTA: usize = 600; // a minute: blocks of up to 10
    const BLOCK: usize = 10;
    let redis = OwnRedis::start(free_port());
    let app =
        TestApp::builder().var("REDIS_URL", redis.url()).var("SCAN_LIMIT_PER_SCANNER", QUOTA.to_string()).spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let (event_id, _) = on_sale(&app, &organizer, 10, 4).await;
    let (_, token) = scanner(&app, &organizer, &event_id, "north").await;
    let replicas = Processes::start(REPLICAS, &app.vars).await;

    let started = std::time::Instant::now();
    let admitted = scans_admitted(&replicas.bases, &token, 2 * QUOTA, 12).await;
    // The quota refills at QUOTA a minute while the scans run.
    let refill = (started.elapsed().as_secs_f64() * QUOTA as f64 / 60.0).ceil() as usize;
    assert!(admitted <= QUOTA + refill + BLOCK, "{admitted} admitted, {refill} refilled");
    assert!(admitted + REPLICAS * BLOCK >= QUOTA, "{admitted} admitted");
}
