//! Scale-out: stateless replicas behind nginx survive losing one mid-sale,
//! and losing the read replica costs reads nothing but the primary's time.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::helpers::{
    Cuttable, Processes, Sale, TestApp, held, midtrans_knows, notification, order_body, order_request, query_value,
    sale, stack, start_nginx, with_database,
};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinHandle;

/// A retriable answer: the edge found no replica (502/504), one shed (503),
/// the connection broke, or the key's first attempt is still "in progress"
/// (409 IDEMPOTENCY_KEY_IN_USE: its replica died holding the marker).
fn retriable(status: Option<StatusCode>, body: &str) -> bool {
    status.is_none_or(|s| matches!(s.as_u16(), 502..=504) || (s == 409 && body.contains("IDEMPOTENCY_KEY_IN_USE")))
}

/// POSTs until a non-retriable answer, like a client honouring the contract
/// (same Idempotency-Key every time); counts the requests that needed a retry.
async fn post_until_answered(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: &Value,
    retries: &AtomicUsize,
) -> (StatusCode, Value) {
    for attempt in 0..400 {
        let mut request = http.post(url).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let (status, text) = match request.send().await {
            Ok(response) => (Some(response.status()), response.text().await.unwrap_or_default()),
            Err(_) => (None, String::new()),
        };
        if !retriable(status, &text) {
            return (status.expect("answered"), serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        if attempt == 0 {
            retries.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never answered");
}

#[tokio::test]
async fn a_replica_killed_mid_sale_loses_and_duplicates_no_order() {
    const BUYERS: usize = 6;
    const ORDERS_EACH: usize = 15;
    let app = TestApp::builder().var("TRUSTED_PROXIES", "127.0.0.1").spawn().await;
    let Sale { customer, event, .. } = sale(&app, 10_000, 4).await;
    let mut replicas = Processes::start(3, &app.vars).await;
    let (_nginx, edge, _) = start_nginx(&replicas.bases, "100000r/s", "100000").await;

    let retries = Arc::new(AtomicUsize::new(0));
    let placed: Arc<Mutex<HashMap<String, i32>>> = Arc::default();
    let buyers: Vec<JoinHandle<()>> = (0..BUYERS)
        .map(|buyer| {
            let (http, edge, token, event) = (app.http.clone(), edge.clone(), customer.token.clone(), event.clone());
            let midtrans = app.vars["MIDTRANS_API_URL"].clone();
            let (retries, placed) = (retries.clone(), placed.clone());
            tokio::spawn(async move {
                for n in 0..ORDERS_EACH {
                    let quantity = 1 + ((buyer + n) % 3) as i32;
                    let key = format!("journey-{buyer}-{n}");
                    let body = order_body(&event.0, &event.1, quantity);
                    let orders = format!("{edge}/v1/orders");
                    let (status, order) =
                        post_until_answered(&http, &orders, Some(&token), Some(&key), &body, &retries).await;
                    assert_eq!(status, StatusCode::CREATED, "{order}");
                    let order_id = order["id"].as_str().unwrap().to_owned();
                    let amount = format!("{}.00", 750_000 * quantity);
                    let webhook = format!("{edge}/v1/payments/midtrans/notifications");
                    let settlement = notification(&order_id, "settlement", &amount);
                    midtrans_knows(&midtrans, &settlement).await;
                    let (status, _) = post_until_answered(&http, &webhook, None, None, &settlement, &retries).await;
                    assert_eq!(status, StatusCode::OK);
                    placed.lock().unwrap().insert(order_id, quantity);
                }
            })
        })
        .collect();

    // A third of the way in, every buyer's next order is held inside the
    // database (the category's buckets locked), so six orders are provably
    // in flight, and nginx spread them over the three replicas (least
    // connections: whichever of its workers took three or more gave each
    // replica one). Replica 1 dies without a drain with its share in flight.
    crate::helpers::eventually_within(600, Duration::from_millis(50), || async {
        (placed.lock().unwrap().len() >= BUYERS * ORDERS_EACH / 3).then_some(())
    })
    .await;
    let buckets = "SELECT 1 FROM inventory_buckets WHERE ticket_category_id = $1 FOR UPDATE";
    let lock = app.lock(buckets, &[&crate::helpers::uuid(&event.1)]).await;
    crate::helpers::eventually(|| async { (app.lock_waiters().await == BUYERS).then_some(()) }).await;
    replicas.kill(1);
    // Its buyers see the connection cut (nginx: 502) and try again elsewhere.
    crate::helpers::eventually(|| async { (retries.load(Ordering::SeqCst) > 0).then_some(()) }).await;
    lock.batch_execute("COMMIT").await.unwrap();
    replicas.restart(1).await;
    for buyer in buyers {
        buyer.await.expect("every buyer got every order through");
    }

    let placed = placed.lock().unwrap().clone();
    assert_eq!(placed.len(), BUYERS * ORDERS_EACH, "one order per idempotency key");
    let count = |sql: &'static str| {
        let url = app.direct_url();
        async move { query_value(&url, sql).await.unwrap().parse::<i64>().unwrap() }
    };
    assert_eq!(count("SELECT count(*) FROM orders").await, (BUYERS * ORDERS_EACH) as i64, "none lost, none twice");
    assert_eq!(count("SELECT count(*) FROM orders WHERE status = 'paid'").await, (BUYERS * ORDERS_EACH) as i64);
    let seats: i32 = placed.values().sum();
    assert_eq!(count("SELECT count(*) FROM tickets").await, i64::from(seats), "every paid order has its tickets");
    let (buckets, live) = held(&app, &event.1).await;
    assert_eq!(buckets, live);
    // nginx routed around the dead replica: only requests caught in flight needed a retry.
    let retried = retries.load(Ordering::SeqCst);
    assert!(retried <= 2 * BUYERS, "{retried} of {} requests needed a retry", 2 * BUYERS * ORDERS_EACH);
}

#[tokio::test]
async fn reads_fall_back_to_the_primary_while_the_read_replica_is_away() {
    // The replica's PgBouncer, reached through a proxy this test can cut.
    let replica_url = reqwest::Url::parse(&stack("DATABASE_REPLICA_URL")).unwrap();
    let target = format!("{}:{}", replica_url.host_str().unwrap(), replica_url.port().unwrap());
    let mut proxy = Cuttable::start(target).await;
    let mut through_proxy = replica_url.clone();
    through_proxy.set_port(Some(proxy.port)).unwrap();
    let app = TestApp::builder()
        .var("CATALOG_CACHE_TTL_MS", "1")
        .var("CATALOG_LOCAL_CACHE_TTL_MS", "1")
        .var("DATABASE_POOL_TIMEOUT_MS", "500")
        .spawn()
        .await;
    let mut vars = app.vars.clone();
    vars.insert("DATABASE_REPLICA_URL".into(), with_database(through_proxy.as_str(), &app.database));
    let server = Processes::start(1, &vars).await;
    let (base, admin) = (server.bases[0].clone(), server.admins[0].clone());
    let Sale { customer, event, .. } = sale(&app, 100, 4).await;
    let metric = |name: &'static str| {
        let (http, admin) = (app.http.clone(), admin.clone());
        async move {
            let text = http.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
            // Absent is not zero: an unexported metric fails the assertions below.
            text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        }
    };
    let read = || app.raw(app.http.get(format!("{base}/v1/events/{}", event.0)));
    assert_eq!(read().await.status, StatusCode::OK);
    assert_eq!(metric("ticketing_db_replica_fallbacks_total ").await, Some(0.0), "reads use the replica");
    let lag = metric("ticketing_db_replica_lag_seconds ").await;
    assert!(lag.is_some_and(|seconds| seconds >= 0.0), "the replica's lag is measured: {lag:?}");

    proxy.cut().await;
    for n in 0..10 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(read().await.status, StatusCode::OK, "public reads go on from the primary");
        let key = format!("replica-away-{n}");
        let order =
            app.raw(order_request(&app.http, &base, &customer.token, &key, &order_body(&event.0, &event.1, 1))).await;
        assert_eq!(order.status, StatusCode::CREATED, "writes are unaffected: {}", order.body);
    }
    let fallbacks = metric("ticketing_db_replica_fallbacks_total ").await;
    assert!(fallbacks.is_some_and(|count| count > 0.0), "the fallback is visible in metrics: {fallbacks:?}");

    // Back: after the retry interval, reads return to the replica.
    proxy.open().await;
    crate::helpers::eventually_within(100, Duration::from_millis(100), || async {
        assert_eq!(read().await.status, StatusCode::OK);
        let before = metric("ticketing_db_replica_fallbacks_total ").await;
        assert_eq!(read().await.status, StatusCode::OK);
        (metric("ticketing_db_replica_fallbacks_total ").await == before).then_some(())
    })
    .await;
}
