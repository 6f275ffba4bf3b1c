//! Payments end to end: the server, the Midtrans simulator, the worker and a
//! real SMTP server; notifications raced over several replicas.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use ticketing_domain::{identity::Role, ticket_code};

use crate::helpers::{
    Processes, Sale, Sim, SmtpSink, Table, TestApp, TestUser, Worker, deliver, eventually_within, execute, held,
    midtrans_knows, notification, on_sale, order_body, order_request, order_status, pending_order, query_one,
    query_value, sale, uuid,
};

/// Up to ~15 s: long enough for the worker's polls and retries.
async fn waits_for<T, F, Fut>(check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(300, Duration::from_millis(50), check).await
}

async fn create_payment(app: &TestApp, customer: &TestUser, order_id: &str) -> crate::helpers::Response {
    app.rest(Method::POST, &format!("/v1/orders/{order_id}/payments"), Some(&customer.token), None).await
}

async fn payment_status(app: &TestApp, order_id: &str) -> Option<String> {
    query_one(&app.direct_url(), "SELECT status FROM payments WHERE order_id = $1", &[&uuid(order_id)]).await
}

async fn tickets_of(app: &TestApp, order_id: &str) -> i64 {
    let sql = "SELECT count(*) FROM tickets WHERE order_id = $1";
    query_one(&app.direct_url(), sql, &[&uuid(order_id)]).await.expect("a count")
}

async fn scalar(app: &TestApp, sql: &'static str) -> i64 {
    query_value(&app.direct_url(), sql).await.unwrap().parse().unwrap()
}

fn hex_key(hex: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    bytes.try_into().expect("32-byte key")
}

#[tokio::test]
async fn a_paid_order_gets_verifiable_tickets_and_a_confirmation_email() {
    let sim = Sim::with_webhook().await;
    let smtp = SmtpSink::start().await;
    let app = TestApp::builder().midtrans(&sim).var("SMTP_URL", smtp.url()).spawn().await;
    let _worker = Worker::start(app.state.clone());
    let Sale { customer, event, .. } = sale(&app, 10, 4).await;
    let order_id = pending_order(&app, &customer, &event, 2).await;

    let payment = create_payment(&app, &customer, &order_id).await;
    assert_eq!(payment.status, StatusCode::CREATED, "{}", payment.body);
    assert_eq!(payment.body["provider"], "midtrans");
    assert!(!payment.body["token"].as_str().unwrap().is_empty());
    assert!(payment.body["redirectUrl"].as_str().unwrap().starts_with(&sim.url));
    let again = create_payment(&app, &customer, &order_id).await;
    assert_eq!(again.body["paymentId"], payment.body["paymentId"], "one payment per order");
    assert_eq!(again.body["token"], payment.body["token"], "one Snap transaction per order");
    let transaction = sim.transaction(&order_id).await;
    assert_eq!(transaction["gross_amount"], 1_500_000, "priced from the order");
    assert_eq!(transaction["idempotency_key"], order_id.as_str());

    // Someone else's order is not theirs to pay.
    let stranger = app.user(Role::Customer).await;
    let refused = create_payment(&app, &stranger, &order_id).await;
    assert_eq!(refused.error_reason(404, "NOT_FOUND"), "NOT_FOUND");

    sim.admin(&format!("/_sim/transactions/{order_id}/settle"), json!({})).await;
    waits_for(|| async { (order_status(&app, &order_id).await == "paid").then_some(()) }).await;

    let payment_id = payment.body["paymentId"].as_str().unwrap();
    let read = app
        .rest(Method::GET, &format!("/v1/orders/{order_id}/payments/{payment_id}"), Some(&customer.token), None)
        .await;
    assert_eq!(read.body["status"], "PAYMENT_STATUS_PAID", "{}", read.body);

    let tickets = app.rest(Method::GET, &format!("/v1/orders/{order_id}/tickets"), Some(&customer.token), None).await;
    let tickets = tickets.body["tickets"].as_array().unwrap().clone();
    assert_eq!(tickets.len(), 2, "one ticket per seat");
    let public_key: String = query_one(
        &app.direct_url(),
        "SELECT encode(public_key, 'hex') FROM event_signing_keys WHERE event_id = $1",
        &[&uuid(&event.0)],
    )
    .await
    .unwrap();
    for ticket in &tickets {
        let code = ticket["code"].as_str().unwrap();
        let claims = ticket_code::verify(code, &hex_key(&public_key)).expect("the code verifies offline");
        assert_eq!(claims.ticket_id.to_string(), ticket["id"].as_str().unwrap());
        assert_eq!(claims.event_id.to_string(), event.0);
    }

    let mail = waits_for(|| async { smtp.messages().into_iter().find(|m| m.contains(&order_id)) }).await;
    assert!(mail.contains(&customer.email), "addressed to the buyer");
    // Long lines travel quoted-printable: undo its soft line breaks.
    let mail = mail.replace("=\r\n", "").replace("=\n", "");
    for ticket in &tickets {
        assert!(mail.contains(ticket["code"].as_str().unwrap()), "the e-mail carries every code");
    }
}

