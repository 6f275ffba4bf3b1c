//! API keys for internal tools: a key acts as its creator within its
//! scopes, on REST and gRPC; it never buys; expiry and revocation hold at
//! once on every replica; it is rate limited on its own; and what it does
//! is attributed to it in the audit trail and the logs.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use ticketing_domain::identity::Role;
use ticketing_proto::v1::{self, auth_service_client::AuthServiceClient, catalog_service_client::CatalogServiceClient};

use crate::helpers::{
    Processes, Response, Table, TestApp, TestUser, authed, event_body, eventually_within, on_sale, order_body,
};

/// Creates a key over REST; returns (key id, secret).
async fn create_key(app: &TestApp, owner: &TestUser, scopes: &[&str], expire: Option<String>) -> (String, String) {
    let mut body = json!({ "name": "sales export", "scopes": scopes });
    if let Some(expire) = expire {
        body["expireTime"] = expire.into();
    }
    let created = app.rest(Method::POST, "/v1/apiKeys", Some(&owner.token), Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let secret = created.body["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("tk_"), "{secret}");
    (created.body["apiKey"]["id"].as_str().expect("id").to_owned(), secret)
}

async fn draft_event(app: &TestApp, organizer: &TestUser) -> String {
    let created = app.rest(Method::POST, "/v1/events", Some(&organizer.token), Some(event_body("Draft"))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_key_acts_as_its_creator_within_its_scopes_over_rest_and_grpc() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let other_organizer = app.user(Role::Organizer).await;
    let mine = draft_event(&app, &organizer).await;
    let theirs = draft_event(&app, &other_organizer).await;
    let (key_id, key) =
        create_key(&app, &organizer, &["API_KEY_SCOPE_EVENTS_READ", "API_KEY_SCOPE_REPORTS"], None).await;

    // The list shows the key, never its secret.
    let listed = app.rest(Method::GET, "/v1/apiKeys", Some(&organizer.token), None).await;
    assert_eq!(listed.body["apiKeys"][0]["id"], key_id.as_str());
    assert_eq!(listed.body["apiKeys"][0]["scopes"], json!(["API_KEY_SCOPE_EVENTS_READ", "API_KEY_SCOPE_REPORTS"]));
    assert!(!listed.body.to_string().contains(&key), "a listed key shows no secret");

    // As its creator: their own draft is visible; another organizer's is not.
    let own = app.rest(Method::GET, &format!("/v1/events/{mine}"), Some(&key), None).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(own.body["status"], "EVENT_STATUS_DRAFT");
    let foreign = app.rest(Method::GET, &format!("/v1/events/{theirs}"), Some(&key), None).await;
    assert_eq!(foreign.error_reason(404, "NOT_FOUND"), "NOT_FOUND", "what the creator gets");
    let report = app.rest(Method::POST, &format!("/v1/events/{mine}/reports"), Some(&key), None).await;
    assert_eq!(report.status, StatusCode::CREATED, "{}", report.body);

    // Within its scopes only.
    let edit =
        app.rest(Method::PATCH, &format!("/v1/events/{mine}"), Some(&key), Some(json!({ "name": "Renamed" }))).await;
    assert_eq!(edit.error_reason(403, "PERMISSION_DENIED"), "API_KEY_SCOPE_MISSING");
    assert_eq!(edit.body["error"]["details"][0]["metadata"]["scope"], "events:write");

    // The same over gRPC.
    let mut catalog = CatalogServiceClient::new(app.channel().await);
    let event = catalog.get_event(authed(v1::GetEventRequest { event_id: mine.clone() }, &key)).await.expect("read");
    assert_eq!(event.get_ref().id, mine);
    let foreign = catalog
        .get_event(authed(v1::GetEventRequest { event_id: theirs.clone() }, &key))
        .await
        .expect_err("another organizer's draft");
    assert_eq!(foreign.code(), tonic::Code::NotFound, "what the creator gets: {foreign:?}");
    let update = v1::UpdateEventRequest { event_id: mine.clone(), name: Some("Renamed".into()), ..Default::default() };
    let refused = catalog.update_event(authed(update, &key)).await.expect_err("no events:write");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    // No scope lets a key manage keys: not over REST, not over gRPC.
    let everything = [
        "API_KEY_SCOPE_EVENTS_READ",
        "API_KEY_SCOPE_EVENTS_WRITE",
        "API_KEY_SCOPE_ORDERS_READ",
        "API_KEY_SCOPE_REPORTS",
        "API_KEY_SCOPE_CHECKIN_ADMIN",
    ];
    let (_, all_scopes) = create_key(&app, &organizer, &everything, None).await;
    let body = json!({ "name": "escalate", "scopes": ["API_KEY_SCOPE_EVENTS_WRITE"] });
    let minted = app.rest(Method::POST, "/v1/apiKeys", Some(&all_scopes), Some(body)).await;
    assert_eq!(minted.error_reason(403, "PERMISSION_DENIED"), "API_KEY_SCOPE_MISSING");
    let mut auth = AuthServiceClient::new(app.channel().await);
    let request = v1::CreateApiKeyRequest { name: "escalate".into(), scopes: vec![2], expire_time: None };
    let refused = auth.create_api_key(authed(request, &all_scopes)).await.expect_err("keys cannot make keys");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn a_key_never_buys_and_customers_cannot_have_one() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let customer = app.user(Role::Customer).await;
    let (event_id, category_id) = on_sale(&app, &organizer, 100, 4).await;
    let refused = app
        .rest(
            Method::POST,
            "/v1/apiKeys",
            Some(&customer.token),
            Some(json!({ "name": "bot", "scopes": ["API_KEY_SCOPE_EVENTS_READ"] })),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);

    // Even an admin's key with every scope cannot order, queue or pay.
    let admin = app.user(Role::Admin).await;
    let (_, key) = create_key(&app, &admin, &["API_KEY_SCOPE_EVENTS_READ", "API_KEY_SCOPE_ORDERS_READ"], None).await;
    let order = app
        .raw(
            reqwest::Client::new()
                .post(app.url("/v1/orders"))
                .bearer_auth(&key)
                .header("idempotency-key", "k1")
                .json(&order_body(&event_id, &category_id, 1)),
        )
        .await;
    assert_eq!(order.error_reason(403, "PERMISSION_DENIED"), "API_KEY_SCOPE_MISSING");
    let queue = app.rest(Method::POST, &format!("/v1/events/{event_id}/queue:join"), Some(&key), Some(json!({}))).await;
    assert_eq!(queue.error_reason(403, "PERMISSION_DENIED"), "API_KEY_SCOPE_MISSING");
    assert_eq!(app.count(Table::Orders).await, 0, "nothing was written");
}

#[tokio::test]
async fn expiry_and_revocation_hold_at_once_on_every_replica() {
    let app = TestApp::spawn().await;
    let replicas = Processes::start(2, &app.vars).await;
    let organizer = app.user(Role::Organizer).await;
    let event_id = draft_event(&app, &organizer).await;
    let http = reqwest::Client::new();
    let read = |base: &str, key: &str| {
        let request = http.get(format!("{base}/v1/events/{event_id}")).bearer_auth(key);
        async move { Response::read(request.send().await.expect("answered")).await }
    };

    let (key_id, key) = create_key(&app, &organizer, &["API_KEY_SCOPE_EVENTS_READ"], None).await;
    for base in &replicas.bases {
        assert_eq!(read(base, &key).await.status, StatusCode::OK);
    }
    // Revoked through one replica: refused by the other on its next call.
    let revoke = http
        .post(format!("{}/v1/apiKeys/{key_id}:revoke", replicas.bases[0]))
        .bearer_auth(&organizer.token)
        .send()
        .await
        .expect("answered");
    let revoked = Response::read(revoke).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert!(revoked.body["revokeTime"].is_string(), "{}", revoked.body);
    for base in &replicas.bases {
        assert_eq!(read(base, &key).await.error_reason(401, "UNAUTHENTICATED"), "INVALID_TOKEN");
    }
    let mut catalog = CatalogServiceClient::new(app.channel().await);
    let refused = catalog
        .get_event(authed(v1::GetEventRequest { event_id: event_id.clone() }, &key))
        .await
        .expect_err("revoked, over gRPC too");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    // Another user cannot revoke someone's key (it is not found for them).
    let (other_id, _) = create_key(&app, &organizer, &["API_KEY_SCOPE_EVENTS_READ"], None).await;
    let stranger = app.user(Role::Organizer).await;
    let attempt = app.rest(Method::POST, &format!("/v1/apiKeys/{other_id}:revoke"), Some(&stranger.token), None).await;
    assert_eq!(attempt.error_reason(404, "NOT_FOUND"), "NOT_FOUND");

    // A key that expires in two seconds works until then, then nowhere.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (_, short_lived) = create_key(&app, &organizer, &["API_KEY_SCOPE_EVENTS_READ"], Some(soon)).await;
    assert_eq!(read(&replicas.bases[1], &short_lived).await.status, StatusCode::OK);
    eventually_within(100, Duration::from_millis(100), || async {
        (read(&replicas.bases[1], &short_lived).await.status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    assert_eq!(read(&replicas.bases[0], &short_lived).await.status, StatusCode::UNAUTHORIZED);
    let expired = catalog
        .get_event(authed(v1::GetEventRequest { event_id: event_id.clone() }, &short_lived))
        .await
        .expect_err("expired, over gRPC too");
    assert_eq!(expired.code(), tonic::Code::Unauthenticated, "{expired:?}");

    // An expiry in the past, a forged secret, an unknown scope: refused.
    let past = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    let body = json!({ "name": "x", "scopes": ["API_KEY_SCOPE_EVENTS_READ"], "expireTime": past });
    let stale = app.rest(Method::POST, "/v1/apiKeys", Some(&organizer.token), Some(body)).await;
    assert_eq!(stale.bad_fields(), vec!["expireTime"]);
    let forged = format!("{}A", &key[..key.len() - 1]);
    assert_eq!(read(&replicas.bases[0], &forged).await.status, StatusCode::UNAUTHORIZED);
    let unknown = json!({ "name": "x", "scopes": ["API_KEY_SCOPE_EVERYTHING"] });
    let rejected = app.rest(Method::POST, "/v1/apiKeys", Some(&organizer.token), Some(unknown)).await;
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST, "{}", rejected.body);
}

#[tokio::test]
async fn a_key_is_rate_limited_on_its_own() {
    let app = TestApp::builder().var("API_KEY_LIMIT_PER_MINUTE", "5").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let event_id = draft_event(&app, &organizer).await;
    let (_, busy) = create_key(&app, &organizer, &["API_KEY_SCOPE_EVENTS_READ"], None).await;
    let (_, quiet) = create_key(&app, &organizer, &["API_KEY_SCOPE_EVENTS_READ"], None).await;
    let path = format!("/v1/events/{event_id}");
    for _ in 0..5 {
        assert_eq!(app.rest(Method::GET, &path, Some(&busy), None).await.status, StatusCode::OK);
    }
    let limited = app.rest(Method::GET, &path, Some(&busy), None).await;
    assert_eq!(limited.error_reason(429, "RESOURCE_EXHAUSTED"), "RATE_LIMITED");
    assert!(limited.headers.contains_key("retry-after"), "{:?}", limited.headers);
    assert!(limited.headers.contains_key("ratelimit"), "{:?}", limited.headers);
    assert_eq!(app.rest(Method::GET, &path, Some(&quiet), None).await.status, StatusCode::OK, "another key is not");
    assert_eq!(app.rest(Method::GET, &path, Some(&organizer.token), None).await.status, StatusCode::OK, "nor the user");
}

#[tokio::test]
async fn what_a_key_changes_is_attributed_to_it_in_the_audit_trail_and_the_logs() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let mut vars = app.vars.clone();
    vars.insert("RUST_LOG".into(), "info".into());
    // Production's JSON log lines, which the test reads.
    vars.insert("ENV".into(), "production".into());
    vars.insert("CORS_ALLOW_ORIGINS".into(), "https://shop.example.com".into());
    vars.insert("TICKET_KEY_ENCRYPTION_KEY".into(), "c2VhbGVkLWJ5LWEtdGVzdC1vZi10aGUtbG9nLWxpbmU=".into());
    vars.entry("SMTP_URL".into()).or_insert_with(|| "smtp://127.0.0.1:25".into());
    let log = std::env::temp_dir().join(format!("ticketing-api-key-log-{}.jsonl", uuid::Uuid::now_v7()));
    let server = Processes::start_logging(&vars, &log).await;
    let base = &server.bases[0];
    let http = reqwest::Client::new();
    let post = |path: String, token: String, body: Value| {
        let request = http.post(format!("{base}{path}")).bearer_auth(token).json(&body);
        async move { Response::read(request.send().await.expect("answered")).await }
    };
    let event = post("/v1/events".into(), organizer.token.clone(), event_body("Attributed")).await;
    let event_id = event.body["id"].as_str().expect("id").to_owned();
    let created = post(
        "/v1/apiKeys".into(),
        organizer.token.clone(),
        json!({ "name": "ops", "scopes": ["API_KEY_SCOPE_EVENTS_WRITE", "API_KEY_SCOPE_EVENTS_READ"] }),
    )
    .await;
    let (key_id, key) =
        (created.body["apiKey"]["id"].as_str().expect("id"), created.body["secret"].as_str().expect("secret"));
    let request = http
        .patch(format!("{base}/v1/events/{event_id}"))
        .bearer_auth(key)
        .json(&json!({ "name": "Renamed by a tool" }));
    assert_eq!(Response::read(request.send().await.expect("answered")).await.status, StatusCode::OK);

    let audit = http
        .get(format!("{base}/v1/events/{event_id}/auditEntries"))
        .bearer_auth(&organizer.token)
        .send()
        .await
        .expect("answered");
    let entries = Response::read(audit).await.body["entries"].clone();
    let change = entries
        .as_array()
        .and_then(|e| e.iter().find(|e| e["action"] == "AUDIT_ACTION_EVENT_UPDATED"))
        .expect("the change");
    assert_eq!(change["apiKeyId"], key_id, "{change}");
    assert_eq!(change["actorId"], organizer.id.to_string(), "the key acts as its creator");

    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(key_id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_file(&log);
    assert!(
        text.lines().any(|line| line.contains(&format!("\"api_key_id\":\"{key_id}\""))),
        "no log line names the key:\n{text}"
    );
    assert!(!text.contains(key), "the secret is never logged");
}
