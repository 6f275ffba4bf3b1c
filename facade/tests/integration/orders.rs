//! Orders on the real stack: no oversell under a real race across replicas,
//! idempotency that survives losing Redis, expiry racing payment and
//! cancellation, and bad input that writes nothing.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, stream};
use rand::Rng;
use reqwest::{Method, StatusCode};
use scoped_futures::ScopedFutureExt;
use serde_json::{Value, json};
use ticketing_domain::identity::Role;
use ticketing_proto::v1::{self, order_service_client::OrderServiceClient};
use uuid::Uuid;

use crate::helpers::{
    Processes, Response, Sale, Table, TestApp, add_category, authed, bulk_customers, buy, buy_in_background,
    eventually, eventually_within, execute, held, metric_sample, midtrans_knows, mint_token, notification, on_sale,
    on_sale_in, order_body, order_request, query_one, query_value, sale, statement_blocks, statement_calls, test_vars,
    uuid,
};

#[tokio::test]
async fn flash_sale_across_three_replicas_never_oversells() {
    const CAPACITY: i64 = 500;
    const ATTEMPTS: usize = 3_000;
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let (event_id, category_id) = on_sale(&app, &organizer, 500, 4).await;
    let buyers = bulk_customers(&app.direct_url(), 1_000).await;
    let tokens: Vec<String> = buyers.iter().map(|id| mint_token(*id, Role::Customer)).collect();

    let mut vars = test_vars(&app.database);
    vars.insert("DATABASE_POOL_SIZE".into(), "16".into());
    vars.insert("DATABASE_POOL_TIMEOUT_MS".into(), "10000".into());
    // This test is about inventory under a real race, on debug builds sharing
    // two cores with the test itself; overload shedding has its own test.
    vars.insert("CONCURRENCY_LATENCY_OBJECTIVE_MS".into(), "600000".into());
    let replicas = Processes::start(3, &vars).await;

    let sold = Arc::new(AtomicUsize::new(0));
    let outcomes: Vec<(u16, String)> = stream::iter(0..ATTEMPTS)
        .map(|n| {
            let http = app.http.clone();
            let base = replicas.bases[n % 3].clone();
            let token = tokens[n % tokens.len()].clone();
            let quantity = rand::thread_rng().gen_range(1..=4);
            let body = order_body(&event_id, &category_id, quantity);
            let sold = sold.clone();
            async move {
                let response =
                    order_request(&http, &base, &token, &Uuid::now_v7().to_string(), &body).send().await.expect("sent");
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if status == 201 {
                    sold.fetch_add(body["items"][0]["quantity"].as_u64().unwrap() as usize, Ordering::SeqCst);
                }
                let reason = body["error"]["details"][0]["reason"].as_str().unwrap_or("").to_owned();
                (status, reason)
            }
        })
        .buffer_unordered(96)
        .collect()
        .await;

    let mut tally: HashMap<(u16, String), usize> = HashMap::new();
    for outcome in outcomes {
        *tally.entry(outcome).or_default() += 1;
    }
    let unexpected: Vec<_> =
        tally.iter().filter(|((s, r), _)| !(*s == 201 || (*s == 409 && r == "SOLD_OUT"))).collect();
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?} (all: {tally:?})");
    assert_eq!(sold.load(Ordering::SeqCst) as i64, CAPACITY, "tickets sold; answers {tally:?}");
    assert_eq!(held(&app, &category_id).await, (CAPACITY, CAPACITY));

    let available = eventually(|| async {
        let event = app.rest(Method::GET, &format!("/v1/events/{event_id}"), None, None).await;
        let available = event.body["ticketCategories"][0]["available"].as_i64()?;
        (available == 0).then_some(available)
    })
    .await;
    assert_eq!(available, 0);
}

#[tokio::test]
async fn a_customers_pending_orders_and_tickets_are_counted_from_their_own_entries_when_statistics_predate_the_sale() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 100, 4).await;
    let (organizer_id, event_id) = (organizer.id, uuid(&event.0));
    // Statistics taken before the sale: orders exist, none of them pending,
    // all of one account (so every customer looks as if they had them all).
    let seed = "INSERT INTO orders (id, user_id, event_id, status, currency_code, total_units, total_nanos,
                                    idempotency_key, request_digest, expire_time)
                SELECT gen_random_uuid(), $1, $2, $3, 'IDR', 1, 0, $3 || g, 'seed', now() + interval '15 minutes'
                  FROM generate_series(1, $4::integer) AS g";
    execute(&app.direct_url(), seed, &[&organizer_id, &event_id, &"paid", &1_000]).await;
    execute(&app.direct_url(), "ANALYZE orders", &[]).await;
    // Then the sale: thousands of other customers' orders pending.
    execute(&app.direct_url(), seed, &[&organizer_id, &event_id, &"pending", &5_000]).await;

    // hold_orders' one statement that counts its customers' pending orders
    // and the tickets they hold for the event.
    let (url, count) = (app.direct_url(), ["SELECT array_agg(c.customer ORDER BY c.i)%"]);
    let blocks = || statement_blocks(&url, &app.database, &count);
    let before = blocks().await;
    let placed = buy(&app, &customer.token, "after-the-analyze", order_body(&event.0, &event.1, 1)).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);
    let read = blocks().await - before;
    // Through the customer's index: a few pages. Through every pending order,
    // or every order of the event: hundreds.
    assert!(read > 0, "the count did not run");
    assert!(read < 20, "counting one customer's pending orders and tickets read {read} blocks");
}

/// An order whose customer is busy in another transaction goes to the exact
/// pass, which waits for the customer; it then takes a free bucket with room,
/// as the fast pass does, instead of waiting for every bucket of the category
/// (which kept the fast passes from every bucket while it waited).
#[tokio::test]
async fn the_exact_pass_waits_for_its_customer_but_not_for_a_bucket_it_does_not_need() {
    let app = TestApp::spawn().await;
    let Sale { customer, event: (event_id, category_id), .. } = sale(&app, 100, 4).await;
    let category = uuid(&category_id);
    // The first bucket held by another transaction, and the customer's hold
    // lock (hold_orders' advisory key for a customer) by its session.
    let locker = app
        .lock("SELECT FROM inventory_buckets WHERE ticket_category_id = $1 AND bucket = 0 FOR UPDATE", &[&category])
        .await;
    let customer_lock = "SELECT pg_advisory_lock(hashtextextended($1::uuid::text, 20261203))";
    locker.execute(customer_lock, &[&customer.id]).await.expect("the customer's lock");

    let order = buy_in_background(&app, &customer.token, "busy-customer", &order_body(&event_id, &category_id, 2));
    // The fast pass never waits: the one waiting is the exact pass, on the customer.
    eventually(|| async { (app.lock_waiters().await == 1).then_some(()) }).await;
    let customer_unlock = "SELECT pg_advisory_unlock(hashtextextended($1::uuid::text, 20261203))";
    locker.execute(customer_unlock, &[&customer.id]).await.expect("the customer's lock released");

    let placed = tokio::time::timeout(Duration::from_secs(30), order)
        .await
        .expect("the exact pass waited for the busy bucket it did not need")
        .expect("answered");
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let taken_from_the_busy_one: i32 = query_one(
        &app.direct_url(),
        "SELECT held FROM inventory_buckets WHERE ticket_category_id = $1 AND bucket = 0",
        &[&category],
    )
    .await
    .expect("the first bucket");
    assert_eq!(taken_from_the_busy_one, 0);
    locker.batch_execute("COMMIT").await.expect("the bucket released");
    let taken: i64 = query_one(
        &app.direct_url(),
        "SELECT sum(held) FROM inventory_buckets WHERE ticket_category_id = $1",
        &[&category],
    )
    .await
    .expect("a sum");
    assert_eq!(taken, 2);
}