#[tokio::test]
async fn forged_mismatched_unknown_and_malformed_notifications_change_nothing() {
    let app = TestApp::spawn().await;
    let Sale { customer, event, .. } = sale(&app, 10, 4).await;
    let order_id = pending_order(&app, &customer, &event, 1).await;
    let webhook = app.url("/v1/payments/midtrans/notifications");
    let post = |body: Value| app.raw(app.http.post(&webhook).json(&body));

    let mut forged = notification(&order_id, "settlement", "750000.00");
    forged["signature_key"] = json!(crate::helpers::signature(&order_id, "200", "750000.00", "guessed-key"));
    assert_eq!(post(forged).await.error_reason(401, "UNAUTHENTICATED"), "INVALID_SIGNATURE");
    let mut altered = notification(&order_id, "settlement", "750000.00");
    altered["gross_amount"] = json!("1.00");
    assert_eq!(post(altered).await.error_reason(401, "UNAUTHENTICATED"), "INVALID_SIGNATURE");

    // Correctly signed, but not what the order costs (and Midtrans agrees).
    let cheap = notification(&order_id, "settlement", "1000.00");
    midtrans_knows(&app.vars["MIDTRANS_API_URL"], &cheap).await;
    let cheap = post(cheap).await;
    assert_eq!(cheap.error_reason(400, "INVALID_ARGUMENT"), "AMOUNT_MISMATCH");
    let unknown = post(notification(&uuid::Uuid::now_v7().to_string(), "settlement", "750000.00")).await;
    assert_eq!(unknown.error_reason(404, "NOT_FOUND"), "NOT_FOUND");
    let not_json =
        app.raw(app.http.post(&webhook).header("content-type", "application/json").body("{\"order_id\":")).await;
    assert_eq!(not_json.error_reason(400, "INVALID_ARGUMENT"), "INVALID_ARGUMENT");
    let missing = post(json!({ "order_id": order_id, "transaction_status": "settlement" })).await;
    assert_eq!(missing.error_reason(400, "INVALID_ARGUMENT"), "INVALID_ARGUMENT");

    assert_eq!(order_status(&app, &order_id).await, "pending");
    assert_eq!(app.count(Table::Tickets).await, 0);
    assert_eq!(app.count(Table::Outbox).await, 0);
    assert_eq!(app.count(Table::Payments).await, 0);
    // Only verified notifications are kept (the two refused ones); forgeries write nothing.
    let kept =
        query_value(&app.direct_url(), "SELECT string_agg(outcome, ',' ORDER BY outcome) FROM payment_notifications")
            .await
            .unwrap();
    assert_eq!(kept, "amount_mismatch,unknown_order");
}

#[tokio::test]
async fn one_settlement_delivered_twenty_times_to_three_replicas_pays_once() {
    let smtp = SmtpSink::start().await;
    let app = TestApp::builder().var("SMTP_URL", smtp.url()).var("WORKER_POLL_MS", "50").spawn().await;
    let Sale { customer, event, .. } = sale(&app, 10, 4).await;
    let order_id = pending_order(&app, &customer, &event, 3).await;
    let replicas = Processes::start(3, &app.vars).await;
    let _worker = Worker::start(app.state.clone());

    let body = notification(&order_id, "settlement", "2250000.00");
    midtrans_knows(&app.vars["MIDTRANS_API_URL"], &body).await;
    let deliveries = (0..20).map(|n| {
        let url = format!("{}/v1/payments/midtrans/notifications", replicas.bases[n % 3]);
        let (http, body) = (app.http.clone(), body.clone());
        tokio::spawn(async move { http.post(url).json(&body).send().await.expect("delivered").status() })
    });
    for delivery in futures::future::join_all(deliveries).await {
        assert_eq!(delivery.unwrap(), StatusCode::OK, "every copy is acknowledged");
    }

    assert_eq!(order_status(&app, &order_id).await, "paid");
    assert_eq!(tickets_of(&app, &order_id).await, 3);
    assert_eq!(scalar(&app, "SELECT count(*) FROM outbox WHERE kind = 'order_confirmation'").await, 1);
    assert_eq!(scalar(&app, "SELECT count(*) FROM payment_notifications").await, 20, "every copy is stored");
    assert_eq!(scalar(&app, "SELECT count(*) FROM payment_notifications WHERE outcome = 'paid'").await, 1);

    // A late `pending` (delivered out of order) moves nothing backwards,
    // even were Midtrans to say so too.
    let pending = notification(&order_id, "pending", "2250000.00");
    midtrans_knows(&app.vars["MIDTRANS_API_URL"], &pending).await;
    let late =
        app.raw(app.http.post(format!("{}/v1/payments/midtrans/notifications", replicas.bases[1])).json(&pending));
    assert_eq!(late.await.status, StatusCode::OK);
    assert_eq!(order_status(&app, &order_id).await, "paid");
    assert_eq!(payment_status(&app, &order_id).await.unwrap(), "paid");

    waits_for(|| async { (!smtp.messages().is_empty()).then_some(()) }).await;
    waits_for(|| async {
        (scalar(&app, "SELECT count(*) FROM outbox WHERE status = 'done'").await == 1).then_some(())
    })
    .await;
    assert_eq!(smtp.messages().len(), 1, "one e-mail");
}

