//! The distributed limiter across real replicas, with Redis lost and back.
//! This test runs its own Redis, so stopping it disturbs no other test.

use futures::{StreamExt, stream};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{OwnRedis, Processes, eventually, free_port, fresh_database, test_vars};

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