#[tokio::test]
async fn one_order_per_idempotency_key_even_after_redis_forgets() {
    let app = TestApp::spawn().await;
    let Sale { customer, event: (event_id, category_id), .. } = sale(&app, 100, 4).await;
    let key = format!("checkout-{}", Uuid::now_v7());
    let body = order_body(&event_id, &category_id, 2);

    // Fifty at once with one key, over three server processes.
    let servers = Processes::start(3, &app.vars).await;
    let answers: Vec<(u16, Option<String>, Value)> = stream::iter(0..50)
        .map(|n| {
            let request = order_request(&app.http, &servers.bases[n % 3], &customer.token, &key, &body);
            async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let replayed = response.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap().to_owned());
                (status, replayed, response.json().await.unwrap())
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let created: Vec<_> = answers.iter().filter(|(s, r, _)| *s == 201 && r.is_none()).collect();
    assert_eq!(
        created.len(),
        1,
        "exactly one request creates; answers: {:?}",
        answers.iter().map(|a| (a.0, &a.1)).collect::<Vec<_>>()
    );
    let order_id = created[0].2["id"].as_str().unwrap().to_owned();
    for (status, replayed, body) in &answers {
        match status {
            201 if replayed.is_some() => assert_eq!(body["id"], order_id.as_str()),
            201 => {}
            409 => assert_eq!(body["error"]["details"][0]["reason"], "IDEMPOTENCY_KEY_IN_USE"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(app.count(Table::Orders).await, 1);
    assert_eq!(held(&app, &category_id).await, (2, 2));

    // Redis loses the key: the database still knows it.
    app.state.redis.delete(&format!("idem:{}:{key}", customer.id)).await.unwrap();
    let retry = buy(&app, &customer.token, &key, body.clone()).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.body["id"], order_id.as_str());
    assert_eq!(app.count(Table::Orders).await, 1);

    let reused = buy(&app, &customer.token, &key, order_body(&event_id, &category_id, 3)).await;
    assert_eq!(reused.error_reason(422, "FAILED_PRECONDITION"), "IDEMPOTENCY_KEY_REUSED");
    app.state.redis.delete(&format!("idem:{}:{key}", customer.id)).await.unwrap();
    let reused_without_redis = buy(&app, &customer.token, &key, order_body(&event_id, &category_id, 3)).await;
    assert_eq!(reused_without_redis.error_reason(422, "FAILED_PRECONDITION"), "IDEMPOTENCY_KEY_REUSED");

    // Keys belong to their user: another customer's same key is a new order.
    let other = app.user(Role::Customer).await;
    let theirs = buy(&app, &other.token, &key, body).await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert_ne!(theirs.body["id"], order_id.as_str());
    assert!(theirs.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn bad_orders_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event: (event_id, category_id) } = sale(&app, 50, 4).await;
    let (_other_event, foreign_category) = on_sale(&app, &organizer, 50, 4).await;
    let token = &customer.token;
    let key = || Uuid::now_v7().to_string();

    for (quantity, field) in [(0, "items[0].quantity"), (-3, "items[0].quantity")] {
        let response = buy(&app, token, &key(), order_body(&event_id, &category_id, quantity)).await;
        assert_eq!(response.error_reason(400, "INVALID_ARGUMENT"), "INVALID_ARGUMENT");
        assert_eq!(response.bad_fields(), [field]);
    }
    let over_max = buy(&app, token, &key(), order_body(&event_id, &category_id, 5)).await;
    assert_eq!(over_max.error_reason(400, "INVALID_ARGUMENT"), "ORDER_LIMIT_EXCEEDED");
    let huge = buy(&app, token, &key(), order_body(&event_id, &category_id, i32::MAX)).await;
    assert_eq!(huge.error_reason(400, "INVALID_ARGUMENT"), "ORDER_LIMIT_EXCEEDED");
    let beyond_int32 = buy(
        &app,
        token,
        &key(),
        json!({ "eventId": event_id, "items": [{ "ticketCategoryId": category_id, "quantity": 1e12 }] }),
    )
    .await;
    assert_eq!(beyond_int32.error_reason(400, "INVALID_ARGUMENT"), "MALFORMED_JSON");
    let duplicate = buy(
        &app,
        token,
        &key(),
        json!({ "eventId": event_id, "items": [{ "ticketCategoryId": category_id, "quantity": 1 }, { "ticketCategoryId": category_id, "quantity": 1 }] }),
    )
    .await;
    assert_eq!(duplicate.bad_fields(), ["items[1].ticketCategoryId"]);
    let unknown = buy(&app, token, &key(), order_body(&event_id, &Uuid::now_v7().to_string(), 1)).await;
    assert_eq!(unknown.bad_fields(), ["items[0].ticketCategoryId"]);
    let foreign = buy(&app, token, &key(), order_body(&event_id, &foreign_category, 1)).await;
    assert_eq!(foreign.bad_fields(), ["items[0].ticketCategoryId"]);
    let malformed_id = buy(&app, token, &key(), order_body(&event_id, "not-a-uuid", 1)).await;
    assert_eq!(malformed_id.bad_fields(), ["items[0].ticketCategoryId"]);
    let no_items = buy(&app, token, &key(), json!({ "eventId": event_id, "items": [] })).await;
    assert_eq!(no_items.bad_fields(), ["items"]);
    let unknown_event = buy(&app, token, &key(), order_body(&Uuid::now_v7().to_string(), &category_id, 1)).await;
    assert_eq!(unknown_event.error_reason(404, "NOT_FOUND"), "NOT_FOUND");
    let garbage = app
        .raw(
            app.http
                .post(app.url("/v1/orders"))
                .bearer_auth(token)
                .header("idempotency-key", key())
                .body("{\"eventId\":"),
        )
        .await;
    assert_eq!(garbage.error_reason(400, "INVALID_ARGUMENT"), "MALFORMED_JSON");
    let missing_key =
        app.rest(Method::POST, "/v1/orders", Some(token), Some(order_body(&event_id, &category_id, 1))).await;
    assert_eq!(missing_key.error_reason(400, "INVALID_ARGUMENT"), "IDEMPOTENCY_KEY_REQUIRED");
    let bad_key = buy(&app, token, "has spaces in it", order_body(&event_id, &category_id, 1)).await;
    assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);
    let anonymous = app
        .raw(app.http.post(app.url("/v1/orders")).header("idempotency-key", key()).json(&order_body(
            &event_id,
            &category_id,
            1,
        )))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let organizer_buys = buy(&app, &organizer.token, &key(), order_body(&event_id, &category_id, 1)).await;
    assert_eq!(organizer_buys.status, StatusCode::FORBIDDEN);

    assert_eq!(app.count(Table::Orders).await, 0);
    assert_eq!(app.count(Table::OrderItems).await, 0);
    assert_eq!(held(&app, &category_id).await, (0, 0));
}

#[tokio::test]
async fn sold_out_closed_and_unpublished_sales() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event: (event_id, category_id) } = sale(&app, 3, 2).await;
    assert_eq!(
        buy(&app, &customer.token, "a", order_body(&event_id, &category_id, 2)).await.status,
        StatusCode::CREATED
    );
    let too_many = buy(&app, &customer.token, "b", order_body(&event_id, &category_id, 2)).await;
    assert_eq!(too_many.error_reason(409, "ABORTED"), "SOLD_OUT");
    assert_eq!(too_many.body["error"]["details"][0]["metadata"]["ticketCategoryId"], category_id.as_str());
    assert_eq!(
        buy(&app, &customer.token, "c", order_body(&event_id, &category_id, 1)).await.status,
        StatusCode::CREATED
    );
    assert_eq!(held(&app, &category_id).await, (3, 3));

    // Capacity cannot shrink below what is held.
    let shrink = app
        .rest(
            Method::PATCH,
            &format!("/v1/events/{event_id}/ticketCategories/{category_id}"),
            Some(&organizer.token),
            Some(json!({ "capacity": 2 })),
        )
        .await;
    assert_eq!(shrink.error_reason(400, "FAILED_PRECONDITION"), "CAPACITY_BELOW_SOLD");
    let grow = app
        .rest(
            Method::PATCH,
            &format!("/v1/events/{event_id}/ticketCategories/{category_id}"),
            Some(&organizer.token),
            Some(json!({ "capacity": 10 })),
        )
        .await;
    assert_eq!(grow.body["available"], 7);

    let now = chrono::Utc::now();
    let closed = app
        .rest(
            Method::PATCH,
            &format!("/v1/events/{event_id}/ticketCategories/{category_id}"),
            Some(&organizer.token),
            Some(json!({ "salesStartTime": (now + chrono::Duration::days(1)).to_rfc3339() })),
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK, "{}", closed.body);
    let not_yet = buy(&app, &customer.token, "d", order_body(&event_id, &category_id, 1)).await;
    assert_eq!(not_yet.error_reason(400, "FAILED_PRECONDITION"), "SALES_CLOSED");

    app.rest(Method::POST, &format!("/v1/events/{event_id}:cancel"), Some(&organizer.token), None).await;
    let cancelled = buy(&app, &customer.token, "e", order_body(&event_id, &category_id, 1)).await;
    assert_eq!(cancelled.error_reason(400, "FAILED_PRECONDITION"), "EVENT_NOT_PUBLISHED");
}

