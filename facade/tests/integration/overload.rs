//! Overload control: past the limit, requests are shed at once with 503 /
//! UNAVAILABLE + Retry-After, check-in last; browsing has its own bulkhead.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use reqwest::{Method, StatusCode};
use serde_json::json;
use ticketing_proto::v1::{
    self, auth_service_client::AuthServiceClient, check_in_service_client::CheckInServiceClient,
};
use tonic::transport::Channel;
use tonic_types::StatusExt;

use ticketing_domain::identity::Role;
use ticketing_facade::overload::STANDARD_SHARE;

use crate::helpers::{
    Processes, Sale, TestApp, authed, held, metric_sample, order_body, order_request, paid_tickets, query_one, sale,
    scanner,
};

#[tokio::test]
async fn a_replica_full_of_slow_writes_sheds_them_but_keeps_browsing_and_check_in() {
    // A limit of 4 per bulkhead: standard calls may fill their share of it,
    // check-in all 4 (the rest is its reserve); browsing has 4 of its own.
    const LIMIT: usize = 4;
    let standard_room = ((LIMIT as f64 * STANDARD_SHARE).floor() as usize).max(1);
    assert!(standard_room < LIMIT, "standard calls must leave check-in a reserve");
    let app = TestApp::builder()
        .var("CONCURRENCY_LIMIT_MIN", LIMIT.to_string())
        .var("CONCURRENCY_LIMIT_MAX", LIMIT.to_string())
        .var("CONCURRENCY_MAX_WAIT_MS", "5")
        .var("DATABASE_POOL_TIMEOUT_MS", "30000")
        .spawn()
        .await;
    // Sign-ups filling the standard share, held in flight by a lock on the table they write.
    let held = app.hold_sign_ups(standard_room).await;

    let standard = app
        .rest(Method::POST, "/v1/auth/token", None, Some(json!({ "email": "x@example.com", "password": "whatever" })))
        .await;
    assert_eq!(standard.error_reason(503, "UNAVAILABLE"), "OVERLOADED");
    assert_eq!(standard.headers["retry-after"], "1");
    let browse = app.rest(Method::GET, "/v1/events", None, None).await;
    assert_eq!(browse.status, StatusCode::OK, "slow writes do not shed browsing: {}", browse.body);
    let mut grpc = AuthServiceClient::new(app.channel().await);
    let status = grpc
        .issue_token(v1::IssueTokenRequest { email: "x@example.com".into(), password: "whatever".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.get_error_details().error_info().unwrap().reason, "OVERLOADED");
    let check_in = app.rest(Method::POST, "/v1/checkins", None, Some(json!({ "code": "x", "gate": "A" }))).await;
    assert_ne!(check_in.status, StatusCode::SERVICE_UNAVAILABLE, "check-in is shed last: {}", check_in.body);

    assert!(held.release().await.iter().all(|s| *s == StatusCode::CREATED));
    // Room again once the held calls finished.
    let standard = app
        .rest(Method::POST, "/v1/auth/token", None, Some(json!({ "email": "x@example.com", "password": "whatever" })))
        .await;
    assert_eq!(standard.error_reason(401, "UNAUTHENTICATED"), "INVALID_CREDENTIALS");
}

#[tokio::test]
async fn a_flood_past_capacity_is_shed_fast_while_the_gates_keep_admitting() {
    let app = TestApp::builder().var("SCAN_LIMIT_PER_SCANNER", "100000").spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 100_000, 4).await;
    let mut tickets = Vec::new();
    for _ in 0..5 {
        tickets.extend(paid_tickets(&app, &customer, &event, 4).await);
    }
    let (_, scanner_token) = scanner(&app, &organizer, &event.0, "Main gate").await;
    // One replica with a small concurrency limit, so a test-sized flood is far past it.
    let mut vars = app.vars.clone();
    vars.extend(
        [("CONCURRENCY_LIMIT_MIN", "4"), ("CONCURRENCY_LIMIT_MAX", "8"), ("CONCURRENCY_MAX_WAIT_MS", "5")]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let replica = Processes::start(1, &vars).await;
    let base = replica.bases[0].clone();

    let flooding = Arc::new(AtomicBool::new(true));
    let flood: Vec<_> = (0..200)
        .map(|buyer| {
            let (http, base, token, flooding) =
                (app.http.clone(), base.clone(), customer.token.clone(), flooding.clone());
            let body = order_body(&event.0, &event.1, 1);
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut n = 0;
                while flooding.load(Ordering::SeqCst) && n < 50 {
                    let response = order_request(&http, &base, &token, &format!("flood-{buyer}-{n}"), &body)
                        .send()
                        .await
                        .expect("the replica answers");
                    let retry_after = response.headers().contains_key("retry-after");
                    answers.push((response.status(), retry_after));
                    n += 1;
                }
                answers
            })
        })
        .collect();

    // The gates, meanwhile: every genuine ticket is admitted.
    let mut gate = CheckInServiceClient::new(Channel::from_shared(base.clone()).unwrap().connect().await.unwrap());
    for (_, code) in &tickets {
        let request =
            authed(v1::RedeemRequest { code: code.clone(), gate: "Main".into(), ..Default::default() }, &scanner_token);
        let response = gate.redeem(request).await.expect("check-in is not shed").into_inner();
        assert_eq!(response.result(), v1::RedeemResult::Accepted);
    }
    flooding.store(false, Ordering::SeqCst);

    let answers: Vec<(StatusCode, bool)> =
        futures::future::join_all(flood).await.into_iter().flat_map(Result::unwrap).collect();
    let shed = answers.iter().filter(|(status, _)| *status == StatusCode::SERVICE_UNAVAILABLE).count();
    assert!(shed > 0, "the flood was past capacity: {} answers, none shed", answers.len());
    for (status, retry_after) in &answers {
        assert!(
            *status == StatusCode::CREATED || (*status == StatusCode::SERVICE_UNAVAILABLE && *retry_after),
            "admitted, or shed with Retry-After: {status}"
        );
    }
    let ready = app.http.get(format!("{}/readyz", replica.admins[0])).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "the replica survived");

    // What the database holds afterwards: an order for every 201, none for
    // a shed request, and the inventory holding exactly what orders hold.
    let created = answers.iter().filter(|(status, _)| *status == StatusCode::CREATED).count();
    let sql = "SELECT count(*) FROM orders WHERE idempotency_key LIKE 'flood-%'";
    let stored: i64 = query_one(&app.direct_url(), sql, &[]).await.expect("a count");
    assert_eq!(usize::try_from(stored).unwrap(), created, "{} answers, {shed} shed", answers.len());
    let (buckets, orders) = held(&app, &event.1).await;
    assert_eq!(buckets, orders, "the buckets hold what live orders hold");
}