#[tokio::test]
async fn a_payment_after_expiry_revives_the_order_or_is_refunded_when_sold_out() {
    let sim = Sim::with_webhook().await;
    let app = TestApp::builder().midtrans(&sim).spawn().await;
    let Sale { customer, event, .. } = sale(&app, 3, 3).await;
    let revived = pending_order(&app, &customer, &event, 1).await;
    let refunded = pending_order(&app, &customer, &event, 2).await;
    for order_id in [&revived, &refunded] {
        assert_eq!(create_payment(&app, &customer, order_id).await.status, StatusCode::CREATED);
    }
    // Both holds run out and the worker expires them.
    execute(&app.direct_url(), "UPDATE orders SET expire_time = now() - interval '1 second'", &[]).await;
    let worker = Worker::start(app.state.clone());
    waits_for(|| async {
        (scalar(&app, "SELECT count(*) FROM orders WHERE status = 'expired'").await == 2).then_some(())
    })
    .await;
    // Meanwhile someone else buys two of the three seats.
    let rival = app.user(Role::Customer).await;
    pending_order(&app, &rival, &event, 2).await;

    // One seat is left: the 1-ticket order is revived, the 2-ticket one cannot be.
    sim.admin(&format!("/_sim/transactions/{revived}/settle"), json!({})).await;
    sim.admin(&format!("/_sim/transactions/{refunded}/settle"), json!({})).await;
    waits_for(|| async { (order_status(&app, &revived).await == "paid").then_some(()) }).await;
    assert_eq!(tickets_of(&app, &revived).await, 1);

    // The other payment is refunded through the outbox and Midtrans's refund API.
    let refund_status = waits_for(|| async {
        let status = sim.transaction(&refunded).await["status"].as_str().map(str::to_owned);
        status.filter(|s| s == "refund")
    })
    .await;
    assert_eq!(refund_status, "refund");
    waits_for(|| async {
        let status = payment_status(&app, &refunded).await;
        (status.as_deref() == Some("refunded")).then_some(())
    })
    .await;
    drop(worker);
    assert_eq!(order_status(&app, &refunded).await, "expired");
    assert_eq!(tickets_of(&app, &refunded).await, 0);
    let (buckets, live) = held(&app, &event.1).await;
    assert_eq!((buckets, live), (3, 3), "the revived seat and the rival's two; never more than capacity");
}

#[tokio::test]
async fn a_missed_notification_is_caught_by_reconciliation() {
    let sim = Sim::with_webhook().await;
    let app = TestApp::builder()
        .midtrans(&sim)
        .var("PAYMENT_RECONCILE_AFTER_SECONDS", "0")
        .var("PAYMENT_RECONCILE_INTERVAL_SECONDS", "0")
        .spawn()
        .await;
    let Sale { customer, event, .. } = sale(&app, 10, 4).await;
    let order_id = pending_order(&app, &customer, &event, 1).await;
    assert_eq!(create_payment(&app, &customer, &order_id).await.status, StatusCode::CREATED);

    // Paid at Midtrans, but the notification never arrives.
    sim.admin(&format!("/_sim/transactions/{order_id}/settle"), json!({ "notify": false })).await;
    assert_eq!(order_status(&app, &order_id).await, "pending");
    let _worker = Worker::start(app.state.clone());
    waits_for(|| async { (order_status(&app, &order_id).await == "paid").then_some(()) }).await;
    assert_eq!(
        query_value(&app.direct_url(), "SELECT source || ':' || outcome FROM payment_notifications").await.unwrap(),
        "status_check:paid"
    );
}