#[tokio::test]
async fn an_order_with_one_short_category_takes_nothing_from_the_others() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event: (event_id, plenty) } = sale(&app, 40, 4).await;
    let scarce = add_category(&app, &organizer, &event_id, "Backstage", 2, 2).await;
    let first = buy(&app, &customer.token, "first", order_body(&event_id, &scarce, 1)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let both = |scarce_quantity: i32| {
        json!({ "eventId": event_id, "items": [
            { "ticketCategoryId": plenty, "quantity": 3 },
            { "ticketCategoryId": scarce, "quantity": scarce_quantity },
        ] })
    };

    let short = buy(&app, &customer.token, "short", both(2)).await;
    assert_eq!(short.error_reason(409, "ABORTED"), "SOLD_OUT");
    assert_eq!(short.body["error"]["details"][0]["metadata"]["ticketCategoryId"], scarce.as_str());
    assert_eq!(held(&app, &plenty).await, (0, 0), "the category with room gave nothing");
    assert_eq!(held(&app, &scarce).await, (1, 1));
    assert_eq!(app.count(Table::Orders).await, 1);

    let fits = buy(&app, &customer.token, "fits", both(1)).await;
    assert_eq!(fits.status, StatusCode::CREATED, "{}", fits.body);
    assert_eq!(held(&app, &plenty).await, (3, 3));
    assert_eq!(held(&app, &scarce).await, (2, 2));
}

#[tokio::test]
async fn orders_are_visible_to_owner_organizer_and_admin_only() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let customer = app.user(Role::Customer).await;
    let stranger = app.user(Role::Customer).await;
    let other_organizer = app.user(Role::Organizer).await;
    let admin = app.user(Role::Admin).await;
    let (event_id, category_id) = on_sale(&app, &organizer, 10, 4).await;
    let order = buy(&app, &customer.token, "k1", order_body(&event_id, &category_id, 2)).await;
    assert_eq!(order.status, StatusCode::CREATED);
    assert_eq!(order.body["status"], "ORDER_STATUS_PENDING");
    assert_eq!(order.body["total"], json!({ "currencyCode": "IDR", "units": "1500000", "nanos": 0 }));
    assert_eq!(order.body["items"][0]["unitPrice"]["units"], "750000");
    let id = order.body["id"].as_str().unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(order.body["expireTime"].as_str().unwrap()).unwrap();
    let created = chrono::DateTime::parse_from_rfc3339(order.body["createTime"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_seconds(), 900, "default hold is 15 minutes");

    for (who, status) in [(&customer, 200), (&organizer, 200), (&admin, 200), (&stranger, 404), (&other_organizer, 404)]
    {
        let response = app.rest(Method::GET, &format!("/v1/orders/{id}"), Some(&who.token), None).await;
        assert_eq!(response.status.as_u16(), status, "{}", who.email);
    }
    let mine = app.rest(Method::GET, "/v1/orders", Some(&customer.token), None).await;
    assert_eq!(mine.body["orders"][0]["id"], id);
    let theirs = app.rest(Method::GET, "/v1/orders", Some(&stranger.token), None).await;
    assert_eq!(theirs.body["orders"], json!([]));

    let tickets = app.rest(Method::GET, &format!("/v1/orders/{id}/tickets"), Some(&customer.token), None).await;
    assert_eq!(tickets.status, StatusCode::OK);
    assert_eq!(tickets.body["tickets"], json!([]), "no tickets before payment");
    let not_yours = app.rest(Method::GET, &format!("/v1/orders/{id}/tickets"), Some(&stranger.token), None).await;
    assert_eq!(not_yours.status, StatusCode::NOT_FOUND);

    let by_stranger = app.rest(Method::POST, &format!("/v1/orders/{id}:cancel"), Some(&stranger.token), None).await;
    assert_eq!(by_stranger.status, StatusCode::NOT_FOUND);
    let cancelled = app.rest(Method::POST, &format!("/v1/orders/{id}:cancel"), Some(&customer.token), None).await;
    assert_eq!(cancelled.body["status"], "ORDER_STATUS_CANCELLED");
    assert_eq!(held(&app, &category_id).await, (0, 0));
    let again = app.rest(Method::POST, &format!("/v1/orders/{id}:cancel"), Some(&customer.token), None).await;
    assert_eq!(again.error_reason(400, "FAILED_PRECONDITION"), "ORDER_NOT_PENDING");
}

