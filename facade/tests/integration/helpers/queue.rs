//! The waiting room as a customer's browser goes through it: fetch a
//! challenge, solve it (the `altcha` crate's solver, as the widget would),
//! join, read the entry.

use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Response, TestApp, TestUser, add_category, event_body, eventually, eventually_within};

/// A room that admits `admit_per_minute`, with the cheapest proof-of-work
/// (tests of the challenge itself set their own).
pub fn room(admit_per_minute: i32, max_active_buyers: i32) -> Value {
    json!({ "enabled": true, "admitPerMinute": admit_per_minute, "admissionMinutes": 10,
            "maxActiveBuyers": max_active_buyers, "challengeDifficulty": 1 })
}

/// A published event with `room`, sales opening at `sales_start`, and one
/// category of 1,000 seats; returns (event id, category id).
pub async fn room_event(
    app: &TestApp,
    organizer: &TestUser,
    room: Value,
    sales_start: DateTime<Utc>,
) -> (String, String) {
    let mut body = event_body("Stadium on-sale");
    body["waitingRoom"] = room;
    body["salesStartTime"] = json!(sales_start.to_rfc3339());
    let created = app.rest(Method::POST, "/v1/events", Some(&organizer.token), Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let event_id = created.body["id"].as_str().expect("id").to_owned();
    let category_id = add_category(app, organizer, &event_id, "Tribune", 1000, 4).await;
    let published =
        app.rest(Method::POST, &format!("/v1/events/{event_id}:publish"), Some(&organizer.token), None).await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.body);
    // Joins read the public event, which the replica serves a moment later
    // (and a miss stays cached for the local TTL).
    let path = format!("/v1/events/{event_id}");
    eventually_within(100, std::time::Duration::from_millis(50), || async {
        (app.rest(Method::GET, &path, None, None).await.status == StatusCode::OK).then_some(())
    })
    .await;
    (event_id, category_id)
}

/// The widget's value for a challenge as `GET …/queue:challenge` answers it.
pub fn solve(challenge: &Value) -> String {
    let parsed: altcha::Challenge = serde_json::from_value(challenge.clone()).expect("an ALTCHA v2 challenge");
    let solution = altcha::solve_challenge(altcha::SolveChallengeOptions::new(&parsed))
        .expect("solvable")
        .expect("solved within the solver's time");
    let payload = altcha::Payload { challenge: parsed, solution };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&payload).expect("payload JSON"))
}

pub async fn challenge(app: &TestApp, token: &str, event_id: &str) -> Value {
    let challenge = app.rest(Method::GET, &format!("/v1/events/{event_id}/queue:challenge"), Some(token), None).await;
    assert_eq!(challenge.status, StatusCode::OK, "{}", challenge.body);
    challenge.body
}

pub async fn join_with(app: &TestApp, token: &str, event_id: &str, altcha: &str) -> Response {
    let body = json!({ "altcha": altcha });
    app.rest(Method::POST, &format!("/v1/events/{event_id}/queue:join"), Some(token), Some(body)).await
}

/// Fetches a challenge, solves it and joins.
pub async fn join(app: &TestApp, token: &str, event_id: &str) -> Response {
    let solved = solve(&challenge(app, token, event_id).await);
    join_with(app, token, event_id, &solved).await
}

pub async fn queue_entry(app: &TestApp, token: &str, event_id: &str, entry_id: &str) -> Response {
    app.rest(Method::GET, &format!("/v1/events/{event_id}/queue/{entry_id}"), Some(token), None).await
}

/// Moves the event's sales start to now and waits until the public event
/// shows it (the catalog cache refills from the replica, which trails).
pub async fn start_sales_now(app: &TestApp, organizer: &TestUser, event_id: &str) {
    let now = Utc::now();
    let body = json!({ "salesStartTime": now.to_rfc3339() });
    let path = format!("/v1/events/{event_id}");
    let started = app.rest(Method::PATCH, &path, Some(&organizer.token), Some(body)).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.body);
    eventually(|| async {
        let event = app.rest(Method::GET, &path, None, None).await;
        let start = event.body["salesStartTime"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok())?;
        (start <= Utc::now() && start >= now - chrono::Duration::seconds(1)).then_some(())
    })
    .await;
}
