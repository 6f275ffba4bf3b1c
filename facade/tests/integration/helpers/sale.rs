//! Arranging a sale over the API: events, categories, buyers, orders, paid
//! tickets and scanners.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use ticketing_domain::identity::Role;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{
    Response, TEST_JWT_SECRET, TestApp, TestUser, deliver, eventually, execute, notification, query_one, uuid,
};

/// A valid event body, times relative to now.
pub fn event_body(name: &str) -> Value {
    let now = chrono::Utc::now();
    json!({
        "name": name,
        "description": "An evening of jazz",
        "venue": "JIExpo Kemayoran",
        "timeZone": "Asia/Jakarta",
        "startTime": (now + chrono::Duration::days(30)).to_rfc3339(),
        "endTime": (now + chrono::Duration::days(30) + chrono::Duration::hours(4)).to_rfc3339(),
        "salesStartTime": (now - chrono::Duration::hours(1)).to_rfc3339(),
        "salesEndTime": (now + chrono::Duration::days(29)).to_rfc3339(),
        // Most tests' one customer buys far past the default 10; the limit's
        // own tests (front_door) set theirs.
        "maxTicketsPerCustomer": 10000,
    })
}

pub fn category_body(name: &str, capacity: i32) -> Value {
    json!({
        "name": name,
        "price": { "currencyCode": "IDR", "units": "750000", "nanos": 0 },
        "capacity": capacity,
        "maxPerOrder": 4,
    })
}

/// Creates, fills and publishes an event over REST; returns its id.
pub async fn published_event(app: &TestApp, organizer: &TestUser, name: &str) -> String {
    let id = published_event_unread(app, organizer, name).await;
    public_soon(app, &id).await;
    id
}

/// [`published_event`] without waiting for it to be public, which reads it
/// through the API (and fills the caches): for a test of a cold cache.
pub async fn published_event_unread(app: &TestApp, organizer: &TestUser, name: &str) -> String {
    let created = app.rest(Method::POST, "/v1/events", Some(&organizer.token), Some(event_body(name))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let category = app
        .rest(
            Method::POST,
            &format!("/v1/events/{id}/ticketCategories"),
            Some(&organizer.token),
            Some(category_body("Festival", 500)),
        )
        .await;
    assert_eq!(category.status, StatusCode::CREATED, "{}", category.body);
    let published = app.rest(Method::POST, &format!("/v1/events/{id}:publish"), Some(&organizer.token), None).await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.body);
    id
}

/// Waits until a just-published event is public: public reads come from the
/// replica, which may trail the publish by a moment.
async fn public_soon(app: &TestApp, event_id: &str) {
    let path = format!("/v1/events/{event_id}");
    eventually(|| async { (app.rest(Method::GET, &path, None, None).await.status == StatusCode::OK).then_some(()) })
        .await;
}

/// A token for `user_id` signed with [`TEST_JWT_SECRET`]: for tests that need
/// many accounts without paying argon2 for each.
pub fn mint_token(user_id: Uuid, role: Role) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "sub": user_id, "role": role.as_str(), "iss": "ticketing", "iat": now, "exp": now + 3600 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .expect("token")
}

/// Inserts `count` customers directly (their password hash is unusable).
pub async fn bulk_customers(direct_url: &str, count: usize) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let sql = "INSERT INTO users (id, email, password_hash, role) \
               SELECT id, 'bulk-' || replace(id::text, '-', '') || '@example.com', 'unusable', 'customer' \
                 FROM unnest($1::uuid[]) AS id";
    assert_eq!(execute(direct_url, sql, &[&ids]).await as usize, count, "customers inserted");
    ids
}

/// The cast of most tests: an organizer, a customer, and the organizer's
/// event on sale (see [`on_sale`]).
pub struct Sale {
    pub organizer: TestUser,
    pub customer: TestUser,
    /// (event id, category id)
    pub event: (String, String),
}

/// A [`Sale`] of one category: `capacity` seats at 750,000 IDR, at most
/// `max_per_order` an order.
pub async fn sale(app: &TestApp, capacity: i32, max_per_order: i32) -> Sale {
    let organizer = app.user(Role::Organizer).await;
    let customer = app.user(Role::Customer).await;
    let event = on_sale(app, &organizer, capacity, max_per_order).await;
    Sale { organizer, customer, event }
}

/// A published event with one category; returns (event id, category id).
pub async fn on_sale(app: &TestApp, organizer: &TestUser, capacity: i32, max_per_order: i32) -> (String, String) {
    let (event_id, categories) = on_sale_in(app, organizer, &[("Festival", capacity, max_per_order)]).await;
    (event_id, categories[0].clone())
}

/// A published event with a category per (name, capacity, max per order);
/// returns the event's id and the categories' ids in that order.
pub async fn on_sale_in(app: &TestApp, organizer: &TestUser, categories: &[(&str, i32, i32)]) -> (String, Vec<String>) {
    let event = app.rest(Method::POST, "/v1/events", Some(&organizer.token), Some(event_body("Flash sale"))).await;
    let event_id = event.body["id"].as_str().unwrap().to_owned();
    let mut category_ids = Vec::new();
    for (name, capacity, max_per_order) in categories {
        category_ids.push(add_category(app, organizer, &event_id, name, *capacity, *max_per_order).await);
    }
    let published =
        app.rest(Method::POST, &format!("/v1/events/{event_id}:publish"), Some(&organizer.token), None).await;
    assert_eq!(published.status, StatusCode::OK);
    public_soon(app, &event_id).await;
    (event_id, category_ids)
}

