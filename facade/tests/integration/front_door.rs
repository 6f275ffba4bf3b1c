//! The on-sale front door (API.md "On-sale front door"): the per-customer
//! ticket limit, the waiting room's queue and admissions, its proof-of-work
//! and its admission tokens, against the real stack.

use chrono::{Duration, Utc};
use futures::{StreamExt, future::join_all};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use ticketing_domain::identity::Role;
use ticketing_service::app;

use crate::helpers::{
    Processes, Response, TestApp, TestUser, bulk_customers, buy, challenge, eventually_within, execute, join,
    join_with, mint_token, on_sale, order_body, order_request, query_one, queue_entry, room, room_event, sale, solve,
    start_sales_now, uuid,
};

fn reason(response: &Response) -> &str {
    response.body["error"]["details"][0]["reason"].as_str().unwrap_or_default()
}

fn metadata<'a>(response: &'a Response, key: &str) -> &'a str {
    response.body["error"]["details"][0]["metadata"][key].as_str().unwrap_or_default()
}

async fn set_limit(app: &TestApp, organizer: &TestUser, event_id: &str, limit: i32) {
    let body = json!({ "maxTicketsPerCustomer": limit });
    let updated = app.rest(Method::PATCH, &format!("/v1/events/{event_id}"), Some(&organizer.token), Some(body)).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["maxTicketsPerCustomer"], limit);
}

/// Tickets the customer's live orders for the event hold, on the primary.
async fn held_by(app: &TestApp, customer: &TestUser, event_id: &str) -> i64 {
    let sql = "SELECT coalesce(sum(i.quantity), 0) FROM orders o JOIN order_items i ON i.order_id = o.id \
               WHERE o.user_id = $1 AND o.event_id = $2 AND o.status IN ('pending', 'paid')";
    query_one(&app.direct_url(), sql, &[&customer.id, &uuid(event_id)]).await.expect("a sum")
}

#[tokio::test]
async fn fifty_concurrent_orders_of_one_customer_over_three_replicas_stop_at_the_limit() {
    let app = TestApp::spawn().await;
    let (organizer, customer) = (app.user(Role::Organizer).await, app.user(Role::Customer).await);
    let event = on_sale(&app, &organizer, 500, 4).await;
    set_limit(&app, &organizer, &event.0, 7).await;
    let replicas = Processes::start(3, &app.vars).await;

    let orders = (0..50).map(|n| {
        let base = &replicas.bases[n % 3];
        let request =
            order_request(&app.http, base, &customer.token, &format!("k{n}"), &order_body(&event.0, &event.1, 1));
        async move { Response::read(request.send().await.expect("order sent")).await }
    });
    let answers = join_all(orders).await;

    let accepted = answers.iter().filter(|a| a.status == StatusCode::CREATED).count();
    let refused: Vec<&Response> = answers.iter().filter(|a| a.status != StatusCode::CREATED).collect();
    assert_eq!(accepted, 7, "exactly the limit is sold to one customer");
    for answer in &refused {
        assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
        assert_eq!(reason(answer), "CUSTOMER_LIMIT_EXCEEDED", "{}", answer.body);
        assert_eq!(metadata(answer, "limit"), "7");
        assert_eq!(metadata(answer, "held"), "7", "refused with what they hold, all seven");
    }
    assert_eq!(held_by(&app, &customer, &event.0).await, 7);
    let other = app.user(Role::Customer).await;
    let theirs = buy(&app, &other.token, "other", order_body(&event.0, &event.1, 4)).await;
    assert_eq!(theirs.status, StatusCode::CREATED, "the limit is per customer: {}", theirs.body);
}