#[tokio::test]
async fn create_order_over_grpc_replays_with_request_id() {
    let app = TestApp::spawn().await;
    let Sale { customer, event: (event_id, category_id), .. } = sale(&app, 10, 4).await;
    let mut client = OrderServiceClient::new(app.channel().await);
    let request = || v1::CreateOrderRequest {
        event_id: event_id.clone(),
        items: vec![v1::OrderItem { ticket_category_id: category_id.clone(), quantity: 3, unit_price: None }],
        request_id: "grpc-key-1".into(),
        ..Default::default()
    };
    let first = client.create_order(authed(request(), &customer.token)).await.unwrap();
    assert!(first.metadata().get("idempotent-replayed").is_none());
    let second = client.create_order(authed(request(), &customer.token)).await.unwrap();
    assert_eq!(second.metadata().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(first.get_ref().id, second.get_ref().id);
    assert_eq!(first.get_ref().total.as_ref().unwrap().units, 2_250_000);
    let missing = client
        .create_order(authed(v1::CreateOrderRequest { request_id: String::new(), ..request() }, &customer.token))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn expiry_racing_payment_and_cancellation_leaves_one_state_and_exact_inventory() {
    const ORDERS: usize = 40;
    let app = TestApp::builder().var("ORDER_HOLD_SECONDS", "1").spawn().await;
    let Sale { customer, event: (event_id, category_id), .. } = sale(&app, 200, 4).await;
    let mut orders = Vec::new();
    for n in 0..ORDERS {
        let quantity = 1 + (n % 4) as i32;
        let order =
            buy(&app, &customer.token, &format!("race-{n}"), order_body(&event_id, &category_id, quantity)).await;
        assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
        orders.push((Uuid::parse_str(order.body["id"].as_str().unwrap()).unwrap(), quantity));
    }
    // Wait (by the database's clock) until every hold has run out.
    eventually(|| async {
        let due = query_value(&app.direct_url(), "SELECT count(*) FROM orders WHERE expire_time > now()").await?;
        (due == "0").then_some(())
    })
    .await;

    // Three worker processes expire in small batches while three server
    // processes take each order's settlement and its owner's cancellation,
    // all at once, over HTTP.
    let mut vars = app.vars.clone();
    vars.insert("WORKER_POLL_MS".into(), "10".into());
    vars.insert("EXPIRY_BATCH_SIZE".into(), "7".into());
    let servers = Processes::start(3, &vars).await;
    let mut settlements = Vec::new();
    for (id, quantity) in &orders {
        let settlement = notification(&id.to_string(), "settlement", &format!("{}.00", 750_000 * quantity));
        midtrans_knows(&app.vars["MIDTRANS_API_URL"], &settlement).await;
        settlements.push(settlement);
    }
    let mut racers = Vec::new();
    for (n, ((id, _), settlement)) in orders.iter().zip(settlements).enumerate() {
        let webhook = format!("{}/v1/payments/midtrans/notifications", servers.bases[n % 3]);
        let cancel = format!("{}/v1/orders/{id}:cancel", servers.bases[(n + 1) % 3]);
        let (http, token) = (app.http.clone(), customer.token.clone());
        racers.push(tokio::spawn(async move {
            let delivered = async {
                // Like Midtrans, deliver again while the answer is "busy" (503).
                for _ in 0..20 {
                    let answer = http.post(&webhook).json(&settlement).send().await.unwrap();
                    match answer.status() {
                        StatusCode::SERVICE_UNAVAILABLE => continue,
                        status => return assert_eq!(status, StatusCode::OK, "{}", answer.text().await.unwrap()),
                    }
                }
                panic!("the notification was never accepted");
            };
            let cancelled = async { http.post(&cancel).bearer_auth(&token).send().await.unwrap().status() };
            tokio::join!(delivered, cancelled).1 == StatusCode::OK
        }));
    }
    // The workers start while the calls are in flight.
    let workers = Processes::start_workers(3, &vars).await;
    let mut cancelled = 0;
    for racer in racers {
        cancelled += usize::from(racer.await.unwrap());
    }
    // Orders the workers skipped while a payment held their lock come in a later batch.
    eventually_within(300, Duration::from_millis(50), || async {
        let pending = query_value(&app.direct_url(), "SELECT count(*) FROM orders WHERE status = 'pending'").await?;
        (pending == "0").then_some(())
    })
    .await;
    let expired = workers.metric_sum(r#"ticketing_orders_total{outcome="expired"}"#).await as usize;

    let count = |sql: &'static str| {
        let url = app.direct_url();
        async move { query_value(&url, sql).await.unwrap().parse::<usize>().unwrap() }
    };
    let statuses =
        query_value(&app.direct_url(), "SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM orders")
            .await
            .unwrap();
    assert!(!statuses.contains("pending"), "every order left PENDING once: {statuses}");
    // A payment that met an expired order revived it (seats were free);
    // one that met a cancelled order was sent back for refund.
    let revived = count("SELECT count(*) FROM payment_notifications WHERE outcome = 'revived'").await;
    let paid = count("SELECT count(*) FROM payment_notifications WHERE outcome IN ('paid', 'revived')").await;
    assert_eq!(count("SELECT count(*) FROM orders WHERE status = 'paid'").await, paid);
    assert_eq!(count("SELECT count(*) FROM orders WHERE status = 'cancelled'").await, cancelled);
    assert_eq!(count("SELECT count(*) FROM orders WHERE status = 'expired'").await + revived, expired);
    assert_eq!(
        count("SELECT count(*) FROM payment_notifications WHERE outcome = 'refund_requested'").await,
        count("SELECT count(*) FROM orders WHERE status = 'cancelled'").await,
        "a cancelled order's payment is refunded"
    );
    // Tickets exist exactly for paid orders, one per seat.
    assert_eq!(
        count(
            "SELECT count(*) FROM orders o JOIN order_items i ON i.order_id = o.id \
             WHERE (o.status = 'paid') <> (i.quantity = (SELECT count(*) FROM tickets t WHERE t.order_id = o.id))"
        )
        .await,
        0
    );
    let (buckets, live) = held(&app, &category_id).await;
    assert_eq!(buckets, live, "inventory equals what paid orders hold");
}

#[tokio::test]
async fn the_worker_expires_unpaid_orders_and_returns_their_tickets() {
    let app = TestApp::builder().var("ORDER_HOLD_SECONDS", "1").var("WORKER_POLL_MS", "50").spawn().await;
    let Sale { customer, event: (event_id, category_id), .. } = sale(&app, 4, 4).await;
    let order = buy(&app, &customer.token, "will-expire", order_body(&event_id, &category_id, 4)).await;
    let id = order.body["id"].as_str().unwrap().to_owned();
    let sold_out = buy(&app, &customer.token, "too-early", order_body(&event_id, &category_id, 1)).await;
    assert_eq!(sold_out.status, StatusCode::CONFLICT);

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers: Vec<_> =
        (0..2).map(|_| tokio::spawn(ticketing_service::worker::run(app.state.clone(), stopped.clone()))).collect();
    let expired = eventually(|| async {
        let order = app.rest(Method::GET, &format!("/v1/orders/{id}"), Some(&customer.token), None).await;
        (order.body["status"] == "ORDER_STATUS_EXPIRED").then_some(order)
    })
    .await;
    assert_eq!(expired.body["status"], "ORDER_STATUS_EXPIRED");
    stop.send(true).unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(held(&app, &category_id).await, (0, 0));
    let again = buy(&app, &customer.token, "after-expiry", order_body(&event_id, &category_id, 4)).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
}

#[tokio::test]
async fn order_attempts_are_limited_per_user_but_replays_are_free() {
    let app = TestApp::builder().var("ORDER_LIMIT_PER_USER", "2").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let customer = app.user(Role::Customer).await;
    let other = app.user(Role::Customer).await;
    let (event_id, category_id) = on_sale(&app, &organizer, 50, 4).await;
    let body = order_body(&event_id, &category_id, 1);
    for key in ["first", "second"] {
        assert_eq!(buy(&app, &customer.token, key, body.clone()).await.status, StatusCode::CREATED);
    }
    let third = buy(&app, &customer.token, "third", body.clone()).await;
    assert_eq!(third.error_reason(429, "RESOURCE_EXHAUSTED"), "RATE_LIMITED");
    assert!(third.headers.contains_key("retry-after"));
    assert_eq!(third.headers["ratelimit-policy"], "\"orders_user\";q=2;w=60");
    let replay = buy(&app, &customer.token, "first", body.clone()).await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(buy(&app, &other.token, "first", body).await.status, StatusCode::CREATED, "limits are per user");
    assert_eq!(app.count(Table::Orders).await, 3);
}

#[tokio::test]
async fn after_a_sell_out_buyers_are_refused_from_memory_until_seats_come_back() {
    // A process of its own: the refusal counter below is this server's.
    let app = TestApp::builder().own_process().var("SOLD_OUT_MEMO_MS", "1000").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let (first, second) = (app.user(Role::Customer).await, app.user(Role::Customer).await);
    let (event_id, category_id) = on_sale(&app, &organizer, 3, 3).await;
    let two = buy(&app, &first.token, "two", order_body(&event_id, &category_id, 2)).await;
    assert_eq!(two.status, StatusCode::CREATED);
    let refusals = || async { metric_sample(&app.metrics().await, "ticketing_sold_out_memo_refusals_total") };

    // Two of three are gone: two more are refused, the first by the database,
    // the second from memory. A pair the machine spread past the memo's
    // lifetime is tried again, so no pair must land inside a time window:
    // without the memo no refusal ever comes from memory.
    eventually(|| async {
        let before = refusals().await;
        for _ in ["db", "memo"] {
            let refused =
                buy(&app, &second.token, &Uuid::now_v7().to_string(), order_body(&event_id, &category_id, 2)).await;
            assert_eq!(refused.error_reason(409, "ABORTED"), "SOLD_OUT");
            assert_eq!(refused.body["error"]["details"][0]["metadata"]["ticketCategoryId"], category_id.as_str());
        }
        (refusals().await > before).then_some(())
    })
    .await;
    // A smaller order still reaches the database and gets the last seat.
    let last = buy(&app, &second.token, "last", order_body(&event_id, &category_id, 1)).await;
    assert_eq!(last.status, StatusCode::CREATED, "{}", last.body);

    // Seats come back: once the memo lapses they are on sale again.
    let two_id = two.body["id"].as_str().unwrap();
    let cancelled = app.rest(Method::POST, &format!("/v1/orders/{two_id}:cancel"), Some(&first.token), None).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let bought = eventually(|| async {
        let again = buy(&app, &second.token, &Uuid::now_v7().to_string(), order_body(&event_id, &category_id, 2)).await;
        (again.status == StatusCode::CREATED).then_some(again)
    })
    .await;
    assert_eq!(bought.status, StatusCode::CREATED);
    assert_eq!(held(&app, &category_id).await, (3, 3));
}

/// The fast pass says SOLD_OUT itself, for that order alone: the orders
/// after it in its batch still buy, and the exact pass is left to a line
/// that must be split over buckets. The memo is off, so every refusal
/// reaches the database; exact passes are counted in this test's database.
#[tokio::test]
async fn a_sold_out_order_is_refused_in_its_batch_and_only_a_split_takes_the_exact_pass() {
    let app = TestApp::builder().var("SOLD_OUT_MEMO_MS", "0").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    // Four buckets of one ticket each; the other category parks the lanes.
    let (event_id, categories) = on_sale_in(&app, &organizer, &[("Festival", 4, 4), ("Parking", 100, 4)]).await;
    let (festival, parking) = (&categories[0], &categories[1]);
    let tokens: Vec<String> =
        bulk_customers(&app.direct_url(), 8).await.into_iter().map(|id| mint_token(id, Role::Customer)).collect();
    // hold_orders' exact branch: its one call of take_tickets.
    let url = app.direct_url();
    let exact_passes =
        || statement_calls(&url, &app.database, &["SELECT t.outcome, t.short_category%", "%FROM take_tickets(%"]);
    // Each customer orders once: one key will do.
    let order =
        |customer: usize, quantity| buy(&app, &tokens[customer], "festival", order_body(&event_id, festival, quantity));

    // Two tickets when no bucket holds two: split by the exact pass.
    assert_eq!(order(0, 2).await.status, StatusCode::CREATED);
    assert_eq!(exact_passes().await, 1);

    // Both lanes park on a lock inside their hold; three then one, with
    // two left in two buckets, queue into one batch in that order.
    let locker = app.lock("LOCK TABLE order_items IN SHARE MODE", &[]).await;
    let mut parked = Vec::new();
    for n in 0..2 {
        parked.push(buy_in_background(&app, &tokens[1 + n], "parking", &order_body(&event_id, parking, 1)));
        eventually(|| async { (app.lock_waiters().await == n + 1).then_some(()) }).await;
    }
    let lanes = &app.serving().hold_queue;
    let mut queued = Vec::new();
    for (n, quantity) in [3, 1].into_iter().enumerate() {
        queued.push(buy_in_background(&app, &tokens[3 + n], "festival", &order_body(&event_id, festival, quantity)));
        eventually(|| async { (lanes.queued() == n + 1).then_some(()) }).await;
    }
    locker.batch_execute("COMMIT").await.expect("lock released");
    for request in parked {
        assert_eq!(request.await.expect("answered").status, StatusCode::CREATED);
    }
    let (three, one) = (queued.remove(0).await.expect("answered"), queued.remove(0).await.expect("answered"));
    assert_eq!(three.error_reason(409, "ABORTED"), "SOLD_OUT");
    assert_eq!(three.body["error"]["details"][0]["metadata"]["ticketCategoryId"], festival.as_str());
    assert_eq!(one.status, StatusCode::CREATED, "the order after the sold-out one buys: {}", one.body);

    // One left: two are refused, one buys it, and then one is refused.
    assert_eq!(order(5, 2).await.error_reason(409, "ABORTED"), "SOLD_OUT");
    assert_eq!(order(6, 1).await.status, StatusCode::CREATED);
    assert_eq!(order(7, 1).await.error_reason(409, "ABORTED"), "SOLD_OUT");

    assert_eq!(exact_passes().await, 1, "only the split took the exact pass");
    assert_eq!(held(&app, festival).await, (4, 4));
}

/// Order n's quantities of the two categories: different per order, so an
/// order holding another's lines shows.
fn two_line_quantities(n: usize) -> (usize, usize) {
    (1 + n % 4, 1 + (n + 1) % 4)
}

/// Orders that reach the database while the hold lanes are busy go in one
/// call, each still all or nothing (two lines each here); an order that
/// fails inside a batch (an idempotency key the database already knows)
/// sends its neighbours one by one, and they are all held.
#[tokio::test]
async fn orders_queued_behind_busy_lanes_are_held_together_and_one_failure_fails_none() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let (event_id, festival) = on_sale(&app, &organizer, 200, 4).await;
    let vip = add_category(&app, &organizer, &event_id, "VIP", 200, 4).await;
    let tokens: Vec<String> =
        bulk_customers(&app.direct_url(), 20).await.into_iter().map(|id| mint_token(id, Role::Customer)).collect();
    let two_lines = |n: usize| {
        let (festival_quantity, vip_quantity) = two_line_quantities(n);
        json!({ "eventId": event_id, "items": [{ "ticketCategoryId": festival, "quantity": festival_quantity },
                                               { "ticketCategoryId": vip, "quantity": vip_quantity }] })
    };
    let send = |token: &String, key: String, body: Value| buy_in_background(&app, token, &key, &body);
    // The database knows this key and Redis has forgotten it: only the
    // unique index refuses it, failing the statement it is part of.
    let known_key = format!("known-{}", Uuid::now_v7());
    let known = buy(&app, &tokens[19], &known_key, two_lines(19)).await;
    assert_eq!(known.status, StatusCode::CREATED, "{}", known.body);
    let known_user: Uuid = query_one(
        &app.direct_url(),
        "SELECT user_id FROM orders WHERE id = $1",
        &[&uuid(known.body["id"].as_str().unwrap())],
    )
    .await
    .unwrap();
    app.state.redis.delete(&format!("idem:{known_user}:{known_key}")).await.unwrap();

    for (round, with_known_key) in [(0, false), (1, true)] {
        // Both lanes park on a lock inside their hold; the next orders queue.
        let locker = app.lock("LOCK TABLE order_items IN SHARE MODE", &[]).await;
        let mut parked = Vec::new();
        for n in 0..2 {
            parked.push(send(&tokens[round * 10 + n], Uuid::now_v7().to_string(), two_lines(n)));
            eventually(|| async { (app.lock_waiters().await == n + 1).then_some(()) }).await;
        }
        let mut queued: Vec<_> =
            (2..10).map(|n| send(&tokens[round * 10 + n], Uuid::now_v7().to_string(), two_lines(n))).collect();
        if with_known_key {
            queued.push(send(&tokens[19], known_key.clone(), two_lines(19)));
        }
        let expected = queued.len();
        let lanes = &app.serving().hold_queue;
        eventually(|| async { (lanes.queued() == expected).then_some(()) }).await;
        locker.batch_execute("COMMIT").await.expect("lock released");

        let mut placed = Vec::new();
        for (n, request) in parked.into_iter().chain(queued).enumerate() {
            let answer = request.await.expect("answered");
            assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
            if answer.headers.contains_key("idempotent-replayed") {
                assert_eq!(answer.body["id"], known.body["id"], "the known key replays its order");
            } else {
                placed.push((answer.body["id"].as_str().unwrap().to_owned(), n));
            }
        }
        assert_eq!(placed.len(), 10, "every other order is new");
        let ids = |orders: &[(String, usize)]| orders.iter().map(|(id, _)| uuid(id)).collect::<Vec<_>>();
        let committed_in: String = query_one(
            &app.direct_url(),
            "SELECT count(DISTINCT xmin::text)::text FROM orders WHERE id = ANY ($1::uuid[])",
            &[&ids(&placed[2..])],
        )
        .await
        .unwrap();
        let expected_transactions = if with_known_key { "8" } else { "1" };
        assert_eq!(committed_in, expected_transactions, "transactions that held the 8 queued orders");
        // Each order holds exactly the lines it asked for.
        placed.sort();
        let lines: String = query_one(
            &app.direct_url(),
            "SELECT string_agg(i.order_id || ':' || (i.ticket_category_id = $1) || ':' || i.quantity, ',' \
              ORDER BY i.order_id, i.ticket_category_id = $1) FROM order_items i WHERE i.order_id = ANY ($2::uuid[])",
            &[&uuid(&festival), &ids(&placed)],
        )
        .await
        .unwrap();
        let asked: Vec<String> = placed
            .iter()
            .flat_map(|(id, n)| {
                let (festival_quantity, vip_quantity) = two_line_quantities(*n);
                [format!("{id}:false:{vip_quantity}"), format!("{id}:true:{festival_quantity}")]
            })
            .collect();
        assert_eq!(lines, asked.join(","));
    }
    assert_eq!(app.count(Table::Orders).await, 21);
    let (festival_held, festival_sold) = held(&app, &festival).await;
    let (vip_held, vip_sold) = held(&app, &vip).await;
    assert_eq!((festival_held, vip_held), (festival_sold, vip_sold), "buckets hold what orders hold");
    // Orders 0-9 of both rounds, and the known key's order (19).
    let ordered = (0..10).chain(0..10).chain([19]).map(two_line_quantities);
    let expected = ordered.fold((0, 0), |(festival, vip), (f, v)| (festival + f as i64, vip + v as i64));
    assert_eq!((festival_sold, vip_sold), expected);
}

/// Orders whose event reads queue behind busy read lanes are read in one
/// statement, and each still sees only its own event and that event's
/// categories: a foreign or unknown category and an unknown event are
/// refused as when read alone, and their neighbours buy.
#[tokio::test]
async fn event_reads_queued_together_each_see_their_own_event() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let (first_event, first_category) = on_sale(&app, &organizer, 50, 4).await;
    let (second_event, second_category) = on_sale(&app, &organizer, 50, 4).await;
    let tokens: Vec<String> =
        bulk_customers(&app.direct_url(), 8).await.into_iter().map(|id| mint_token(id, Role::Customer)).collect();
    let send = |n: usize, body: Value| buy_in_background(&app, &tokens[n], &Uuid::now_v7().to_string(), &body);

    // Both read lanes park on the events table; the next reads queue.
    let locker = app.lock("LOCK TABLE events IN ACCESS EXCLUSIVE MODE", &[]).await;
    let mut parked = Vec::new();
    for n in 0..2 {
        parked.push(send(n, order_body(&first_event, &first_category, 1)));
        eventually(|| async { (app.lock_waiters().await == n + 1).then_some(()) }).await;
    }
    let queued = [
        send(2, order_body(&first_event, &first_category, 2)),
        send(3, order_body(&second_event, &second_category, 3)),
        send(4, order_body(&first_event, &second_category, 1)),
        send(5, order_body(&second_event, &Uuid::now_v7().to_string(), 1)),
        send(6, order_body(&Uuid::now_v7().to_string(), &first_category, 1)),
        send(7, order_body(&second_event, &second_category, 4)),
    ];
    let lanes = &app.serving().sale_reads;
    eventually(|| async { (lanes.queued() == queued.len()).then_some(()) }).await;
    locker.batch_execute("COMMIT").await.expect("lock released");

    for request in parked {
        let answer = request.await.expect("answered");
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }
    let mut answers = Vec::new();
    for request in queued {
        answers.push(request.await.expect("answered"));
    }
    let bought = |answer: &Response, event: &str, category: &str, quantity: i64| {
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        assert_eq!(answer.body["eventId"], event);
        assert_eq!(answer.body["items"][0]["ticketCategoryId"], category);
        assert_eq!(answer.body["items"][0]["quantity"], quantity);
    };
    bought(&answers[0], &first_event, &first_category, 2);
    bought(&answers[1], &second_event, &second_category, 3);
    bought(&answers[5], &second_event, &second_category, 4);
    for refused in &answers[2..4] {
        assert_eq!(refused.bad_fields(), ["items[0].ticketCategoryId"], "{}", refused.body);
    }
    assert_eq!(answers[4].error_reason(404, "NOT_FOUND"), "NOT_FOUND");
    assert_eq!(held(&app, &first_category).await, (4, 4));
    assert_eq!(held(&app, &second_category).await, (7, 7));
}