/// Reconciliation asks Midtrans about a pending payment only once it is old
/// enough that its notification should have come, at most once per
/// interval, a batch at a time, the longest unasked first.
#[tokio::test]
async fn reconciliation_asks_about_each_pending_payment_once_per_interval_longest_unasked_first() {
    let sim = Sim::start().await;
    let app = TestApp::builder().midtrans(&sim).var("MIDTRANS_SNAP_URL", &sim.url).spawn().await;
    let Sale { customer, event, .. } = sale(&app, 20, 4).await;
    let mut orders = Vec::new();
    for hours_ago in [2, 6, 3, 5, 4] {
        let order_id = pending_order(&app, &customer, &event, 1).await;
        assert_eq!(create_payment(&app, &customer, &order_id).await.status, StatusCode::CREATED);
        // As if created and last asked about `hours_ago` hours ago.
        let sql = "UPDATE payments SET created_at = now() - make_interval(hours => $2), \
                   checked_at = now() - make_interval(hours => $2) WHERE order_id = $1";
        execute(&app.direct_url(), sql, &[&uuid(&order_id), &hours_ago]).await;
        orders.push((hours_ago, order_id));
    }
    let reconciler = |after_seconds: u32, interval_seconds: u32| {
        let mut vars = app.vars.clone();
        vars.insert("PAYMENT_RECONCILE_AFTER_SECONDS".into(), after_seconds.to_string());
        vars.insert("PAYMENT_RECONCILE_INTERVAL_SECONDS".into(), interval_seconds.to_string());
        ticketing_service::AppState::new(crate::helpers::config_from(&vars)).unwrap()
    };
    let asked = || async {
        let sql = "SELECT count(*) FROM payments WHERE checked_at > now() - interval '1 minute'";
        scalar(&app, sql).await
    };

    // Younger than a day: not yet due.
    let patient = reconciler(86_400, 3600);
    assert_eq!(ticketing_service::app::payments::reconcile_pending(&patient, 2).await.unwrap(), 0);
    // Due (older than a minute, unasked for an hour), two at a time.
    let due = reconciler(60, 3600);
    let pass = || ticketing_service::app::payments::reconcile_pending(&due, 2);
    assert_eq!(pass().await.unwrap(), 2);
    let first: Vec<String> = {
        let sql = "SELECT string_agg(order_id::text, ',' ORDER BY order_id) FROM payments \
                   WHERE checked_at > now() - interval '1 minute'";
        query_value(&app.direct_url(), sql).await.unwrap().split(',').map(str::to_owned).collect()
    };
    let mut longest: Vec<String> =
        orders.iter().filter(|(hours, _)| *hours >= 5).map(|(_, order)| order.clone()).collect();
    longest.sort();
    assert_eq!(first, longest, "the two asked about longest ago go first");
    assert_eq!(pass().await.unwrap(), 2);
    assert_eq!(pass().await.unwrap(), 1);
    assert_eq!(asked().await, 5, "each asked about once");
    assert_eq!(pass().await.unwrap(), 0, "not again within the interval");
    assert_eq!(order_status(&app, &orders[0].1).await, "pending", "Midtrans says pending: nothing changes");
}

/// Whether the simulator has seen a Snap call for the order.
async fn snap_called(sim: &Sim, order_id: &str) -> bool {
    sim.transaction(order_id).await["order_id"].as_str() == Some(order_id)
}

#[tokio::test]
async fn a_down_gateway_fails_fast_opens_the_breaker_and_recovers() {
    let mut sim = Sim::with_webhook().await;
    let app = TestApp::builder()
        .midtrans(&sim)
        .var("MIDTRANS_TIMEOUT_MS", "800")
        .var("MIDTRANS_BREAKER_FAILURES", "2")
        .var("MIDTRANS_BREAKER_OPEN_MS", "4000")
        .spawn()
        .await;
    // A server process of its own: its breaker and metrics are not shared
    // with the other tests of this binary.
    let server = Processes::start(1, &app.vars).await;
    let (base, admin) = (server.bases[0].clone(), server.admins[0].clone());
    let Sale { customer, event, .. } = sale(&app, 20, 4).await;
    let pay = |order_id: String| {
        let request = app.http.post(format!("{base}/v1/orders/{order_id}/payments")).bearer_auth(&customer.token);
        app.raw(request)
    };
    let breaker = || async {
        let metrics = app.http.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
        let value =
            |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(-1.0);
        (value("ticketing_midtrans_breaker_state "), value("ticketing_midtrans_breaker_rejections_total "))
    };

    // Slow: the call waits out its deadline, then 503 with Retry-After. The
    // simulator records the transaction only once its 5 s are up: an answer
    // before it has is the deadline's, not Midtrans's.
    sim.admin("/_sim/faults", json!({ "latency_ms": 5000 })).await;
    let order_id = pending_order(&app, &customer, &event, 1).await;
    let slow = pay(order_id.clone()).await;
    assert_eq!(slow.error_reason(503, "UNAVAILABLE"), "PAYMENT_PROVIDER_UNAVAILABLE");
    assert!(slow.headers.contains_key("retry-after"));
    assert!(!snap_called(&sim, &order_id).await, "answered before Midtrans did: the deadline cut the call");

    // Down: refused connections; the second failure in a row opens the breaker.
    sim.stop().await;
    let down = pay(order_id.clone()).await;
    assert_eq!(down.error_reason(503, "UNAVAILABLE"), "PAYMENT_PROVIDER_UNAVAILABLE");
    assert_eq!(breaker().await.0, 2.0, "the breaker is open");
    // While it is open no call leaves, even to a Midtrans that is back.
    sim.resume().await;
    let open_order = pending_order(&app, &customer, &event, 1).await;
    let rejected = pay(open_order.clone()).await;
    assert_eq!(rejected.error_reason(503, "UNAVAILABLE"), "PAYMENT_PROVIDER_UNAVAILABLE");
    assert!(breaker().await.1 >= 1.0, "counted as rejected by the open breaker");
    assert!(!snap_called(&sim, &open_order).await, "an open breaker answers without calling Midtrans");

    // The rest of the API does not notice.
    let event_page = app.raw(app.http.get(format!("{base}/v1/events/{}", event.0))).await;
    assert_eq!(event_page.status, StatusCode::OK);
    let during_outage =
        order_request(&app.http, &base, &customer.token, "during-outage", &order_body(&event.0, &event.1, 1));
    let order = app.raw(during_outage).await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);

    // After the open interval a trial call goes through and closes it.
    let paid = waits_for(|| async {
        let answer = pay(open_order.clone()).await;
        (answer.status == StatusCode::CREATED).then_some(answer)
    })
    .await;
    assert!(!paid.body["token"].as_str().unwrap().is_empty());
    assert_eq!(breaker().await.0, 0.0, "closed again");
}