#[tokio::test]
async fn cancelled_and_expired_orders_give_the_customer_room_back() {
    let app = TestApp::spawn().await;
    let sale = sale(&app, 100, 4).await;
    let (event_id, category_id) = sale.event.clone();
    let unset = json!({ "maxTicketsPerCustomer": 0 });
    let path = format!("/v1/events/{event_id}");
    let event = app.rest(Method::PATCH, &path, Some(&sale.organizer.token), Some(unset)).await;
    assert_eq!(event.body["maxTicketsPerCustomer"], 10, "an event that sets no limit has 10: {}", event.body);
    set_limit(&app, &sale.organizer, &event_id, 5).await;
    let order = |key: &'static str, quantity: i32| {
        buy(&app, &sale.customer.token, key, order_body(&event_id, &category_id, quantity))
    };

    let first = order("a", 3).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let second = order("b", 2).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    let past = order("c", 1).await;
    assert_eq!(
        (past.status, reason(&past), metadata(&past, "held")),
        (StatusCode::CONFLICT, "CUSTOMER_LIMIT_EXCEEDED", "5")
    );

    let first_id = first.body["id"].as_str().unwrap();
    let path = format!("/v1/orders/{first_id}:cancel");
    let cancelled = app.rest(Method::POST, &path, Some(&sale.customer.token), None).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let again = order("d", 3).await;
    assert_eq!(again.status, StatusCode::CREATED, "a cancelled order's tickets count no more: {}", again.body);

    let second_id = uuid(second.body["id"].as_str().unwrap());
    execute(
        &app.direct_url(),
        "UPDATE orders SET expire_time = now() - interval '1 second' WHERE id = $1",
        &[&second_id],
    )
    .await;
    assert_eq!(app::orders::expire_due_orders(&app.state, 10).await.expect("expiry ran"), 1);
    let after_expiry = order("e", 2).await;
    assert_eq!(
        after_expiry.status,
        StatusCode::CREATED,
        "an expired order's tickets count no more: {}",
        after_expiry.body
    );
    assert_eq!(held_by(&app, &sale.customer, &event_id).await, 5);
}

#[tokio::test]
async fn joining_takes_a_fresh_challenge_solved_for_this_customer_and_event() {
    // A process of its own: the failure counters below are this server's.
    let app = TestApp::builder().own_process().var("WAITING_ROOM_CHALLENGE_TTL_SECONDS", "2").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let (ana, budi) = (app.user(Role::Customer).await, app.user(Role::Customer).await);
    let mut hard = room(60, 0);
    hard["challengeDifficulty"] = json!(300);
    let (event_id, _) = room_event(&app, &organizer, hard, Utc::now() - Duration::minutes(1)).await;
    let (other_event, _) = room_event(&app, &organizer, room(60, 0), Utc::now() - Duration::minutes(1)).await;

    let challenge_of_ana = challenge(&app, &ana.token, &event_id).await;
    assert_eq!(challenge_of_ana["parameters"]["algorithm"], "PBKDF2/SHA-256", "ALTCHA v2, as the widget takes it");
    assert!(challenge_of_ana["parameters"]["expiresAt"].is_u64(), "{challenge_of_ana}");
    let solved = solve(&challenge_of_ana);

    let refusals = [("", "missing"), ("bm90IGpzb24=", "malformed"), (&solved[..solved.len() / 2], "malformed")];
    for (altcha, failure) in refusals {
        let refused = join_with(&app, &ana.token, &event_id, altcha).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert_eq!((reason(&refused), metadata(&refused, "failure")), ("CHALLENGE_FAILED", failure));
    }
    let borrowed = join_with(&app, &budi.token, &event_id, &solved).await;
    assert_eq!(metadata(&borrowed, "failure"), "invalid", "another customer's solution: {}", borrowed.body);
    let elsewhere = join_with(&app, &ana.token, &other_event, &solved).await;
    assert_eq!(metadata(&elsewhere, "failure"), "invalid", "another event's solution: {}", elsewhere.body);
    let mut tampered: Value = serde_json::from_slice(&base64_decode(&solved)).unwrap();
    tampered["challenge"]["parameters"]["cost"] = json!(1);
    let tampered = join_with(&app, &ana.token, &event_id, &base64_encode(&tampered)).await;
    assert_eq!(metadata(&tampered, "failure"), "invalid", "a cheaper challenge than the one signed: {}", tampered.body);

    let joined = join_with(&app, &ana.token, &event_id, &solved).await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.body);
    assert_eq!(joined.body["status"], "QUEUE_ENTRY_STATUS_WAITING");
    assert_eq!(joined.body["position"], 1);
    let replayed = join_with(&app, &ana.token, &event_id, &solved).await;
    assert_eq!((replayed.status, metadata(&replayed, "failure")), (StatusCode::BAD_REQUEST, "replayed"));

    let again = join(&app, &ana.token, &event_id).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(again.body["id"], joined.body["id"], "one entry per customer and event");
    assert_eq!(again.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));

    let stale = solve(&challenge(&app, &budi.token, &event_id).await);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let expired = join_with(&app, &budi.token, &event_id, &stale).await;
    assert_eq!(metadata(&expired, "failure"), "expired", "{}", expired.body);

    let metrics = app.metrics().await;
    for failure in ["missing", "malformed", "invalid", "replayed", "expired"] {
        let series = format!("ticketing_queue_challenge_failures_total{{failure=\"{failure}\"}}");
        assert!(metrics.contains(&series), "{series} missing");
    }
}

