//! Failover of the database (`ci/stack ha`: Patroni, etcd, HAProxy,
//! PgBouncer): the leader's postmaster killed mid-sale. Patroni promotes the
//! synchronous standby; the service rides it without a person: 503 with
//! Retry-After while there is no leader (never 500), writes back by
//! themselves, and no order that was acknowledged is lost or doubled.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::Value;
use ticketing_domain::identity::Role;
use uuid::Uuid;

use crate::helpers::{
    HaCluster, NodeRole, Processes, Sim, TestApp, bulk_customers, held, midtrans_knows, mint_token, notification,
    on_sale, order_body, order_request, query_one, signal, with_database,
};

/// How long buyers buy, and when the database is disrupted.
const SALE: Duration = Duration::from_secs(30);
const DISRUPT_AT: Duration = Duration::from_secs(10);
/// Writes must be back this soon after the kill. Patroni's loop (1 s)
/// finds the leader's Postgres dead and, with `primary_start_timeout: 0`,
/// gives the lock up; the synchronous standby's loop (1 s) promotes it;
/// HAProxy's checks (every 0.5 s, 2 to mark down, 1 to mark up) move the
/// primary port; the service's pools drop the dead connections. About 5 s
/// here; the bound leaves room for a loaded machine.
const WRITES_BACK_WITHIN: Duration = Duration::from_secs(20);
const BUYERS: usize = 6;

/// What the buyers saw: every answer, and what was acknowledged.
#[derive(Default)]
struct Journal {
    /// (sent, answered, status) of every answer, order and notification alike.
    answers: Vec<(Duration, Duration, StatusCode)>,
    /// 503s without Retry-After.
    unavailable_without_retry_after: usize,
    /// Orders answered 201: (id, quantity, when the answered request was sent).
    acknowledged: Vec<(String, i32, Duration)>,
    /// Orders whose settlement was answered 200.
    paid: Vec<String>,
}

/// POSTs until the answer is final, as a client following the contract
/// does: 503 after its Retry-After (capped at 1 s), a cut connection or a key
/// still in use again at once, with the same key; the rest is final.
async fn until_final(
    request: impl Fn() -> reqwest::RequestBuilder,
    journal: &Mutex<Journal>,
    started: Instant,
) -> (StatusCode, Value, Duration) {
    loop {
        let sent = started.elapsed();
        let Ok(answer) = request().timeout(Duration::from_secs(30)).send().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let status = answer.status();
        let retry_after = answer.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let body: Value = answer.json().await.unwrap_or_default();
        {
            let mut journal = journal.lock().unwrap();
            journal.answers.push((sent, started.elapsed(), status));
            if status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_none() {
                journal.unavailable_without_retry_after += 1;
            }
        }
        let in_use = status == StatusCode::CONFLICT && body.to_string().contains("IDEMPOTENCY_KEY_IN_USE");
        if status == StatusCode::SERVICE_UNAVAILABLE || in_use {
            let pause = Duration::from_secs(retry_after.unwrap_or(0)).min(Duration::from_secs(1));
            tokio::time::sleep(pause.max(Duration::from_millis(50))).await;
            continue;
        }
        return (status, body, sent);
    }
}