#[tokio::test]
async fn an_exhausted_database_pool_answers_503_at_its_timeout_while_the_holders_still_hold() {
    // Two connections to the primary, each waiting at most 300 ms for a turn,
    // in a process of its own: the timeout counter below is this server's.
    let app = TestApp::builder()
        .own_process()
        .var("DATABASE_POOL_SIZE", "2")
        .var("DATABASE_POOL_TIMEOUT_MS", "300")
        .var("CONCURRENCY_LIMIT_MIN", "64")
        .spawn()
        .await;
    let customer = app.user(Role::Customer).await;
    let timeouts =
        || async { metric_sample(&app.metrics().await, r#"ticketing_db_pool_timeouts_total{pool="primary"}"#) };
    let before = timeouts().await;
    // Both connections held: two sign-ups inside their transactions, waiting on a lock.
    let held = app.hold_sign_ups(2).await;

    let orders = app.rest(Method::GET, "/v1/orders", Some(&customer.token), None).await;
    assert_eq!(orders.error_reason(503, "UNAVAILABLE"), "OVERLOADED", "{}", orders.body);
    assert_eq!(orders.body["error"]["details"][0]["metadata"]["resource"], "database");
    assert!(orders.headers.contains_key("retry-after"), "{:?}", orders.headers);
    // It was answered at the pool's timeout, not when a connection came
    // free: both holders are still waiting on the lock.
    assert_eq!(app.lock_waiters().await, 2);
    assert!(timeouts().await > before, "the timeout is counted");

    assert!(held.release().await.iter().all(|s| *s == StatusCode::CREATED));
    let orders = app.rest(Method::GET, "/v1/orders", Some(&customer.token), None).await;
    assert_eq!(orders.status, StatusCode::OK, "{}", orders.body);
}