fn base64_decode(value: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(value).unwrap()
}

fn base64_encode(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(value).unwrap())
}

#[tokio::test]
async fn while_the_room_is_enabled_only_ones_own_unexpired_admission_buys() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let (ana, budi) = (app.user(Role::Customer).await, app.user(Role::Customer).await);
    let (event_id, category_id) = room_event(&app, &organizer, room(6000, 0), Utc::now() - Duration::minutes(1)).await;
    let (other_event, other_category) =
        room_event(&app, &organizer, room(6000, 0), Utc::now() - Duration::minutes(1)).await;
    let buy_with = |token: &str, admission: Option<&str>, key: &str, event: &str, category: &str| {
        let mut request = order_request(&app.http, &app.url(""), token, key, &order_body(event, category, 1));
        if let Some(admission) = admission {
            request = request.header("ticketing-admission", admission);
        }
        app.raw(request)
    };

    let without = buy_with(&ana.token, None, "none", &event_id, &category_id).await;
    assert_eq!(without.status, StatusCode::FORBIDDEN, "{}", without.body);
    assert_eq!(reason(&without), "ADMISSION_REQUIRED");
    assert_eq!(metadata(&without, "queuePath"), format!("/v1/events/{event_id}/queue:join"));
    let forged = buy_with(&ana.token, Some("eyJhbGciOiJIUzI1NiJ9.e30.forged"), "forged", &event_id, &category_id).await;
    assert_eq!(reason(&forged), "ADMISSION_REQUIRED");
    let user_token = buy_with(&ana.token, Some(&ana.token), "user-token", &event_id, &category_id).await;
    assert_eq!(reason(&user_token), "ADMISSION_REQUIRED", "a sign-in token is no admission");

    let entry = join(&app, &ana.token, &event_id).await;
    assert_eq!(entry.status, StatusCode::CREATED, "{}", entry.body);
    let entry_id = entry.body["id"].as_str().unwrap().to_owned();
    let _worker = crate::helpers::Worker::start(app.state.clone());
    let admitted = eventually_within(100, std::time::Duration::from_millis(100), || async {
        let read = queue_entry(&app, &ana.token, &event_id, &entry_id).await;
        (read.body["status"] == "QUEUE_ENTRY_STATUS_ADMITTED").then_some(read)
    })
    .await;
    let token = admitted.body["admission"]["token"].as_str().expect("an admission token").to_owned();
    assert!(admitted.body["admission"]["expireTime"].is_string(), "{}", admitted.body);
    assert_eq!(admitted.body["position"], 0);

    let others = buy_with(&budi.token, Some(&token), "budi", &event_id, &category_id).await;
    assert_eq!(reason(&others), "ADMISSION_REQUIRED", "another account's admission: {}", others.body);
    let elsewhere = buy_with(&ana.token, Some(&token), "elsewhere", &other_event, &other_category).await;
    assert_eq!(reason(&elsewhere), "ADMISSION_REQUIRED", "another event's admission: {}", elsewhere.body);
    let expired_token = app
        .state
        .front_door
        .sign_admission(uuid(&event_id), ana.id, uuid(&entry_id), Utc::now() - Duration::seconds(1))
        .unwrap();
    let expired = buy_with(&ana.token, Some(&expired_token), "expired", &event_id, &category_id).await;
    assert_eq!(reason(&expired), "ADMISSION_REQUIRED", "an expired admission: {}", expired.body);
    let not_budis = queue_entry(&app, &budi.token, &event_id, &entry_id).await;
    assert_eq!(not_budis.status, StatusCode::NOT_FOUND, "another customer's entry is not found");
    let orders: i64 = query_one(&app.direct_url(), "SELECT count(*) FROM orders", &[]).await.unwrap();
    assert_eq!(orders, 0, "no order without a valid admission");

    let bought = buy_with(&ana.token, Some(&token), "admitted", &event_id, &category_id).await;
    assert_eq!(bought.status, StatusCode::CREATED, "{}", bought.body);
    let grpc_body = json!({ "eventId": event_id, "items": [{ "ticketCategoryId": category_id, "quantity": 1 }],
                            "admissionToken": token });
    let in_body = app
        .raw(
            app.http
                .post(app.url("/v1/orders"))
                .bearer_auth(&ana.token)
                .header("idempotency-key", "body")
                .json(&grpc_body),
        )
        .await;
    assert_eq!(in_body.status, StatusCode::CREATED, "the request's admission_token field counts too: {}", in_body.body);

    let disabled = json!({ "waitingRoom": { "enabled": false } });
    let path = format!("/v1/events/{event_id}");
    let updated = app.rest(Method::PATCH, &path, Some(&organizer.token), Some(disabled)).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let open = buy_with(&budi.token, None, "open", &event_id, &category_id).await;
    assert_eq!(open.status, StatusCode::CREATED, "a disabled room orders as before: {}", open.body);
}

