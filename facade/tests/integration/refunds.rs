//! The organizer's bad day on the real stack: refunds through the Midtrans
//! simulator (or by hand where Midtrans cannot), an event cancelled after
//! its sales with the worker killed mid-way, and the audit trail.

use std::{collections::HashMap, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use ticketing_domain::identity::Role;
use uuid::Uuid;

use crate::helpers::{
    Processes, Sale, Sim, SmtpSink, TestApp, TestUser, Worker, deliver, eventually_within, held, notification,
    order_status, paid_order, pending_order, query_one, sale, scanner, uuid,
};

/// Up to ~30 s: the worker's polls, Midtrans's answers, the sweep's pace.
async fn waits_for<T, F, Fut>(check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(600, Duration::from_millis(50), check).await
}

async fn refund(app: &TestApp, token: &str, order_id: &str, key: &str, body: Value) -> crate::helpers::Response {
    let request = app
        .http
        .post(app.url(&format!("/v1/orders/{order_id}:refund")))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&body);
    app.raw(request).await
}

async fn refunds_of_event(app: &TestApp, token: &str, event_id: &str, status: &str) -> Vec<Value> {
    let path = format!("/v1/events/{event_id}/refunds?status={status}&pageSize=100");
    let listed = app.rest(Method::GET, &path, Some(token), None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    listed.body["refunds"].as_array().cloned().unwrap_or_default()
}

/// A refund as its organizer lists it, once it reached `status`.
async fn refund_reaching(app: &TestApp, token: &str, event_id: &str, refund_id: &str, status: &str) -> Value {
    waits_for(|| async {
        refunds_of_event(app, token, event_id, status).await.into_iter().find(|r| r["id"] == refund_id)
    })
    .await
}

/// The category's (capacity, available) as its organizer sees them.
async fn category_seats(app: &TestApp, organizer: &TestUser, event: &(String, String)) -> (i64, i64) {
    let read = app.rest(Method::GET, &format!("/v1/events/{}", event.0), Some(&organizer.token), None).await;
    let category = &read.body["ticketCategories"][0];
    (category["capacity"].as_i64().unwrap(), category["available"].as_i64().unwrap())
}

/// Seats the category's buckets hold.
async fn held_seats(app: &TestApp, category_id: &str) -> i64 {
    let sql = "SELECT coalesce(sum(held), 0) FROM inventory_buckets WHERE ticket_category_id = $1";
    query_one(&app.direct_url(), sql, &[&uuid(category_id)]).await.expect("a sum")
}

async fn scan(app: &TestApp, device_token: &str, code: &str) -> String {
    let request =
        app.http.post(app.url("/v1/checkins")).bearer_auth(device_token).json(&json!({ "code": code, "gate": "G" }));
    let scanned = app.raw(request).await;
    assert_eq!(scanned.status, StatusCode::OK, "{}", scanned.body);
    scanned.body["result"].as_str().unwrap().to_owned()
}

/// The scanner's manifest as REST streams it: (valid, void) ticket ids and its version.
async fn manifest(app: &TestApp, device_token: &str, event_id: &str, since: i64) -> (Vec<String>, Vec<String>, i64) {
    let url = app.url(&format!("/v1/events/{event_id}/checkinManifest?sinceVersion={since}"));
    let text = app.http.get(url).bearer_auth(device_token).send().await.unwrap().text().await.unwrap();
    let (mut valid, mut void, mut version) = (Vec::new(), Vec::new(), 0);
    for line in text.lines() {
        let chunk: Value = serde_json::from_str(line).unwrap();
        let ids = |field: &str| -> Vec<String> {
            chunk["result"][field].as_array().into_iter().flatten().map(|v| v.as_str().unwrap().to_owned()).collect()
        };
        valid.extend(ids("validTicketIds"));
        void.extend(ids("voidTicketIds"));
        version = chunk["result"]["version"].as_str().unwrap().parse().unwrap();
    }
    (valid, void, version)
}

#[tokio::test]
async fn an_organizer_refunds_tickets_once_each_and_never_more_than_was_paid() {
    let sim = Sim::with_webhook().await;
    let app = TestApp::builder().midtrans(&sim).spawn().await;
    let _worker = Worker::start(app.state.clone());
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let (order_id, tickets) = paid_order(&app, &customer, &event, 3, "qris").await;
    let (_, device) = scanner(&app, &organizer, &event.0, "Gate").await;
    let (_, _, version_before) = manifest(&app, &device, &event.0, 0).await;
    assert_eq!(held_seats(&app, &event.1).await, 3);

    // One ticket: 201 PENDING for what was paid for it; its seat is back on sale.
    let body = json!({ "ticketIds": [tickets[0].0], "reason": "Seat 14 has no view" });
    let first = refund(&app, &organizer.token, &order_id, "refund-1", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["status"], "REFUND_STATUS_PENDING");
    assert_eq!(first.body["amount"]["units"], "750000");
    assert_eq!(first.body["ticketIds"], json!([tickets[0].0]));
    assert_eq!(first.body["cause"], "REFUND_CAUSE_ORGANIZER");
    let refund_id = first.body["id"].as_str().unwrap().to_owned();
    assert_eq!(held_seats(&app, &event.1).await, 2, "the refunded seat is on sale again");
    assert_eq!(category_seats(&app, &organizer, &event).await, (10, 8));
    let (buckets, live) = held(&app, &event.1).await;
    assert_eq!(buckets, live, "the inventory holds exactly the live tickets");
    assert_eq!(order_status(&app, &order_id).await, "paid", "two tickets are still valid");

    // The same request again creates nothing; the same key for another request is refused.
    let again = refund(&app, &organizer.token, &order_id, "refund-1", body).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["id"], refund_id);
    let other = json!({ "ticketIds": [tickets[1].0], "reason": "Seat 14 has no view" });
    let reused = refund(&app, &organizer.token, &order_id, "refund-1", other).await;
    assert_eq!(reused.error_reason(422, "FAILED_PRECONDITION"), "IDEMPOTENCY_KEY_REUSED");
    // A ticket refunded already is not refunded again.
    let twice = json!({ "ticketIds": [tickets[1].0, tickets[0].0], "reason": "again" });
    let refused = refund(&app, &organizer.token, &order_id, "refund-2", twice).await;
    assert_eq!(refused.error_reason(400, "FAILED_PRECONDITION"), "ALREADY_REFUNDED");
    assert_eq!(refused.body["error"]["details"][0]["metadata"]["ticketId"], tickets[0].0);

    // Void at once, online and in the manifest's next delta.
    assert_eq!(scan(&app, &device, &tickets[0].1).await, "REDEEM_RESULT_VOID");
    let (_, void, _) = manifest(&app, &device, &event.0, version_before).await;
    assert_eq!(void, vec![tickets[0].0.clone()]);

    // The worker asks Midtrans with the refund's id as its key, for that part.
    let done = refund_reaching(&app, &organizer.token, &event.0, &refund_id, "SUCCEEDED").await;
    assert_eq!(done["status"], "REFUND_STATUS_SUCCEEDED");
    let at_midtrans = sim.transaction(&order_id).await;
    assert_eq!(at_midtrans["status"], "partial_refund");
    assert_eq!(at_midtrans["refunds"].as_array().unwrap().len(), 1);
    assert_eq!(at_midtrans["refunds"][0]["refund_key"], refund_id);
    assert_eq!(at_midtrans["refunds"][0]["refund_amount"], 750_000);

    // The rest of the order, kept off sale: the order is REFUNDED, the seats stay taken.
    let rest = json!({ "reason": "The buyer cannot come", "returnToSale": false });
    let second = refund(&app, &organizer.token, &order_id, "refund-3", rest).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    assert_eq!(second.body["amount"]["units"], "1500000");
    assert_eq!(second.body["ticketIds"].as_array().unwrap().len(), 2);
    assert_eq!(order_status(&app, &order_id).await, "refunded");
    assert_eq!(held_seats(&app, &event.1).await, 0);
    assert_eq!(category_seats(&app, &organizer, &event).await, (10, 8), "kept off sale: none came back");
    let (buckets, live) = held(&app, &event.1).await;
    assert_eq!(buckets, live);
    let nothing_left = refund(&app, &organizer.token, &order_id, "refund-4", json!({ "reason": "again" })).await;
    assert_eq!(nothing_left.error_reason(400, "FAILED_PRECONDITION"), "ALREADY_REFUNDED");
    let second_id = second.body["id"].as_str().unwrap();
    refund_reaching(&app, &organizer.token, &event.0, second_id, "SUCCEEDED").await;
    assert_eq!(sim.transaction(&order_id).await["status"], "refund");
    let payment = waits_for(|| async {
        let sql = "SELECT status FROM payments WHERE order_id = $1";
        let status: Option<String> = query_one(&app.direct_url(), sql, &[&uuid(&order_id)]).await;
        status.filter(|s| s == "refunded")
    })
    .await;
    assert_eq!(payment, "refunded");

    // The database itself refuses more than was paid, and a ticket refunded twice.
    let url = app.direct_url();
    let client = connect(&url).await;
    let over = client
        .execute("UPDATE orders SET refunded_units = total_units + 1 WHERE id = $1", &[&uuid(&order_id)])
        .await
        .unwrap_err();
    assert!(over.to_string().contains("orders_refunds_within_total") || format!("{over:?}").contains("23514"));
    let again = client
        .execute(
            "INSERT INTO refunded_tickets (ticket_id, refund_id) VALUES ($1, $2)",
            &[&uuid(&tickets[0].0), &uuid(second_id)],
        )
        .await;
    assert!(again.is_err(), "a ticket has at most one refund");

    // Both requests are in the event's audit trail.
    let trail =
        app.rest(Method::GET, &format!("/v1/events/{}/auditEntries", event.0), Some(&organizer.token), None).await;
    let requested: Vec<&Value> = trail.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "AUDIT_ACTION_REFUND_REQUESTED")
        .collect();
    assert_eq!(requested.len(), 2);
    assert_eq!(requested[0]["actorId"], organizer.id.to_string());
    assert_eq!(requested[0]["subjectId"], refund_id);
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("database");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn a_virtual_account_refund_goes_to_a_person_who_closes_it() {
    let sim = Sim::with_webhook().await;
    let smtp = SmtpSink::start().await;
    let app = TestApp::builder().midtrans(&sim).var("SMTP_URL", smtp.url()).spawn().await;
    let _worker = Worker::start(app.state.clone());
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let (order_id, _) = paid_order(&app, &customer, &event, 2, "bank_transfer").await;

    let asked = refund(&app, &organizer.token, &order_id, "va-1", json!({ "reason": "Show moved" })).await;
    assert_eq!(asked.status, StatusCode::CREATED, "{}", asked.body);
    assert_eq!(asked.body["status"], "REFUND_STATUS_MANUAL_REQUIRED", "Midtrans cannot refund a VA by API");
    let refund_id = asked.body["id"].as_str().unwrap().to_owned();
    assert_eq!(order_status(&app, &order_id).await, "refunded");

    // The buyer is told; no refund job exists, and Midtrans was never asked.
    let told = waits_for(|| async {
        let mails = smtp.messages();
        mails.iter().any(|m| m.contains(&format!("refund-{refund_id}-manual_required"))).then_some(mails)
    })
    .await;
    assert!(told.iter().any(|m| m.contains(&customer.email)));
    let jobs: i64 = query_one(
        &app.direct_url(),
        "SELECT count(*) FROM outbox WHERE kind = 'refund' AND payload ->> 'refund_id' = $1",
        &[&refund_id],
    )
    .await
    .unwrap();
    assert_eq!(jobs, 0);
    assert!(sim.transaction(&order_id).await["refunds"].as_array().unwrap().is_empty());

    // Listed for the organizer by status, and closed by a person with the bank's reference.
    let manual = refunds_of_event(&app, &organizer.token, &event.0, "MANUAL_REQUIRED").await;
    assert_eq!(manual.len(), 1);
    assert_eq!(manual[0]["id"], refund_id);
    assert!(refunds_of_event(&app, &organizer.token, &event.0, "REFUND_STATUS_SUCCEEDED").await.is_empty());
    let path = format!("/v1/refunds/{refund_id}:complete");
    let bad = app.rest(Method::POST, &path, Some(&organizer.token), Some(json!({ "reference": "BCA\n123" }))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let closed =
        app.rest(Method::POST, &path, Some(&organizer.token), Some(json!({ "reference": "BCA 0012345" }))).await;
    assert_eq!(closed.status, StatusCode::OK, "{}", closed.body);
    assert_eq!(closed.body["status"], "REFUND_STATUS_SUCCEEDED");
    assert_eq!(closed.body["manualReference"], "BCA 0012345");
    assert_eq!(closed.body["completedBy"], organizer.id.to_string());
    assert!(closed.body["completeTime"].is_string());
    let twice =
        app.rest(Method::POST, &path, Some(&organizer.token), Some(json!({ "reference": "BCA 0012345" }))).await;
    assert_eq!(twice.error_reason(400, "FAILED_PRECONDITION"), "REFUND_NOT_MANUAL");
    waits_for(|| async {
        smtp.messages().iter().any(|m| m.contains(&format!("refund-{refund_id}-succeeded"))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_refund_midtrans_refuses_is_left_to_a_person_with_midtrans_answer() {
    let sim = Sim::with_webhook().await;
    let app = TestApp::builder().midtrans(&sim).spawn().await;
    let _worker = Worker::start(app.state.clone());
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    // We were told QRIS; Midtrans knows it as a bank transfer, which it refunds only by hand.
    let (order_id, _) = paid_order(&app, &customer, &event, 1, "qris").await;
    let truth = json!({ "status": "settlement", "gross_amount": 750_000, "payment_type": "bank_transfer" });
    let put = app.http.put(format!("{}/_sim/transactions/{order_id}", sim.url)).json(&truth).send().await.unwrap();
    assert!(put.status().is_success());

    let asked = refund(&app, &organizer.token, &order_id, "r-1", json!({ "reason": "Show moved" })).await;
    assert_eq!(asked.body["status"], "REFUND_STATUS_PENDING");
    let refund_id = asked.body["id"].as_str().unwrap();
    let manual = refund_reaching(&app, &organizer.token, &event.0, refund_id, "MANUAL_REQUIRED").await;
    assert!(manual["lastError"].as_str().unwrap().contains("412"), "{manual}");
    assert!(sim.transaction(&order_id).await["refunds"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn only_the_events_organizer_or_an_admin_may_refund_or_complete() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let (order_id, _) = paid_order(&app, &customer, &event, 2, "bank_transfer").await;
    let other_organizer = app.user(Role::Organizer).await;
    let other_customer = app.user(Role::Customer).await;
    let admin = app.user(Role::Admin).await;
    let body = json!({ "reason": "Show moved" });

    let buyer = refund(&app, &customer.token, &order_id, "k", body.clone()).await;
    assert_eq!(buyer.error_reason(403, "PERMISSION_DENIED"), "PERMISSION_DENIED", "the buyer sees but cannot refund");
    for stranger in [&other_organizer, &other_customer] {
        let refused = refund(&app, &stranger.token, &order_id, "k", body.clone()).await;
        assert_eq!(refused.error_reason(404, "NOT_FOUND"), "NOT_FOUND");
    }
    let listed =
        app.rest(Method::GET, &format!("/v1/events/{}/refunds", event.0), Some(&other_organizer.token), None).await;
    assert_eq!(listed.status, StatusCode::NOT_FOUND);
    assert_eq!(query_one::<i64>(&app.direct_url(), "SELECT count(*) FROM refunds", &[]).await, Some(0));

    let by_admin = refund(&app, &admin.token, &order_id, "k", body).await;
    assert_eq!(by_admin.status, StatusCode::CREATED, "{}", by_admin.body);
    let refund_id = by_admin.body["id"].as_str().unwrap();
    let path = format!("/v1/refunds/{refund_id}:complete");
    let reference = json!({ "reference": "BCA 1" });
    for stranger in [&other_organizer, &customer] {
        let refused = app.rest(Method::POST, &path, Some(&stranger.token), Some(reference.clone())).await;
        assert_eq!(refused.error_reason(404, "NOT_FOUND"), "NOT_FOUND");
    }
    let closed = app.rest(Method::POST, &path, Some(&organizer.token), Some(reference)).await;
    assert_eq!(closed.status, StatusCode::OK, "{}", closed.body);
    // Not an order of a paid event's: a pending order is not refunded, it is cancelled.
    let pending = pending_order(&app, &customer, &event, 1).await;
    let unpaid = refund(&app, &organizer.token, &pending, "k2", json!({ "reason": "x" })).await;
    assert_eq!(unpaid.error_reason(400, "FAILED_PRECONDITION"), "ORDER_NOT_PAID");
}

/// Paid orders for the cancellation test, seeded through the real order
/// and webhook paths; every tenth paid by bank transfer.
async fn paid_orders(app: &TestApp, event: &(String, String), customers: &[TestUser], count: usize) -> Vec<String> {
    let mut orders = Vec::new();
    for (n, customer) in customers.iter().cycle().take(count).enumerate() {
        let method = if n % 10 == 9 { "bank_transfer" } else { "qris" };
        orders.push(paid_order(app, customer, event, 1, method).await.0);
    }
    orders
}

/// Paid orders a cancellation refunds (`CANCELLATION_TEST_ORDERS` changes it).
fn cancellation_orders() -> usize {
    std::env::var("CANCELLATION_TEST_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000)
}

#[tokio::test]
async fn cancelling_an_event_refunds_every_paid_order_once_through_a_killed_worker() {
    const PACE: i64 = 200;
    let paid_count = cancellation_orders();
    let sim = Sim::with_webhook().await;
    let smtp = SmtpSink::start().await;
    let app = TestApp::builder()
        .midtrans(&sim)
        .var("SMTP_URL", smtp.url())
        .var("CANCELLATION_REFUNDS_PER_SECOND", PACE.to_string())
        // Jobs the killed worker had claimed come back this soon.
        .var("OUTBOX_LEASE_MS", "2000")
        .spawn()
        .await;
    let organizer = app.user(Role::Organizer).await;
    let event = crate::helpers::on_sale(&app, &organizer, 10_000, 4).await;
    let mut customers = Vec::new();
    for _ in 0..10 {
        customers.push(app.user(Role::Customer).await);
    }
    let paid = paid_orders(&app, &event, &customers, paid_count).await;
    let mut pending = Vec::new();
    for customer in customers.iter().cycle().take(50) {
        pending.push(pending_order(&app, customer, &event, 1).await);
    }
    // One pending order has a Snap transaction that settles after the cancellation.
    let late = pending[0].clone();
    let (_, device) = scanner(&app, &organizer, &event.0, "Gate").await;
    let code =
        query_one::<String>(&app.direct_url(), "SELECT code FROM tickets WHERE order_id = $1", &[&uuid(&paid[0])])
            .await
            .unwrap();

    let cancelled =
        app.rest(Method::POST, &format!("/v1/events/{}:cancel", event.0), Some(&organizer.token), None).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(scan(&app, &device, &code).await, "REDEEM_RESULT_VOID", "scanners turn every ticket away at once");
    let public = app.rest(Method::GET, &format!("/v1/events/{}", event.0), None, None).await;
    assert_eq!(public.body["status"], "EVENT_STATUS_CANCELLED", "the public page says cancelled");

    // The sweep runs in a real worker process, killed mid-way and restarted.
    let mut vars: HashMap<String, String> = app.vars.clone();
    vars.insert("SMTP_URL".into(), smtp.url());
    let mut workers = Processes::start_workers(1, &vars).await;
    let refunds_made = || async {
        query_one::<i64>(&app.direct_url(), "SELECT count(*) FROM refunds WHERE cause = 'event_cancelled'", &[])
            .await
            .unwrap()
    };
    let third = (paid_count / 3) as i64;
    waits_for(|| async { (refunds_made().await >= third).then_some(()) }).await;
    workers.kill(0);
    let at_kill = refunds_made().await;
    assert!(at_kill < paid_count as i64, "killed mid-way: {at_kill} of {paid_count}");
    let mut late_settlement = notification(&late, "settlement", "750000.00");
    late_settlement["payment_type"] = "qris".into();
    let settled = deliver(&app, &late_settlement).await;
    assert_eq!(settled.status, StatusCode::OK, "{}", settled.body);
    workers.restart(0).await;

    // Every paid order refunded exactly once; every pending one cancelled; the late payment refunded.
    let progress = waits_for(|| async {
        let event = app.rest(Method::GET, &format!("/v1/events/{}", event.0), Some(&organizer.token), None).await;
        let c = event.body["cancellation"].clone();
        let finished = c["refunded"].as_i64().unwrap_or(0) + c["manualRequired"].as_i64().unwrap_or(0)
            == c["ordersToRefund"].as_i64().unwrap_or(-1);
        (finished && c["ordersToRefund"].as_i64() == Some(paid_count as i64 + 1)).then_some(c)
    })
    .await;
    let manual = (paid_count / 10) as i64;
    assert_eq!(progress["manualRequired"].as_i64().unwrap_or(0), manual, "{progress}");
    assert_eq!(progress["failed"].as_i64().unwrap_or(0), 0);
    let per_order: Vec<(Uuid, i64)> = {
        let client = connect(&app.direct_url()).await;
        let rows = client
            .query(
                "SELECT o.id, count(r.id) FROM orders o LEFT JOIN refunds r ON r.order_id = o.id \
                 WHERE o.event_id = $1 GROUP BY o.id",
                &[&uuid(&event.0)],
            )
            .await
            .unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    for order in &paid {
        let count = per_order.iter().find(|(id, _)| *id == uuid(order)).unwrap().1;
        assert_eq!(count, 1, "order {order} refunded {count} times");
        assert_eq!(order_status(&app, order).await, "refunded");
    }
    for order in &pending[1..] {
        assert_eq!(order_status(&app, order).await, "cancelled");
    }
    let late_refunds: Vec<(String,)> = {
        let client = connect(&app.direct_url()).await;
        let rows = client.query("SELECT cause FROM refunds WHERE order_id = $1", &[&uuid(&late)]).await.unwrap();
        rows.iter().map(|r| (r.get(0),)).collect()
    };
    assert_eq!(late_refunds, vec![("unkept_payment".to_owned(),)], "the late payment is refunded once");
    let (buckets, live) = held(&app, &event.1).await;
    assert_eq!((buckets, live), (0, 0), "nothing held for a cancelled event");
    let mut api_refunded = 0;
    for order in &paid {
        let refunds = sim.transaction(order).await["refunds"].as_array().map_or(0, Vec::len);
        assert!(refunds <= 1, "Midtrans refunded order {order} {refunds} times");
        api_refunded += refunds;
    }
    assert_eq!(api_refunded as i64, paid_count as i64 - manual, "each QRIS order refunded through Midtrans once");

    // The pace: never more than a second's credit plus a second's worth in any second.
    let busiest: i64 = query_one(
        &app.direct_url(),
        "SELECT max(n) FROM (SELECT count(*) OVER (ORDER BY created_at RANGE BETWEEN CURRENT ROW AND '1 second' FOLLOWING) AS n \
         FROM refunds WHERE cause = 'event_cancelled') AS windows",
        &[],
    )
    .await
    .unwrap();
    assert!(busiest <= 2 * PACE + 1, "{busiest} refunds in one second at a pace of {PACE}/s");

    // One e-mail per refund and step: the request, and Midtrans's answer or the manual notice.
    let expected = waits_for(|| async {
        let ids = notice_ids(&smtp.messages());
        let want = 2 * (paid_count as i64 - manual) + manual + 2;
        (ids.len() as i64 >= want).then_some((ids, want))
    })
    .await;
    let (ids, want) = expected;
    assert_eq!(ids.len() as i64, want, "distinct notices");
    let deliveries = smtp.messages().iter().filter(|m| m.contains("Message-ID: <refund-")).count();
    // A notice sent just before the kill may be sent again (at-least-once), with the same Message-ID.
    assert!(deliveries as i64 - want <= 50, "{deliveries} deliveries of {want} notices");
    drop(workers);
}

/// The distinct refund notices among `messages` (their Message-IDs).
fn notice_ids(messages: &[String]) -> std::collections::HashSet<String> {
    messages
        .iter()
        .filter_map(|m| m.lines().find_map(|l| l.strip_prefix("Message-ID: <refund-").map(str::to_owned)))
        .collect()
}

#[tokio::test]
async fn the_audit_trail_records_changes_to_access_and_cannot_be_rewritten() {
    let app = TestApp::spawn().await;
    let Sale { organizer, event, .. } = sale(&app, 10, 4).await;
    let renamed = app
        .rest(
            Method::PATCH,
            &format!("/v1/events/{}", event.0),
            Some(&organizer.token),
            Some(json!({ "name": "Renamed" })),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    let (scanner_id, _) = scanner(&app, &organizer, &event.0, "North").await;
    let path = format!("/v1/events/{}/scanners/{scanner_id}:revoke", event.0);
    assert_eq!(app.rest(Method::POST, &path, Some(&organizer.token), None).await.status, StatusCode::OK);

    let trail =
        app.rest(Method::GET, &format!("/v1/events/{}/auditEntries", event.0), Some(&organizer.token), None).await;
    assert_eq!(trail.status, StatusCode::OK, "{}", trail.body);
    let actions: Vec<&str> =
        trail.body["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "AUDIT_ACTION_CATEGORY_CREATED",
            "AUDIT_ACTION_EVENT_PUBLISHED",
            "AUDIT_ACTION_EVENT_UPDATED",
            "AUDIT_ACTION_SCANNER_CREATED",
            "AUDIT_ACTION_SCANNER_REVOKED",
        ]
    );
    let update = &trail.body["entries"][2];
    let before: Value = serde_json::from_str(update["before"].as_str().unwrap()).unwrap();
    let after: Value = serde_json::from_str(update["after"].as_str().unwrap()).unwrap();
    assert_eq!((before["name"].as_str(), after["name"].as_str()), (Some("Flash sale"), Some("Renamed")));
    assert_eq!(update["actorId"], organizer.id.to_string());
    let stranger = app.user(Role::Organizer).await;
    let hidden =
        app.rest(Method::GET, &format!("/v1/events/{}/auditEntries", event.0), Some(&stranger.token), None).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);

    // Append-only in the database itself.
    let client = connect(&app.direct_url()).await;
    assert!(client.execute("UPDATE audit_log SET action = 'event.updated'", &[]).await.is_err());
    assert!(client.execute("DELETE FROM audit_log", &[]).await.is_err());
    let kept: i64 = client.query_one("SELECT count(*) FROM audit_log", &[]).await.unwrap().get(0);
    assert_eq!(kept, 5);
}

#[tokio::test]
async fn a_sold_out_category_refunded_whole_and_kept_off_sale_stays_sold_out() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 4, 4).await;
    let (order_id, _) = paid_order(&app, &customer, &event, 4, "bank_transfer").await;
    let body = json!({ "reason": "The block is closed", "returnToSale": false });
    let refunded = refund(&app, &organizer.token, &order_id, "off-sale", body).await;
    assert_eq!(refunded.status, StatusCode::CREATED, "{}", refunded.body);
    assert_eq!(category_seats(&app, &organizer, &event).await, (4, 0), "nothing came back on sale");
    let (buckets, live) = held(&app, &event.1).await;
    assert_eq!((buckets, live), (0, 0));
}

/// An SMTP server that accepts connections and never says a word.
async fn silent_smtp() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (url, task)
}

#[tokio::test]
async fn a_mail_server_that_stops_answering_holds_up_no_refund() {
    let sim = Sim::with_webhook().await;
    let (smtp, _silent) = silent_smtp().await;
    let app = TestApp::builder().midtrans(&sim).var("SMTP_URL", smtp).spawn().await;
    let _worker = Worker::start(app.state.clone());
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    // Its confirmation e-mail takes the worker to the silent server first.
    let (order_id, _) = paid_order(&app, &customer, &event, 1, "qris").await;
    waits_for(|| async {
        let sql = "SELECT count(*) FROM outbox WHERE kind = 'order_confirmation' AND attempts > 0";
        (query_one::<i64>(&app.direct_url(), sql, &[]).await == Some(1)).then_some(())
    })
    .await;

    let asked = refund(&app, &organizer.token, &order_id, "r", json!({ "reason": "Show moved" })).await;
    assert_eq!(asked.status, StatusCode::CREATED, "{}", asked.body);
    let refund_id = asked.body["id"].as_str().unwrap();
    refund_reaching(&app, &organizer.token, &event.0, refund_id, "SUCCEEDED").await;
    let stuck: Option<String> =
        query_one(&app.direct_url(), "SELECT last_error FROM outbox WHERE kind = 'order_confirmation'", &[]).await;
    assert!(stuck.is_some_and(|e| e.contains("no answer")), "the e-mail failed by its deadline and waits for a retry");
}