/// An organizer's change to the event holds the event row until it commits;
/// orders go on meanwhile (their foreign key only needs the event to exist).
#[tokio::test]
async fn orders_go_on_while_the_organizer_edits_the_event() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event: (event_id, category_id) } = sale(&app, 50, 4).await;

    // The edit locks the event row, then waits to write it behind this lock.
    let locker = app.lock("LOCK TABLE events IN SHARE MODE", &[]).await;
    let edit = {
        let request = app
            .http
            .patch(app.url(&format!("/v1/events/{event_id}")))
            .bearer_auth(&organizer.token)
            .json(&json!({ "description": "Doors open at six" }));
        tokio::spawn(async move { request.send().await.expect("sent").status() })
    };
    eventually(|| async { (app.lock_waiters().await == 1).then_some(()) }).await;
    let held_row: String = query_one(
        &app.direct_url(),
        "SELECT count(*)::text FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.datname = $1 \
          AND l.relation = 'events'::regclass AND l.mode = 'RowShareLock' AND l.granted",
        &[&app.database],
    )
    .await
    .unwrap();
    assert_ne!(held_row, "0", "the edit holds its lock on the event row");

    let bought = buy(&app, &customer.token, &Uuid::now_v7().to_string(), order_body(&event_id, &category_id, 2)).await;
    assert_eq!(bought.status, StatusCode::CREATED, "{}", bought.body);
    assert_eq!(app.lock_waiters().await, 1, "only the edit waits");

    locker.batch_execute("COMMIT").await.expect("lock released");
    assert_eq!(edit.await.expect("answered"), StatusCode::OK);
    // On the primary: the public page reads the replica, which may lag a moment.
    let description: Option<String> =
        query_one(&app.direct_url(), "SELECT description FROM events WHERE id = $1", &[&uuid(&event_id)]).await;
    assert_eq!(description.as_deref(), Some("Doors open at six"));
}