/// Spearman's rank correlation of two rankings of the same items.
fn rank_correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let d2: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

#[tokio::test]
async fn the_pre_queue_is_shuffled_and_later_arrivals_queue_in_order() {
    const EARLY: usize = 2000;
    const LATE: usize = 40;
    let app = TestApp::builder().var("QUEUE_JOINS_PER_IP", "100000").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let (event_id, _) = room_event(&app, &organizer, room(60, 0), Utc::now() + Duration::hours(1)).await;
    let customers = bulk_customers(&app.direct_url(), EARLY + LATE).await;
    let tokens: Vec<String> = customers.iter().map(|id| mint_token(*id, Role::Customer)).collect();

    // Joined one after another, so join order is known exactly.
    let mut entries = Vec::new();
    for token in &tokens[..EARLY] {
        let joined = join(&app, token, &event_id).await;
        assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.body);
        entries.push(joined.body["id"].as_str().unwrap().to_owned());
    }
    let positions: Vec<f64> = futures::stream::iter(entries.iter().zip(&tokens))
        .map(|(entry, token)| {
            let (app, event_id) = (&app, &event_id);
            async move {
                let read = queue_entry(app, token, event_id, entry).await;
                read.body["position"].as_f64().unwrap_or_else(|| panic!("a position: {}", read.body))
            }
        })
        .buffered(8)
        .collect()
        .await;
    let mut sorted = positions.clone();
    sorted.sort_by(f64::total_cmp);
    let expected: Vec<f64> = (1..=EARLY).map(|p| p as f64).collect();
    assert_eq!(sorted, expected, "every early joiner has a place of their own");
    let join_order: Vec<f64> = (1..=EARLY).map(|p| p as f64).collect();
    let rho = rank_correlation(&join_order, &positions);
    // Independent orders give |rho| ≈ N(0, 1/√1999) = 0.022: 0.1 is 4.5 of it.
    assert!(rho.abs() < 0.1, "place follows join order: Spearman rho {rho:.3}");

    start_sales_now(&app, &organizer, &event_id).await;
    for (n, token) in tokens[EARLY..].iter().enumerate() {
        let joined = join(&app, token, &event_id).await;
        assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.body);
        assert_eq!(joined.body["position"], json!(EARLY + n + 1), "after the start: first come, first served");
        assert_eq!(joined.body["aheadCount"], json!(EARLY + n));
    }
}