#[tokio::test]
async fn confirmation_email_waits_out_an_smtp_outage() {
    let mut smtp = SmtpSink::unstarted();
    let app = TestApp::builder().var("SMTP_URL", smtp.url()).var("WORKER_POLL_MS", "50").spawn().await;
    let Sale { customer, event, .. } = sale(&app, 10, 4).await;
    let order_id = pending_order(&app, &customer, &event, 1).await;
    let _worker = Worker::start(app.state.clone());
    let paid = deliver(&app, &notification(&order_id, "settlement", "750000.00")).await;
    assert_eq!(paid.status, StatusCode::OK);

    // The mail server is down: attempts fail and are retried, nothing is lost.
    waits_for(|| async {
        let attempts = scalar(&app, "SELECT attempts FROM outbox WHERE kind = 'order_confirmation'").await;
        (attempts >= 2).then_some(())
    })
    .await;
    assert_eq!(
        query_value(&app.direct_url(), "SELECT status FROM outbox").await.unwrap(),
        "pending",
        "still waiting, not dead"
    );
    smtp.listen().await;
    let mail = waits_for(|| async { smtp.messages().into_iter().find(|m| m.contains(&order_id)) }).await;
    assert!(mail.contains(&customer.email));
    waits_for(|| async {
        (query_value(&app.direct_url(), "SELECT status FROM outbox").await? == "done").then_some(())
    })
    .await;
}

#[tokio::test]
async fn midtrans_official_python_sdk_accepts_the_simulator() {
    let sim = Sim::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../loadtest/midtrans-sim/sdk_check.py");
    let stdout = crate::helpers::run(
        tokio::process::Command::new(crate::helpers::stack("PYTHON_TOOLS")).args([
            script,
            &sim.url,
            crate::helpers::TEST_MIDTRANS_SERVER_KEY,
        ]),
        "sdk_check",
    )
    .await;
    assert!(stdout.trim_end().ends_with("ok"), "sdk_check did not finish: {stdout}");
}

/// What the customer's payment page shows of a payment.
async fn shown_status(app: &TestApp, customer: &TestUser, order_id: &str, payment: &Value) -> Value {
    let path = format!("/v1/orders/{order_id}/payments/{}", payment["paymentId"].as_str().unwrap());
    app.rest(Method::GET, &path, Some(&customer.token), None).await.body["status"].clone()
}