/// A sale on the cluster: three server processes, buyers ordering and
/// paying for [`SALE`], and `disrupt` run at [`DISRUPT_AT`]. Checks what
/// must hold whatever happened to the database: no answer but 503 among
/// the errors, each with Retry-After; every acknowledged order stored once
/// with its tickets; the buckets exact. Returns the journal and when the
/// disruption came.
async fn sale_through(cluster: &HaCluster, disrupt: impl AsyncFnOnce() -> ()) -> (Journal, Duration) {
    cluster.settled(Duration::from_secs(120)).await;
    let sim = Sim::start().await;
    let app = TestApp::builder().on_cluster(cluster).midtrans(&sim).spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let (event_id, category_id) = on_sale(&app, &organizer, 100_000, 4).await;
    let servers = Processes::start(3, &app.vars).await;
    // A customer per order: the per-customer limit is not the subject.
    let customers = Arc::new(Mutex::new(bulk_customers(&app.direct_url(), 5_000).await));
    let journal = Arc::new(Mutex::new(Journal::default()));
    let started = Instant::now();

    let buyers: Vec<_> = (0..BUYERS)
        .map(|buyer| {
            let (http, bases, customers, journal) =
                (app.http.clone(), servers.bases.clone(), customers.clone(), journal.clone());
            let (event_id, category_id) = (event_id.clone(), category_id.clone());
            let midtrans = app.vars["MIDTRANS_API_URL"].clone();
            tokio::spawn(async move {
                let mut n = buyer;
                while started.elapsed() < SALE {
                    n += BUYERS;
                    let base = &bases[n % bases.len()];
                    let customer = customers.lock().unwrap().pop().expect("customers enough");
                    let token = mint_token(customer, Role::Customer);
                    let (key, quantity) = (Uuid::now_v7().to_string(), 1 + (n % 2) as i32);
                    let body = order_body(&event_id, &category_id, quantity);
                    let (status, order, sent) =
                        until_final(|| order_request(&http, base, &token, &key, &body), &journal, started).await;
                    assert_eq!(status, StatusCode::CREATED, "{order}");
                    let order_id = order["id"].as_str().unwrap().to_owned();
                    journal.lock().unwrap().acknowledged.push((order_id.clone(), quantity, sent));
                    let settlement = notification(&order_id, "settlement", &format!("{}.00", 750_000 * quantity));
                    midtrans_knows(&midtrans, &settlement).await;
                    let webhook = format!("{base}/v1/payments/midtrans/notifications");
                    let (status, _, _) = until_final(|| http.post(&webhook).json(&settlement), &journal, started).await;
                    assert_eq!(status, StatusCode::OK);
                    journal.lock().unwrap().paid.push(order_id);
                }
            })
        })
        .collect();

    tokio::time::sleep(DISRUPT_AT.saturating_sub(started.elapsed())).await;
    let disrupted_at = started.elapsed();
    disrupt().await;
    for buyer in buyers {
        buyer.await.expect("every buyer's orders were answered");
    }

    let journal = std::mem::take(&mut *journal.lock().unwrap());
    let errors: Vec<_> = journal.answers.iter().filter(|(_, _, s)| s.is_server_error() && *s != 503).collect();
    assert!(errors.is_empty(), "answers other than 503 among the errors: {errors:?}");
    assert_eq!(journal.unavailable_without_retry_after, 0, "every 503 says when to retry");
    // Every acknowledged order exists, once; every paid one has its tickets.
    cluster.settled(Duration::from_secs(120)).await;
    let orders: i64 = query_one(&app.direct_url(), "SELECT count(*) FROM orders", &[]).await.unwrap();
    assert_eq!(orders, journal.acknowledged.len() as i64, "no order lost, none created twice");
    let tickets: i64 = query_one(&app.direct_url(), "SELECT count(*) FROM tickets", &[]).await.unwrap();
    let seats: i32 = journal.acknowledged.iter().map(|(_, quantity, _)| quantity).sum();
    assert_eq!(tickets, i64::from(seats), "every paid order has its tickets");
    assert_eq!(journal.paid.len(), journal.acknowledged.len());
    let (buckets, live) = held(&app, &category_id).await;
    assert_eq!(buckets, live, "the buckets hold what the orders hold");
    (journal, disrupted_at)
}

