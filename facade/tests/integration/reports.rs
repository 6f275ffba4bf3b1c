//! Sales reports: requested over REST, built by the worker from the replica
//! while a sale runs, and equal to what the database holds.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use reqwest::{Method, StatusCode};
use ticketing_domain::identity::Role;

use crate::helpers::{
    Sale, TestApp, Worker, eventually_within, execute, on_sale, order_body, order_request, query_one, query_value,
    sale, stack, statement_calls, uuid, with_database,
};

const PAID_ORDERS: usize = 25_000;
const TICKETS_PER_ORDER: usize = 4;

#[tokio::test]
async fn a_report_of_100000_tickets_is_built_during_a_sale_and_matches_the_database() {
    let app = TestApp::builder().var("WORKER_POLL_MS", "50").spawn().await;
    let Sale { organizer, customer, event: (reported, category) } = sale(&app, 10, 4).await;
    let (on_sale_now, hot_category) = on_sale(&app, &organizer, 100_000, 4).await;

    // 100,000 issued tickets (a tenth checked in), plus expired orders without any.
    let url = app.direct_url();
    let (event, category_id) = (uuid(&reported), uuid(&category));
    let (paid_orders, tickets_per_order) = (PAID_ORDERS as i32, TICKETS_PER_ORDER as i32);
    execute(
        &url,
        "INSERT INTO orders (id, user_id, event_id, status, currency_code, total_units, total_nanos,
                             idempotency_key, request_digest, expire_time)
         SELECT gen_random_uuid(), $1, $2, CASE WHEN g <= $3::int THEN 'paid' ELSE 'expired' END,
                'IDR', 3000000, 0, 'seed-' || g, 'seed', now()
           FROM generate_series(1, $3::int + 2000) AS g",
        &[&customer.id, &event, &paid_orders],
    )
    .await;
    execute(
        &url,
        "INSERT INTO order_items (order_id, ticket_category_id, quantity, unit_price_units, unit_price_nanos)
         SELECT id, $1, $2, 750000, 0 FROM orders WHERE event_id = $3",
        &[&category_id, &tickets_per_order, &event],
    )
    .await;
    execute(
        &url,
        "INSERT INTO tickets (id, order_id, event_id, ticket_category_id, code)
         SELECT gen_random_uuid(), o.id, o.event_id, $1, 'seed-' || o.id || '-' || n
           FROM orders o, generate_series(1, $2::int) AS n
          WHERE o.event_id = $3 AND o.status = 'paid'",
        &[&category_id, &tickets_per_order, &event],
    )
    .await;
    execute(
        &url,
        "INSERT INTO scanners (id, event_id, name, token_hash, created_by)
         VALUES (gen_random_uuid(), $1, 'seed', '\\x00', $2)",
        &[&event, &organizer.id],
    )
    .await;
    execute(
        &url,
        "INSERT INTO checkins (ticket_id, event_id, scanner_id, gate, scan_time)
         SELECT t.id, t.event_id, (SELECT id FROM scanners), 'Gate ' || (ascii(right(t.code, 1)) % 3), now()
           FROM tickets t WHERE t.code LIKE '%0-1'",
        &[],
    )
    .await;
    // The worker reads the replica: let it catch up with the seed first.
    let replica = with_database(&stack("DATABASE_REPLICA_DIRECT_URL"), &app.database);
    eventually_within(300, Duration::from_millis(50), || async {
        let tickets = query_value(&replica, "SELECT count(*) FROM tickets").await?;
        (tickets == (PAID_ORDERS * TICKETS_PER_ORDER).to_string()).then_some(())
    })
    .await;

    // A sale runs on another event the whole time.
    let selling = Arc::new(AtomicBool::new(true));
    let sold = Arc::new(AtomicUsize::new(0));
    let buyers: Vec<_> = (0..4)
        .map(|buyer| {
            let (app_url, http, token) = (app.url(""), app.http.clone(), customer.token.clone());
            let (selling, sold, body) = (selling.clone(), sold.clone(), order_body(&on_sale_now, &hot_category, 1));
            tokio::spawn(async move {
                let mut n = 0;
                while selling.load(Ordering::SeqCst) {
                    let response = order_request(&http, &app_url, &token, &format!("load-{buyer}-{n}"), &body)
                        .send()
                        .await
                        .expect("order sent");
                    assert_eq!(response.status(), StatusCode::CREATED);
                    sold.fetch_add(1, Ordering::SeqCst);
                    n += 1;
                }
            })
        })
        .collect();
    let _worker = Worker::start(app.state.clone());

    let path = format!("/v1/events/{reported}/reports");
    let created = app.rest(Method::POST, &path, Some(&organizer.token), None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["status"], "REPORT_STATUS_PENDING");
    let report_path = format!("{path}/{}", created.body["id"].as_str().unwrap());
    // Nobody else reads it: a customer, or another organizer.
    let stranger = app.user(Role::Organizer).await;
    for token in [&customer.token, &stranger.token] {
        assert_eq!(app.rest(Method::GET, &report_path, Some(token), None).await.status, StatusCode::NOT_FOUND);
    }

    let ready = eventually_within(600, Duration::from_millis(50), || async {
        let report = app.rest(Method::GET, &report_path, Some(&organizer.token), None).await;
        (report.body["status"] == "REPORT_STATUS_READY").then_some(report)
    })
    .await;
    selling.store(false, Ordering::SeqCst);
    for buyer in buyers {
        buyer.await.expect("the sale ran without errors");
    }
    assert!(sold.load(Ordering::SeqCst) > 0, "orders were placed while the report was built");

    let download = ready.body["downloadUrl"].as_str().unwrap();
    let csv = app.http.get(app.url(download)).bearer_auth(&organizer.token).send().await.unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let mut figures: HashMap<(String, String), String> = HashMap::new();
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        figures.insert((fields[0].to_owned(), fields[1].to_owned()), fields[3].to_owned());
    }
    // The event's figures as text, as the report has them.
    let database = |sql: &'static str| {
        let url = app.direct_url();
        async move { query_one::<String>(&url, sql, &[&event]).await.unwrap() }
    };
    assert_eq!(
        figures[&("tickets_issued".to_owned(), category.clone())],
        database("SELECT count(*)::text FROM tickets WHERE event_id = $1 AND status <> 'void'").await
    );
    assert_eq!(figures[&("tickets_issued".to_owned(), category.clone())], "100000");
    assert_eq!(
        figures[&("tickets_checked_in".to_owned(), category.clone())],
        database("SELECT count(*)::text FROM checkins WHERE event_id = $1").await
    );
    let per_gate: i64 = figures
        .iter()
        .filter(|((section, _), _)| section == "checkins_by_gate")
        .map(|(_, v)| v.parse::<i64>().unwrap())
        .sum();
    assert!(per_gate > 0, "check-ins per gate are reported");
    assert_eq!(per_gate.to_string(), figures[&("tickets_checked_in".to_owned(), category.clone())]);
    assert_eq!(
        figures[&("revenue".to_owned(), category.clone())],
        database(
            "SELECT sum(i.quantity * i.unit_price_units)::numeric(30, 2)::text FROM order_items i
               JOIN orders o ON o.id = i.order_id WHERE o.event_id = $1 AND o.status = 'paid'"
        )
        .await
    );
    for status in ["paid", "expired"] {
        let sql = "SELECT count(*)::text FROM orders WHERE event_id = $1 AND status = $2";
        assert_eq!(
            figures[&("orders".to_owned(), status.to_owned())],
            query_one::<String>(&app.direct_url(), sql, &[&event, &status]).await.unwrap()
        );
    }

    // Built from the replica: the figures' statement ran there, never on the primary.
    let figures_statement = ["%tickets_of_event AS (%"];
    let on_replica = statement_calls(&replica, &app.database, &figures_statement).await;
    let primary = with_database(&stack("DATABASE_DIRECT_URL"), &app.database);
    let on_primary = statement_calls(&primary, &app.database, &figures_statement).await;
    assert!(
        on_replica >= 1 && on_primary == 0,
        "the report's read: {on_replica} on the replica, {on_primary} on the primary"
    );
}