#[tokio::test]
async fn a_failed_payment_leaves_the_order_payable_and_a_later_settlement_pays_it() {
    let sim = Sim::start().await;
    let app = TestApp::builder().midtrans(&sim).spawn().await;
    let Sale { customer, event, .. } = sale(&app, 20, 4).await;
    for failed in ["deny", "expire", "failure"] {
        let order_id = pending_order(&app, &customer, &event, 1).await;
        let payment = create_payment(&app, &customer, &order_id).await;
        assert_eq!(payment.status, StatusCode::CREATED, "{}", payment.body);

        let failure = deliver(&app, &notification(&order_id, failed, "750000.00")).await;
        assert_eq!(failure.status, StatusCode::OK, "{failed}: {}", failure.body);
        assert_eq!(payment_status(&app, &order_id).await.as_deref(), Some("failed"), "{failed}");
        assert_eq!(shown_status(&app, &customer, &order_id, &payment.body).await, "PAYMENT_STATUS_FAILED");
        assert_eq!(order_status(&app, &order_id).await, "pending", "{failed}: the hold stays, to pay another way");
        assert_eq!(tickets_of(&app, &order_id).await, 0, "{failed}: no money, no tickets");

        // The buyer pays another way on the same Snap page.
        let settled = deliver(&app, &notification(&order_id, "settlement", "750000.00")).await;
        assert_eq!(settled.status, StatusCode::OK, "{}", settled.body);
        assert_eq!(order_status(&app, &order_id).await, "paid", "{failed}, then settlement");
        assert_eq!(shown_status(&app, &customer, &order_id, &payment.body).await, "PAYMENT_STATUS_PAID");
        assert_eq!(tickets_of(&app, &order_id).await, 1);

        // The failure delivered again, late: the money stays.
        let late = deliver(&app, &notification(&order_id, failed, "750000.00")).await;
        assert_eq!(late.status, StatusCode::OK);
        assert_eq!((order_status(&app, &order_id).await, tickets_of(&app, &order_id).await), ("paid".into(), 1));
        assert_eq!(payment_status(&app, &order_id).await.as_deref(), Some("paid"), "{failed} after settlement");
    }

    // A card capture is money once fraud review accepted it, and a capture
    // fraud review denied is a failed payment.
    for (fraud, payment_status_after, order_after, tickets) in
        [("accept", "paid", "paid", 1), ("deny", "failed", "pending", 0)]
    {
        let order_id = pending_order(&app, &customer, &event, 1).await;
        assert_eq!(create_payment(&app, &customer, &order_id).await.status, StatusCode::CREATED);
        let mut capture = notification(&order_id, "capture", "750000.00");
        capture["payment_type"] = "credit_card".into();
        capture["fraud_status"] = fraud.into();
        assert_eq!(deliver(&app, &capture).await.status, StatusCode::OK);
        assert_eq!(payment_status(&app, &order_id).await.as_deref(), Some(payment_status_after), "capture, {fraud}");
        assert_eq!(order_status(&app, &order_id).await, order_after, "capture, {fraud}");
        assert_eq!(tickets_of(&app, &order_id).await, tickets, "capture, {fraud}");
    }
}