/// When writes were back after `at`: the first order sent after it and
/// acknowledged; and the 503s' count and window, for the log.
fn writes_back(journal: &Journal, at: Duration) -> Duration {
    let back = journal
        .answers
        .iter()
        .filter(|(sent, _, status)| *sent > at && *status == StatusCode::CREATED)
        .map(|(_, answered, _)| *answered - at)
        .min()
        .expect("orders were acknowledged after the disruption");
    let unavailable: Vec<_> = journal
        .answers
        .iter()
        .filter(|(_, _, s)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .map(|(_, at, _)| *at)
        .collect();
    let longest = journal.answers.iter().map(|(sent, answered, _)| *answered - *sent).max().unwrap_or_default();
    eprintln!(
        "{} orders acknowledged; {} answers 503, from {:?} to {:?} after the disruption; writes back {back:?} after \
         it; the longest answer took {longest:?}",
        journal.acknowledged.len(),
        unavailable.len(),
        unavailable.first().map(|u| u.saturating_sub(at)),
        unavailable.last().map(|u| u.saturating_sub(at)),
    );
    back
}

#[tokio::test]
async fn the_leader_killed_mid_sale_loses_no_acknowledged_order() {
    let cluster = HaCluster::up().await;
    let (leader, sync, _) = cluster.settled(Duration::from_secs(120)).await;
    let (journal, killed_at) = sale_through(&cluster, async || signal(cluster.postmaster_pid(leader), "-KILL")).await;
    let back = writes_back(&journal, killed_at);
    // For ci/bench-failover, which runs this test again and again.
    let unavailable = journal.answers.iter().filter(|(_, _, s)| *s == StatusCode::SERVICE_UNAVAILABLE).count();
    eprintln!(
        "FAILOVER writes_back_ms={} unavailable={unavailable} acknowledged={}",
        back.as_millis(),
        journal.acknowledged.len()
    );
    assert!(back <= WRITES_BACK_WITHIN, "writes back {back:?} after the kill");
    // The synchronous standby took over; the old leader came back as a replica (pg_rewind).
    let (now_leading, _, _) = cluster.settled(Duration::from_secs(120)).await;
    assert_eq!(now_leading, sync, "the synchronous standby leads");
    assert_ne!(cluster.role(leader).await, NodeRole::Leader);
}

/// The maintenance procedure (README): `patronictl switchover` to the
/// synchronous standby, under load; its error window is reported.
#[tokio::test]
async fn a_planned_switchover_under_load_loses_nothing() {
    let cluster = HaCluster::up().await;
    let (leader, sync, _) = cluster.settled(Duration::from_secs(120)).await;
    let (journal, switched_at) = sale_through(&cluster, async || cluster.switchover(leader, sync).await).await;
    let back = writes_back(&journal, switched_at);
    assert!(back <= WRITES_BACK_WITHIN, "writes back {back:?} after the switchover");
    let (now_leading, _, _) = cluster.settled(Duration::from_secs(120)).await;
    assert_eq!(now_leading, sync);
}

/// A leader cut off (its Patroni and Postgres frozen, as a partition would
/// leave it) loses its lock when the TTL runs out; the synchronous standby
/// takes over. Thawed, the old leader demotes itself and acknowledges no
/// write, even to a client connected straight to it: no split brain.
#[tokio::test]
async fn a_leader_cut_off_steps_down_and_acknowledges_no_write() {
    let cluster = HaCluster::up().await;
    let (leader, sync, _) = cluster.settled(Duration::from_secs(120)).await;
    let database = cluster.database().await;
    let direct = with_database(&cluster.node_url(leader), &database);
    // A session on the leader, opened before the partition.
    let (stranded, connection) = tokio_postgres::connect(&direct, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    stranded.batch_execute("CREATE TABLE marks (id text PRIMARY KEY)").await.unwrap();

    let frozen = cluster.freeze(leader);
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.node_in(NodeRole::Leader).await != Some(sync) {
        assert!(Instant::now() < deadline, "the synchronous standby never took over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The new leader takes writes, once HAProxy's checks have moved the
    // primary port to it (until then a connection is refused or closed, as
    // a client sees during any failover, and retried).
    let through_haproxy = with_database(&cluster.env["DATABASE_DIRECT_URL"], &database);
    loop {
        match tokio_postgres::connect(&through_haproxy, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client.batch_execute("INSERT INTO marks VALUES ('after')").await.unwrap();
                break;
            }
            Err(error) => {
                assert!(Instant::now() < deadline, "the primary port never reached the new leader: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    // Thawed: the stranded session writes at once, straight to the old leader.
    frozen.thaw();
    let stranded_write =
        tokio::time::timeout(Duration::from_secs(20), stranded.batch_execute("INSERT INTO marks VALUES ('stranded')"))
            .await;
    assert!(!matches!(stranded_write, Ok(Ok(()))), "the old leader acknowledged a write: split brain");
    let (now_leading, _, _) = cluster.settled(Duration::from_secs(120)).await;
    assert_eq!(now_leading, sync);
    assert_ne!(cluster.role(leader).await, NodeRole::Leader, "the old leader rejoined as a replica");
    let marks: Option<String> = query_one(&through_haproxy, "SELECT string_agg(id, ',') FROM marks", &[]).await;
    assert_eq!(marks.as_deref(), Some("after"), "only the new leader's write exists");
}