#[tokio::test]
async fn list_orders_pages_through_the_callers_own_newest_first_and_the_event_side_sees_one_order() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event: (event_id, category_id) } = sale(&app, 100, 4).await;
    let mut placed = Vec::new();
    for n in 0..5 {
        let bought = buy(&app, &customer.token, &format!("page-{n}"), order_body(&event_id, &category_id, 1)).await;
        assert_eq!(bought.status, StatusCode::CREATED, "{}", bought.body);
        placed.push(bought.body["id"].as_str().expect("id").to_owned());
    }
    let other = app.user(Role::Customer).await;
    let theirs = buy(&app, &other.token, "other", order_body(&event_id, &category_id, 1)).await;
    let their_order = theirs.body["id"].as_str().expect("id").to_owned();

    // Pages of two, newest first, until the token runs out: every one of the
    // caller's orders once, nobody else's.
    let (mut listed, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let path = format!("/v1/orders?pageSize=2&pageToken={token}");
        let page = app.rest(Method::GET, &path, Some(&customer.token), None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let orders = page.body["orders"].as_array().expect("orders");
        assert!(orders.len() <= 2, "{}", page.body);
        listed.extend(orders.iter().map(|o| o["id"].as_str().expect("id").to_owned()));
        pages += 1;
        assert!(pages <= 10, "paging never ends: {listed:?}");
        token = page.body["nextPageToken"].as_str().unwrap_or_default().to_owned();
        if token.is_empty() {
            break;
        }
    }
    let newest_first: Vec<String> = placed.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first, "in {pages} pages");
    assert!(pages >= 3);

    // The event's organizer and an admin see a buyer's order; another organizer is told it does not exist.
    let admin = app.user(Role::Admin).await;
    let stranger = app.user(Role::Organizer).await;
    let path = format!("/v1/orders/{their_order}");
    for (who, token) in [("organizer", &organizer.token), ("admin", &admin.token)] {
        let seen = app.rest(Method::GET, &path, Some(token), None).await;
        assert_eq!(seen.status, StatusCode::OK, "the {who}: {}", seen.body);
        assert_eq!(seen.body["id"], their_order.as_str());
    }
    assert_eq!(app.rest(Method::GET, &path, Some(&stranger.token), None).await.status, StatusCode::NOT_FOUND);
}