/// A WhatsApp provider stand-in: records each request's bearer token and body.
/// It follows Meta's WhatsApp Cloud API, "Send messages"
/// (<https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages>):
/// `POST /{version}/{phone-number-id}/messages` with a bearer token and a
/// JSON body (`messaging_product: "whatsapp"`, `to`, `type`, …), answered
/// with `{ messaging_product, contacts?, messages: [{ id: "wamid…" }] }`.
async fn whatsapp_provider() -> (String, std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>) {
    use axum::{Json, http::HeaderMap, routing::post};
    let received: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>> = Default::default();
    let sink = received.clone();
    let router = axum::Router::new().route(
        "/v20.0/{phone_id}/messages",
        post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let sink = sink.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                sink.lock().unwrap().push((auth, body));
                Json(json!({ "messaging_product": "whatsapp", "messages": [{ "id": "wamid.test" }] }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v20.0/1234567/messages", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, received)
}

#[tokio::test]
async fn buyers_who_left_a_phone_number_also_get_their_tickets_on_whatsapp() {
    let (provider, received) = whatsapp_provider().await;
    let app = TestApp::builder()
        .var("WHATSAPP_API_URL", &provider)
        .var("WHATSAPP_TOKEN", "wa-test-token")
        .var("WORKER_POLL_MS", "50")
        .spawn()
        .await;
    let organizer = app.user(Role::Organizer).await;
    let event = on_sale(&app, &organizer, 10, 4).await;
    let app = &app;
    let register = |phone: &str| {
        let email = format!("wa-{}@example.com", uuid::Uuid::now_v7().simple());
        let body = json!({ "email": email, "password": "a long enough password", "phone": phone });
        async move { (email, app.rest(Method::POST, "/v1/auth/register", None, Some(body)).await) }
    };
    let (_, bad) = register("0812-3456").await;
    assert_eq!(bad.bad_fields(), ["phone"]);
    let (email, registered) = register("+6281234567890").await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
    let token = app
        .rest(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({ "email": email, "password": "a long enough password" })),
        )
        .await
        .body["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let with_phone =
        TestUser { id: uuid::Uuid::parse_str(registered.body["id"].as_str().unwrap()).unwrap(), email, token };
    let without_phone = app.user(Role::Customer).await;

    let _worker = Worker::start(app.state.clone());
    for customer in [&with_phone, &without_phone] {
        let order_id = pending_order(app, customer, &event, 1).await;
        let settlement = notification(&order_id, "settlement", "750000.00");
        let paid = deliver(app, &settlement).await;
        assert_eq!(paid.status, StatusCode::OK);
    }
    waits_for(|| async {
        let done = scalar(app, "SELECT count(*) FROM outbox WHERE kind = 'order_whatsapp' AND status = 'done'").await;
        (done == 2).then_some(())
    })
    .await;
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "only the buyer with a phone number gets a message");
    let (auth, message) = &received[0];
    assert_eq!(auth, "Bearer wa-test-token");
    assert_eq!(message["to"], "6281234567890");
    assert_eq!(message["messaging_product"], "whatsapp");
    let code: String = query_one(
        &app.direct_url(),
        "SELECT t.code FROM tickets t JOIN orders o ON o.id = t.order_id WHERE o.user_id = $1",
        &[&with_phone.id],
    )
    .await
    .unwrap();
    assert!(message["text"]["body"].as_str().unwrap().contains(&code), "the message carries the ticket code");
}

#[tokio::test]
async fn a_partial_refund_keeps_the_order_and_its_tickets() {
    let app = TestApp::spawn().await;
    let Sale { customer, event, .. } = sale(&app, 10, 4).await;
    let order_id = pending_order(&app, &customer, &event, 2).await;
    assert_eq!(deliver(&app, &notification(&order_id, "settlement", "1500000.00")).await.status, StatusCode::OK);
    let partial = deliver(&app, &notification(&order_id, "partial_refund", "1500000.00")).await;
    assert_eq!(partial.status, StatusCode::OK);
    assert_eq!(order_status(&app, &order_id).await, "paid");
    assert_eq!(scalar(&app, "SELECT count(*) FROM tickets WHERE status = 'valid'").await, 2);
    assert_eq!(
        query_value(&app.direct_url(), "SELECT outcome FROM payment_notifications ORDER BY id DESC LIMIT 1")
            .await
            .unwrap(),
        "partial_refund",
        "recorded for a person to settle"
    );
}

#[tokio::test]
async fn an_events_payment_methods_reach_snap_and_the_hold_ends_with_the_snap_page() {
    let sim = Sim::start().await;
    let app = TestApp::builder().midtrans(&sim).var("MIDTRANS_SNAP_URL", &sim.url).spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let path = format!("/v1/events/{}", event.0);
    let settings =
        json!({ "enabledMethods": ["other_qris", "gopay", "bca_va"], "holdMinutesByMethod": { "bca_va": 1440 } });
    for (bad, field) in [
        (json!({ "enabledMethods": ["bitcoin"] }), "payment.enabledMethods[0]"),
        (
            json!({ "enabledMethods": ["gopay"], "holdMinutesByMethod": { "alfamart": 60 } }),
            "payment.holdMinutesByMethod.alfamart",
        ),
        (json!({ "holdMinutesByMethod": { "bca_va": 0 } }), "payment.holdMinutesByMethod.bca_va"),
    ] {
        let refused = app.rest(Method::PATCH, &path, Some(&organizer.token), Some(json!({ "payment": bad }))).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert!(refused.bad_fields().contains(&field.to_owned()), "{:?}", refused.bad_fields());
    }
    let set = app.rest(Method::PATCH, &path, Some(&organizer.token), Some(json!({ "payment": settings }))).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["payment"], settings);

    let time = |value: &Value| chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap().to_utc();
    let expire_time = |order_id: String| {
        let (app, token) = (&app, customer.token.clone());
        async move {
            time(&app.rest(Method::GET, &format!("/v1/orders/{order_id}"), Some(&token), None).await.body["expireTime"])
        }
    };

    // No pick: the event's methods, for the order's usual hold; the two end together.
    let order = pending_order(&app, &customer, &event, 1).await;
    let paying = app.rest(Method::POST, &format!("/v1/orders/{order}/payments"), Some(&customer.token), None).await;
    assert_eq!(paying.status, StatusCode::CREATED, "{}", paying.body);
    let snap = sim.transaction(&order).await;
    assert_eq!(snap["enabled_payments"], json!(["other_qris", "gopay", "bca_va"]));
    let hold = expire_time(order.clone()).await;
    assert_eq!(time(&snap["expires_at"]), hold, "the Snap page and the hold end together");
    assert!(hold < chrono::Utc::now() + chrono::Duration::minutes(20));

    // A virtual account picked: only it is offered, and the hold is its 24 hours.
    let order = pending_order(&app, &customer, &event, 1).await;
    let body = json!({ "paymentMethod": "bca_va" });
    let paying =
        app.rest(Method::POST, &format!("/v1/orders/{order}/payments"), Some(&customer.token), Some(body)).await;
    assert_eq!(paying.status, StatusCode::CREATED, "{}", paying.body);
    let snap = sim.transaction(&order).await;
    assert_eq!(snap["enabled_payments"], json!(["bca_va"]));
    let hold = expire_time(order.clone()).await;
    assert_eq!(time(&snap["expires_at"]), hold);
    let day = hold - chrono::Utc::now();
    assert!(day > chrono::Duration::minutes(1435) && day <= chrono::Duration::minutes(1440), "{day}");

    // A method the event does not offer is refused before Midtrans is asked.
    let order = pending_order(&app, &customer, &event, 1).await;
    let body = json!({ "paymentMethod": "alfamart" });
    let refused =
        app.rest(Method::POST, &format!("/v1/orders/{order}/payments"), Some(&customer.token), Some(body)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(sim.transaction(&order).await.get("order_id"), None, "no Snap transaction");
}

#[tokio::test]
async fn a_challenged_card_payment_waits_for_the_organizers_decision() {
    let sim = Sim::with_webhook().await;
    let app = TestApp::builder().midtrans(&sim).spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let challenged = |order: String| {
        let (app, sim, token) = (&app, &sim, customer.token.clone());
        async move {
            let paying =
                create_payment(app, &TestUser { id: uuid::Uuid::nil(), email: String::new(), token }, &order).await;
            assert_eq!(paying.status, StatusCode::CREATED, "{}", paying.body);
            let capture = json!({ "fraud_status": "challenge", "payment_type": "credit_card" });
            sim.admin(&format!("/_sim/transactions/{order}/capture"), capture).await;
            waits_for(|| async { (payment_status(app, &order).await.as_deref() == Some("challenged")).then_some(()) })
                .await;
            paying.body["paymentId"].as_str().unwrap().to_owned()
        }
    };
    let approved = pending_order(&app, &customer, &event, 1).await;
    let approved_payment = challenged(approved.clone()).await;
    assert_eq!(order_status(&app, &approved).await, "pending", "no tickets before the decision");
    let denied = pending_order(&app, &customer, &event, 1).await;
    let denied_payment = challenged(denied.clone()).await;
    let lapsed = pending_order(&app, &customer, &event, 1).await;
    let lapsed_payment = challenged(lapsed.clone()).await;

    // Listed for the organizer, hidden from anyone else.
    let path = format!("/v1/events/{}/payments?status=CHALLENGED", event.0);
    let listed = app.rest(Method::GET, &path, Some(&organizer.token), None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let ids: Vec<&str> =
        listed.body["payments"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [approved_payment.as_str(), denied_payment.as_str(), lapsed_payment.as_str()]);
    assert_eq!(listed.body["payments"][0]["paymentType"], "credit_card");
    let stranger = app.user(Role::Organizer).await;
    let decide = |order: &str, payment: &str, verb: &str| format!("/v1/orders/{order}/payments/{payment}:{verb}");
    for token in [&stranger.token, &customer.token] {
        let refused = app.rest(Method::POST, &decide(&approved, &approved_payment, "approve"), Some(token), None).await;
        assert_eq!(refused.error_reason(404, "NOT_FOUND"), "NOT_FOUND");
    }

    // Approved: Midtrans accepts the capture and the order is paid at once.
    let yes =
        app.rest(Method::POST, &decide(&approved, &approved_payment, "approve"), Some(&organizer.token), None).await;
    assert_eq!(yes.status, StatusCode::OK, "{}", yes.body);
    assert_eq!(yes.body["status"], "PAYMENT_STATUS_PAID");
    assert_eq!(order_status(&app, &approved).await, "paid");
    assert_eq!(sim.transaction(&approved).await["fraud_status"], "accept");
    let again =
        app.rest(Method::POST, &decide(&approved, &approved_payment, "deny"), Some(&organizer.token), None).await;
    assert_eq!(again.error_reason(400, "FAILED_PRECONDITION"), "PAYMENT_NOT_CHALLENGED");

    // Denied: the payment failed, the order is left to expire.
    let no = app.rest(Method::POST, &decide(&denied, &denied_payment, "deny"), Some(&organizer.token), None).await;
    assert_eq!(no.status, StatusCode::OK, "{}", no.body);
    assert_eq!(no.body["status"], "PAYMENT_STATUS_FAILED");
    assert_eq!(order_status(&app, &denied).await, "pending");
    assert_eq!(sim.transaction(&denied).await["status"], "deny");

    // Undecided until the hold ran out: the challenge expired with the order.
    execute(
        &app.direct_url(),
        "UPDATE orders SET expire_time = now() - interval '1 second' WHERE id = $1",
        &[&uuid(&lapsed)],
    )
    .await;
    ticketing_service::app::orders::expire_due_orders(&app.state, 100).await.unwrap();
    assert_eq!(order_status(&app, &lapsed).await, "expired");
    let late = app.rest(Method::POST, &decide(&lapsed, &lapsed_payment, "approve"), Some(&organizer.token), None).await;
    assert_eq!(late.error_reason(400, "FAILED_PRECONDITION"), "ORDER_NOT_PENDING");
    assert_eq!(sim.transaction(&lapsed).await["fraud_status"], "challenge", "Midtrans was not asked");

    let trail =
        app.rest(Method::GET, &format!("/v1/events/{}/auditEntries", event.0), Some(&organizer.token), None).await;
    let decisions: Vec<&str> = trail.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str().filter(|a| a.starts_with("AUDIT_ACTION_PAYMENT")))
        .collect();
    assert_eq!(decisions, ["AUDIT_ACTION_PAYMENT_APPROVED", "AUDIT_ACTION_PAYMENT_DENIED"]);
}