/// A category at 750,000 IDR a seat; returns its id.
pub async fn add_category(
    app: &TestApp,
    organizer: &TestUser,
    event_id: &str,
    name: &str,
    capacity: i32,
    max_per_order: i32,
) -> String {
    let category = app
        .rest(
            Method::POST,
            &format!("/v1/events/{event_id}/ticketCategories"),
            Some(&organizer.token),
            Some(json!({ "name": name, "price": { "currencyCode": "IDR", "units": "750000" },
                         "capacity": capacity, "maxPerOrder": max_per_order })),
        )
        .await;
    assert_eq!(category.status, StatusCode::CREATED, "{}", category.body);
    category.body["id"].as_str().unwrap().to_owned()
}

pub fn order_body(event_id: &str, category_id: &str, quantity: i32) -> Value {
    json!({ "eventId": event_id, "items": [{ "ticketCategoryId": category_id, "quantity": quantity }] })
}

/// An order as a client sends it to the server at `base` (`http://host:port`).
pub fn order_request(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    http.post(format!("{base}/v1/orders")).bearer_auth(token).header("idempotency-key", key).json(body)
}

pub async fn buy(app: &TestApp, token: &str, key: &str, body: Value) -> Response {
    app.raw(order_request(&app.http, &app.url(""), token, key, &body)).await
}

/// [`buy`] in a task of its own, for an order that must be in flight while
/// the test goes on; awaiting the task gives its answer.
pub fn buy_in_background(app: &TestApp, token: &str, key: &str, body: &Value) -> JoinHandle<Response> {
    let request = order_request(&app.http, &app.url(""), token, key, body);
    tokio::spawn(async move { Response::read(request.send().await.expect("order sent")).await })
}

/// Sum of what the category's buckets hold, and of what live orders hold
/// (pending and paid orders' tickets, less those refunded): the two must
/// always agree.
pub async fn held(app: &TestApp, category_id: &str) -> (i64, i64) {
    let category = uuid(category_id);
    let buckets = "SELECT coalesce(sum(held), 0) FROM inventory_buckets WHERE ticket_category_id = $1";
    let orders = "SELECT (SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o ON o.id = i.order_id \
                          WHERE i.ticket_category_id = $1 AND o.status IN ('pending', 'paid')) \
                       - (SELECT count(*) FROM refunded_tickets r JOIN tickets t ON t.id = r.ticket_id \
                          JOIN orders o ON o.id = t.order_id WHERE t.ticket_category_id = $1 AND o.status = 'paid')";
    let buckets = query_one(&app.direct_url(), buckets, &[&category]).await.expect("a sum");
    let orders = query_one(&app.direct_url(), orders, &[&category]).await.expect("a sum");
    (buckets, orders)
}

/// An order's status, read on the primary.
pub async fn order_status(app: &TestApp, order_id: &str) -> String {
    query_one(&app.direct_url(), "SELECT status FROM orders WHERE id = $1", &[&uuid(order_id)])
        .await
        .expect("the order")
}

/// The id of the order a ticket belongs to.
pub async fn order_of_ticket(app: &TestApp, ticket_id: &str) -> String {
    let sql = "SELECT order_id FROM tickets WHERE id = $1";
    let order: Uuid = query_one(&app.direct_url(), sql, &[&uuid(ticket_id)]).await.expect("the ticket");
    order.to_string()
}

/// A paid order's tickets: (ticket id, code).
pub async fn paid_tickets(
    app: &TestApp,
    customer: &TestUser,
    event: &(String, String),
    quantity: i32,
) -> Vec<(String, String)> {
    paid_order(app, customer, event, quantity, "bank_transfer").await.1
}

/// An order paid through the webhook with Midtrans's `payment_type`
/// (`qris`, `bank_transfer`, …): its id and its tickets (id, code).
pub async fn paid_order(
    app: &TestApp,
    customer: &TestUser,
    event: &(String, String),
    quantity: i32,
    payment_type: &str,
) -> (String, Vec<(String, String)>) {
    let order = buy(app, &customer.token, &Uuid::now_v7().to_string(), order_body(&event.0, &event.1, quantity)).await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    let order_id = order.body["id"].as_str().unwrap().to_owned();
    let amount = format!("{}.00", 750_000 * quantity);
    let mut settlement = notification(&order_id, "settlement", &amount);
    settlement["payment_type"] = payment_type.into();
    let paid = deliver(app, &settlement).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    let tickets = app.rest(Method::GET, &format!("/v1/orders/{order_id}/tickets"), Some(&customer.token), None).await;
    let tickets = tickets.body["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t["code"].as_str().unwrap().to_owned()))
        .collect();
    (order_id, tickets)
}

/// A scanner for an event: (scanner id, device token).
pub async fn scanner(app: &TestApp, organizer: &TestUser, event_id: &str, name: &str) -> (String, String) {
    let created = app
        .rest(
            Method::POST,
            &format!("/v1/events/{event_id}/scanners"),
            Some(&organizer.token),
            Some(json!({ "name": name })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    (created.body["scannerId"].as_str().unwrap().to_owned(), created.body["token"].as_str().unwrap().to_owned())
}

/// A customer's pending order of `quantity` tickets; returns its id.
pub async fn pending_order(app: &TestApp, customer: &TestUser, event: &(String, String), quantity: i32) -> String {
    let key = Uuid::now_v7().to_string();
    let order = buy(app, &customer.token, &key, order_body(&event.0, &event.1, quantity)).await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    order.body["id"].as_str().unwrap().to_owned()
}