/// Orders for several categories each, their lines in every order, racing
/// over three server processes with cancellations among them. Every order
/// and every release locks categories in id order, so none waits for
/// another in a cycle: no deadlock (Postgres would abort one, a 500), no
/// oversell, and the buckets hold exactly what the live orders hold.
#[tokio::test]
async fn multi_category_orders_racing_over_three_processes_never_deadlock_or_oversell() {
    const CAPACITY: i32 = 40;
    let app = TestApp::builder().var("DATABASE_POOL_TIMEOUT_MS", "30000").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    // A few seats a bucket: orders of 3 seldom fit one bucket and take the
    // exact pass, which waits for every bucket of a category.
    let spec = [("North", CAPACITY, 6), ("South", CAPACITY, 6), ("East", CAPACITY, 6)];
    let (event_id, categories) = on_sale_in(&app, &organizer, &spec).await;
    let servers = Processes::start(3, &app.vars).await;
    let customers = bulk_customers(&app.direct_url(), 60).await;

    let orders = customers.iter().enumerate().map(|(n, customer)| {
        // Two or three categories, rotated and reversed: every pair of
        // categories is asked for in both orders.
        let mut lines: Vec<&String> = categories.iter().cycle().skip(n % 3).take(2 + n % 2).collect();
        if n % 2 == 1 {
            lines.reverse();
        }
        let items: Vec<Value> = lines
            .iter()
            .enumerate()
            .map(|(i, category)| json!({ "ticketCategoryId": category, "quantity": 2 + (n + i) % 2 }))
            .collect();
        let body = json!({ "eventId": event_id, "items": items });
        let token = mint_token(*customer, Role::Customer);
        let (http, base) = (app.http.clone(), servers.bases[n % 3].clone());
        tokio::spawn(async move {
            let created = order_request(&http, &base, &token, &Uuid::now_v7().to_string(), &body).send().await.unwrap();
            let status = created.status();
            let answer: Value = created.json().await.unwrap_or_default();
            // Every third buyer changes their mind: a release in the race too.
            if status == StatusCode::CREATED && n % 3 == 0 {
                let id = answer["id"].as_str().unwrap();
                let cancel =
                    http.post(format!("{base}/v1/orders/{id}:cancel")).bearer_auth(&token).send().await.unwrap();
                assert_eq!(cancel.status(), StatusCode::OK);
            }
            (status, answer)
        })
    });
    let answers = futures::future::join_all(orders.collect::<Vec<_>>()).await;
    let mut created = 0;
    for answer in answers {
        let (status, body) = answer.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => assert_eq!(body["error"]["details"][0]["reason"], "SOLD_OUT", "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert!(created >= 10, "{created} orders of 60 got seats");
    for category in &categories {
        let (buckets, orders) = held(&app, category).await;
        assert_eq!(buckets, orders, "the buckets hold what the live orders hold");
        assert!(buckets <= i64::from(CAPACITY), "{buckets} held of {CAPACITY}");
    }
}

/// An exact pass first picks one free bucket with room for its line
/// (`FOR UPDATE SKIP LOCKED`, filtered on room). A bucket whose row a commit
/// changed while the pick ran is locked in its newest version before its
/// room is checked again, and Postgres skips it without room but keeps the
/// lock. The pass then waited for every bucket in bucket order holding that
/// one out of order, and a release that held the buckets before it and
/// waited for it deadlocked with it: Postgres aborted one, a 500 (seen once
/// in `multi_category_orders_racing_over_three_processes_never_deadlock_or_oversell`).
/// Arranged here: a release holds bucket 0 and waits for bucket 1; bucket
/// 8's last seat is taken by a commit while the pass picks; the pass waits
/// for bucket 0; bucket 1 is let go. Both must finish.
#[tokio::test]
async fn an_exact_pass_waiting_for_every_bucket_holds_none_its_pick_skipped() {
    const TRIALS: usize = 40;
    let app = TestApp::spawn().await;
    let Sale { event: (_, category_id), .. } =
        sale(&app, 2 * ticketing_store::inventory::BUCKETS_PER_CATEGORY, 4).await;
    let category = uuid(&category_id);
    // A long transaction elsewhere (a report, a backup) keeps every old
    // version of the buckets' rows: the pick's scan walks them, a few
    // milliseconds, so a commit can land inside it.
    let report = app.lock("SELECT txid_current()", &[]).await;
    execute(
        &app.direct_url(),
        "DO $$ BEGIN FOR i IN 1 .. 2000 LOOP UPDATE inventory_buckets SET held = held; END LOOP; END $$",
        &[],
    )
    .await;
    let watcher = app.session().await;
    let exact_pass_running = "SELECT count(*) FROM pg_stat_activity \
                              WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' \
                                AND query LIKE '%FROM take_tickets(%'";

    let mut landed_in_the_pick = false;
    for _ in 0..TRIALS {
        // Every bucket full but bucket 8, which has one seat left.
        let refill = "UPDATE inventory_buckets SET held = capacity - (bucket = 8)::int WHERE ticket_category_id = $1";
        execute(&app.direct_url(), refill, &[&category]).await;
        let bucket_1 = app
            .lock("SELECT FROM inventory_buckets WHERE ticket_category_id = $1 AND bucket = 1 FOR UPDATE", &[&category])
            .await;
        let db = app.state.db.clone();
        let release = tokio::spawn(async move {
            db.write(|conn| async move { ticketing_store::inventory::release(conn, category, 1).await }.scope_boxed())
                .await
        });
        eventually(|| async { (app.lock_waiters().await == 1).then_some(()) }).await;

        let last_seat = app
            .lock(
                "UPDATE inventory_buckets SET held = capacity WHERE ticket_category_id = $1 AND bucket = 8",
                &[&category],
            )
            .await;
        let db = app.state.db.clone();
        let exact_pass = tokio::spawn(async move {
            db.write(|conn| {
                async move { ticketing_store::inventory::take_exact(conn, &[(category, 1)]).await }.scope_boxed()
            })
            .await
        });
        // As soon as the pass runs (no pause: its pick lasts milliseconds).
        let mut polls = 0;
        while watcher.query_one(exact_pass_running, &[]).await.expect("pg_stat_activity").get::<_, i64>(0) == 0 {
            polls += 1;
            assert!(polls < 100_000, "the exact pass never ran");
        }
        last_seat.batch_execute("COMMIT").await.expect("the last seat taken");
        // The pass waits for bucket 0, which the release holds.
        eventually(|| async { (app.lock_waiters().await == 2).then_some(()) }).await;
        // The commit landed inside the pick when the pick locked bucket 8's
        // newest row: it has a locker (held still, or let go).
        let locked_by_the_pick: bool = query_one(
            &app.direct_url(),
            "SELECT xmax::text <> '0' FROM inventory_buckets WHERE ticket_category_id = $1 AND bucket = 8",
            &[&category],
        )
        .await
        .expect("bucket 8");

        bucket_1.batch_execute("ROLLBACK").await.expect("bucket 1 let go");
        release.await.unwrap().expect("the release finished");
        let short = exact_pass.await.unwrap().expect("the exact pass finished");
        assert_eq!(short, None, "the seat the release gave back was taken");
        if locked_by_the_pick {
            landed_in_the_pick = true;
            break;
        }
    }
    drop(report);
    assert!(landed_in_the_pick, "in {TRIALS} trials, the last seat's commit never landed inside the pick");
}

/// A quota so large that its interval is below the float's resolution at
/// today's epoch milliseconds once set a key to expire in 0 ms, which Redis
/// refuses: every order then fell to the per-replica fallback.
#[tokio::test]
async fn a_very_large_order_limit_is_decided_in_redis() {
    let app = TestApp::builder().own_process().var("ORDER_LIMIT_PER_USER", "4000000000").spawn().await;
    let Sale { customer, event, .. } = sale(&app, 100, 4).await;
    let decisions = |metrics: &str, decision: &str| {
        metric_sample(
            metrics,
            &format!(r#"ticketing_rate_limit_decisions_total{{limit="orders_user",decision="{decision}"}}"#),
        )
    };
    let placed = buy(&app, &customer.token, "huge-quota", order_body(&event.0, &event.1, 1)).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);
    let metrics = app.metrics().await;
    assert_eq!(decisions(&metrics, "allowed"), 1.0, "{metrics}");
    assert_eq!(decisions(&metrics, "local_allowed"), 0.0);
}

/// Where an order's time goes is measured stage by stage: each stage an
/// order passes is timed under its own label, and in each batching lane its
/// wait and its batch's call apart. A process of its own, so the counts are
/// this order's.
#[tokio::test]
async fn an_order_times_each_stage_it_passes() {
    let app = TestApp::builder().own_process().spawn().await;
    let Sale { customer, event, .. } = sale(&app, 100, 4).await;
    let phases = ["claim", "limit", "sale_read", "hold", "complete"];
    let lanes = ["sale_read", "hold"];
    let counts = |metrics: String| {
        let stages = phases.map(|phase| {
            metric_sample(&metrics, &format!(r#"ticketing_order_phase_seconds_count{{phase="{phase}"}}"#))
        });
        // Each lane it passed timed the order's wait for a batch, and the batch's call.
        let lane = |histogram: &str| {
            lanes.map(|lane| metric_sample(&metrics, &format!(r#"{histogram}_count{{lanes="{lane}"}}"#)))
        };
        [stages.as_slice(), &lane("ticketing_batch_wait_seconds"), &lane("ticketing_batch_call_seconds")].concat()
    };
    let before = counts(app.metrics().await);
    let placed = buy(&app, &customer.token, "timed-stages", order_body(&event.0, &event.1, 1)).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);
    let after = counts(app.metrics().await);
    let names = phases.iter().map(|p| format!("phase {p}"));
    let names = names.chain(["wait", "call"].iter().flat_map(|t| lanes.iter().map(move |l| format!("{l} lane {t}"))));
    for ((name, before), after) in names.zip(before).zip(after) {
        assert_eq!(after - before, 1.0, "{name}");
    }
}
