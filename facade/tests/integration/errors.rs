//! Bad input of every kind gets the documented error and writes nothing.

use reqwest::{Method, StatusCode, header::CONTENT_TYPE};
use serde_json::json;
use ticketing_domain::identity::Role;
use ticketing_proto::v1::{self, auth_service_client::AuthServiceClient, catalog_service_client::CatalogServiceClient};
use tonic::Code;

use crate::helpers::{TEST_JWT_SECRET as JWT_SECRET, Table, TestApp, authed, event_body, published_event};

fn token(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn malformed_json_is_invalid_argument_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let cases = [
        ("{\"name\": ", "truncated"),
        ("not json at all", "garbage"),
        ("[1, 2, 3]", "wrong top-level type"),
        ("{\"name\": 42, \"venue\": \"x\"}", "wrong field type"),
        ("{\"name\": \"x\", \"startTime\": \"yesterday\"}", "bad timestamp"),
        ("{\"name\": \"x\", \"favouriteColour\": \"blue\"}", "unknown field"),
    ];
    for (body, what) in cases {
        let response = app
            .raw(
                app.http
                    .post(app.url("/v1/events"))
                    .bearer_auth(&organizer.token)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body),
            )
            .await;
        assert_eq!(response.error_reason(400, "INVALID_ARGUMENT"), "MALFORMED_JSON", "{what}");
    }
    assert_eq!(app.count(Table::Events).await, 0);
}

#[tokio::test]
async fn oversized_bodies_are_refused_on_both_transports() {
    let app = TestApp::builder().var("MAX_REQUEST_BYTES", "65536").spawn().await;
    let big = "x".repeat(200_000);
    let rest = app
        .rest(Method::POST, "/v1/auth/register", None, Some(json!({ "email": "big@example.com", "password": big })))
        .await;
    assert_eq!(rest.error_reason(400, "INVALID_ARGUMENT"), "REQUEST_TOO_LARGE");

    let mut client = AuthServiceClient::new(app.channel().await);
    let status = client
        .register(v1::RegisterRequest { email: "big@example.com".into(), password: big, ..Default::default() })
        .await
        .unwrap_err();
    assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted), "{status:?}");
    assert_eq!(app.count(Table::Users).await, 0);
}

#[tokio::test]
async fn bad_and_expired_tokens_are_unauthenticated_even_on_public_reads() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let now = chrono::Utc::now().timestamp();
    let claims = |exp: i64| json!({ "sub": organizer.id, "role": "organizer", "iss": "ticketing", "iat": now - 7200, "exp": exp });
    let expired = token(claims(now - 3600), JWT_SECRET);
    let forged = token(claims(now + 3600), "someone-elses-secret-0123456789abcdef");
    for (bad, what) in [(expired.as_str(), "expired"), (forged.as_str(), "forged"), ("abc.def.ghi", "garbage")] {
        let create = app.rest(Method::POST, "/v1/events", Some(bad), Some(event_body("Nope"))).await;
        assert_eq!(create.error_reason(401, "UNAUTHENTICATED"), "INVALID_TOKEN", "{what}");
        let list = app.rest(Method::GET, "/v1/events", Some(bad), None).await;
        assert_eq!(list.status, StatusCode::UNAUTHORIZED, "{what}");
    }
    let basic = app.raw(app.http.get(app.url("/v1/events")).header("authorization", "Basic Zm9vOmJhcg==")).await;
    assert_eq!(basic.error_reason(401, "UNAUTHENTICATED"), "INVALID_TOKEN");

    let mut client = CatalogServiceClient::new(app.channel().await);
    let status = client.create_event(authed(v1::CreateEventRequest::default(), &expired)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{}", status.message());
    assert_eq!(app.count(Table::Events).await, 0);
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let unknown = uuid::Uuid::now_v7();
    let missing = app.rest(Method::GET, &format!("/v1/events/{unknown}"), None, None).await;
    assert_eq!(missing.error_reason(404, "NOT_FOUND"), "NOT_FOUND");
    let patch = app
        .rest(Method::PATCH, &format!("/v1/events/{unknown}"), Some(&organizer.token), Some(json!({ "name": "x" })))
        .await;
    assert_eq!(patch.status, StatusCode::NOT_FOUND);
    let malformed = app.rest(Method::GET, "/v1/events/not-a-uuid", None, None).await;
    assert_eq!(malformed.error_reason(400, "INVALID_ARGUMENT"), "INVALID_ARGUMENT");
    assert_eq!(malformed.bad_fields(), ["eventId"]);

    let event = published_event(&app, &organizer, "Real").await;
    let category = app
        .rest(
            Method::PATCH,
            &format!("/v1/events/{event}/ticketCategories/{unknown}"),
            Some(&organizer.token),
            Some(json!({ "capacity": 5 })),
        )
        .await;
    assert_eq!(category.error_reason(404, "NOT_FOUND"), "NOT_FOUND");

    let mut client = CatalogServiceClient::new(app.channel().await);
    let status = client.get_event(v1::GetEventRequest { event_id: unknown.to_string() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn unknown_routes_and_methods_say_so() {
    let app = TestApp::spawn().await;
    let route = app.rest(Method::GET, "/v1/nothing-here", None, None).await;
    assert_eq!(route.error_reason(404, "NOT_FOUND"), "NOT_FOUND");
    let verb = app.rest(Method::GET, &format!("/v1/events/{}:watchEverything", uuid::Uuid::now_v7()), None, None).await;
    assert_eq!(verb.error_reason(404, "NOT_FOUND"), "NOT_FOUND");
    // A gRPC method the contract does not have: UNIMPLEMENTED, as gRPC says.
    let unknown = app
        .http
        .post(app.url("/ticketing.v1.CatalogService/WatchEverything"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .expect("answered");
    assert_eq!(unknown.headers().get("grpc-status").and_then(|v| v.to_str().ok()), Some("12"));
    // A live stream of no event is refused before it starts.
    let mut catalog = ticketing_proto::v1::catalog_service_client::CatalogServiceClient::new(app.channel().await);
    let watch = catalog.watch_availability(ticketing_proto::v1::WatchAvailabilityRequest::default()).await;
    assert_eq!(watch.unwrap_err().code(), tonic::Code::InvalidArgument);
}