/// Joins `count` bulk customers to `event_id`; their tokens and entry ids.
async fn crowd(app: &TestApp, event_id: &str, count: usize) -> Vec<(String, String)> {
    let customers = bulk_customers(&app.direct_url(), count).await;
    futures::stream::iter(customers)
        .map(|id| async move {
            let token = mint_token(id, Role::Customer);
            let joined = join(app, &token, event_id).await;
            assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.body);
            (token, joined.body["id"].as_str().unwrap().to_owned())
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
}

/// Admission times (Redis's clock, ms) of an event's admitted entries.
async fn admission_times(app: &TestApp, event_id: &str) -> Vec<i64> {
    let records = app.redis_hash(&format!("wr:{{{event_id}}}:entries")).await;
    let mut times: Vec<i64> =
        records.values().filter_map(|r| r.split(',').nth(2)?.parse::<i64>().ok()).filter(|at| *at > 0).collect();
    times.sort_unstable();
    times
}

#[tokio::test]
async fn admission_keeps_the_rooms_pace_and_never_more_active_buyers_than_allowed() {
    let app = TestApp::builder().var("QUEUE_JOINS_PER_IP", "100000").var("WAITING_ROOM_TICK_MS", "100").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let later = Utc::now() + Duration::hours(1);
    // 600 a minute with room for all; 6,000 a minute but 15 active at most.
    let (paced, _) = room_event(&app, &organizer, room(600, 0), later).await;
    let (capped, _) = room_event(&app, &organizer, room(6000, 15), later).await;
    crowd(&app, &paced, 150).await;
    crowd(&app, &capped, 60).await;
    for event_id in [&paced, &capped] {
        start_sales_now(&app, &organizer, event_id).await;
    }
    // Two worker processes: one leads, the other stands by.
    let workers = Processes::start_workers(2, &app.vars).await;

    // Twelve seconds of admissions at 10 a second.
    let times = eventually_within(300, std::time::Duration::from_millis(100), || async {
        let times = admission_times(&app, &paced).await;
        (times.last().zip(times.first()).is_some_and(|(last, first)| last - first >= 12_000)).then_some(times)
    })
    .await;
    let first = times[0];
    let within = times.iter().filter(|at| **at >= first && **at < first + 12_000).count();
    assert!((108..=132).contains(&within), "{within} admitted in 12 s at 600 a minute (120 ± 10 %)");

    let capped_times = admission_times(&app, &capped).await;
    assert_eq!(capped_times.len(), 15, "admissions stop at maxActiveBuyers while none has expired");
    // Recorded by whichever worker admitted (each process has its own
    // metrics), once per admission; admissions go on while this reads.
    let admissions = || async { (admission_times(&app, &paced).await.len() + capped_times.len()) as f64 };
    let before = admissions().await;
    let recorded = workers.metric_sum("ticketing_queue_wait_seconds_count").await;
    let after = admissions().await;
    assert!((before..=after).contains(&recorded), "{recorded} times in queue for {before}…{after} admissions");
}

#[tokio::test]
async fn admission_steps_racing_from_many_workers_admit_each_entry_once() {
    let app = TestApp::builder().var("QUEUE_JOINS_PER_IP", "100000").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let (event_id, _) = room_event(&app, &organizer, room(1_000_000, 0), Utc::now() + Duration::hours(1)).await;
    let entries = crowd(&app, &event_id, 300).await;
    start_sales_now(&app, &organizer, &event_id).await;

    // Eight "workers" stepping at once, lease or no lease.
    let steps = (0..8).map(|_| {
        let state = app.state.clone();
        tokio::spawn(async move {
            let mut admitted = 0;
            for _ in 0..20 {
                admitted += app::waiting_room::admit_due(&state).await.expect("a step");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            admitted
        })
    });
    let reported: usize = join_all(steps).await.into_iter().map(|r| r.expect("task")).sum();
    let times = admission_times(&app, &event_id).await;
    assert_eq!(times.len(), 300, "everyone admitted");
    assert_eq!(reported, 300, "the steps together admitted each entry once");
    let statuses = join_all(entries.iter().map(|(token, entry)| queue_entry(&app, token, &event_id, entry))).await;
    assert!(statuses.iter().all(|s| s.body["status"] == "QUEUE_ENTRY_STATUS_ADMITTED"));
}

#[tokio::test]
async fn a_killed_worker_hands_admissions_to_the_one_standing_by() {
    let app = TestApp::builder().var("QUEUE_JOINS_PER_IP", "100000").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let (event_id, _) = room_event(&app, &organizer, room(120, 0), Utc::now() + Duration::hours(1)).await;
    crowd(&app, &event_id, 60).await;
    let mut vars = app.vars.clone();
    vars.insert("WAITING_ROOM_TICK_MS".into(), "200".into());
    let mut first = Processes::start_workers(1, &vars).await;
    start_sales_now(&app, &organizer, &event_id).await;
    eventually_within(100, std::time::Duration::from_millis(100), || async {
        (admission_times(&app, &event_id).await.len() >= 3).then_some(())
    })
    .await;
    // The first holds the lease; the second starts behind it, then the first dies.
    let _second = Processes::start_workers(1, &vars).await;
    first.kill(0);
    let at_kill = admission_times(&app, &event_id).await.len();
    let after = eventually_within(100, std::time::Duration::from_millis(100), || async {
        let now = admission_times(&app, &event_id).await.len();
        (now >= at_kill + 4).then_some(now)
    })
    .await;
    assert!(after > at_kill, "admissions went on after the leading worker was killed");
}

#[tokio::test]
async fn the_queue_and_its_admissions_survive_a_redis_restart() {
    let mut redis = crate::helpers::OwnRedis::start_persistent(crate::helpers::free_port());
    let app = TestApp::builder().var("REDIS_URL", redis.url()).var("QUEUE_JOINS_PER_IP", "100000").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let (event_id, category_id) = room_event(&app, &organizer, room(60_000, 5), Utc::now() + Duration::hours(1)).await;
    let entries = crowd(&app, &event_id, 20).await;
    start_sales_now(&app, &organizer, &event_id).await;
    // The pace starts at the first step after the start (and the replica
    // sees the start a moment later): step until some are in.
    let admitted = eventually_within(100, std::time::Duration::from_millis(50), || async {
        let admitted = app::waiting_room::admit_due(&app.state).await.expect("a step");
        (admitted > 0).then_some(admitted)
    })
    .await;
    assert!(admitted <= 5, "{admitted} admitted past maxActiveBuyers 5");
    let read_all = || join_all(entries.iter().map(|(token, entry)| queue_entry(&app, token, &event_id, entry)));
    let before: Vec<Value> = read_all().await.into_iter().map(|r| r.body).collect();
    let (token, ..) =
        entries.iter().zip(&before).find(|(_, b)| b["status"] == "QUEUE_ENTRY_STATUS_ADMITTED").unwrap().0;
    let admission = before.iter().find(|b| b["status"] == "QUEUE_ENTRY_STATUS_ADMITTED").unwrap()["admission"]["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // appendfsync everysec: what was written a second ago is on disk.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    redis.restart().await;
    let after: Vec<Value> = eventually_within(100, std::time::Duration::from_millis(100), || async {
        let after: Vec<Response> = read_all().await;
        after.iter().all(|r| r.status == StatusCode::OK).then(|| after.into_iter().map(|r| r.body).collect())
    })
    .await;
    for (was, is) in before.iter().zip(&after) {
        assert_eq!((&was["id"], &was["status"], &was["position"]), (&is["id"], &is["status"], &is["position"]));
    }
    let bought = app
        .raw(
            order_request(&app.http, &app.url(""), token, "after-restart", &order_body(&event_id, &category_id, 1))
                .header("ticketing-admission", admission),
        )
        .await;
    assert_eq!(bought.status, StatusCode::CREATED, "an admission outlives Redis: {}", bought.body);
    assert!(app::waiting_room::admit_due(&app.state).await.is_ok(), "admissions go on");
}

#[tokio::test]
async fn a_browser_may_send_the_admission_header_to_rest() {
    let app = TestApp::spawn().await;
    let preflight = app
        .raw(
            app.http
                .request(Method::OPTIONS, app.url("/v1/orders"))
                .header("origin", "https://tickets.example.com")
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "authorization, idempotency-key, ticketing-admission"),
        )
        .await;
    let allowed = preflight.headers.get("access-control-allow-headers").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(allowed.to_lowercase().contains("ticketing-admission"), "allowed headers: {allowed:?}");
}
