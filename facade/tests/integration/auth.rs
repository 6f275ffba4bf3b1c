use reqwest::{Method, StatusCode};
use serde_json::json;
use ticketing_domain::identity::Role;
use ticketing_proto::v1::{self, auth_service_client::AuthServiceClient};

use crate::helpers::{Table, TestApp};

#[tokio::test]
async fn register_then_issue_token_over_rest() {
    let app = TestApp::spawn().await;
    let registered = app
        .rest(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({ "email": " Ana@Example.com ", "password": "correct horse battery" })),
        )
        .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
    assert_eq!(registered.body["email"], "ana@example.com");
    assert_eq!(registered.body["role"], "ROLE_CUSTOMER");
    assert!(registered.body.get("passwordHash").is_none());

    let token = app
        .rest(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({ "email": "ana@example.com", "password": "correct horse battery" })),
        )
        .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.body);
    assert_eq!(token.body["tokenType"], "Bearer");
    assert_eq!(token.body["expiresIn"], 3600);
    let stored = app.count(Table::Users).await;
    assert_eq!(stored, 1);
    let hash = crate::helpers::query_value(&app.direct_url(), "SELECT password_hash FROM users").await.unwrap();
    assert!(hash.starts_with("$argon2id$"), "passwords are stored as argon2id hashes");
}

#[tokio::test]
async fn register_and_issue_token_over_grpc() {
    let app = TestApp::spawn().await;
    let mut client = AuthServiceClient::new(app.channel().await);
    let user = client
        .register(v1::RegisterRequest {
            email: "budi@example.com".into(),
            password: "correct horse battery".into(),
            ..Default::default()
        })
        .await
        .expect("registered")
        .into_inner();
    assert_eq!(user.role(), v1::Role::Customer);
    let token = client
        .issue_token(v1::IssueTokenRequest {
            email: "budi@example.com".into(),
            password: "correct horse battery".into(),
        })
        .await
        .expect("token")
        .into_inner();
    assert_eq!(token.token_type, "Bearer");
    assert!(!token.access_token.is_empty());
}

#[tokio::test]
async fn duplicate_email_is_already_exists() {
    let app = TestApp::spawn().await;
    let body = json!({ "email": "dup@example.com", "password": "correct horse battery" });
    let first = app.rest(Method::POST, "/v1/auth/register", None, Some(body.clone())).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = app
        .rest(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({ "email": "DUP@example.com", "password": "another long password" })),
        )
        .await;
    assert_eq!(again.error_reason(409, "ALREADY_EXISTS"), "EMAIL_TAKEN");
    assert_eq!(app.count(Table::Users).await, 1);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let app = TestApp::spawn().await;
    let user = app.user(Role::Customer).await;
    let wrong = app
        .rest(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({ "email": user.email, "password": "not the password" })),
        )
        .await;
    assert_eq!(wrong.error_reason(401, "UNAUTHENTICATED"), "INVALID_CREDENTIALS");
    let unknown = app
        .rest(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({ "email": "nobody@example.com", "password": "not the password" })),
        )
        .await;
    assert_eq!(unknown.error_reason(401, "UNAUTHENTICATED"), "INVALID_CREDENTIALS");
    assert_eq!(wrong.body["error"]["message"], unknown.body["error"]["message"]);
}

#[tokio::test]
async fn register_reports_every_bad_field() {
    let app = TestApp::spawn().await;
    let response = app
        .rest(Method::POST, "/v1/auth/register", None, Some(json!({ "email": "not-an-email", "password": "short" })))
        .await;
    assert_eq!(response.error_reason(400, "INVALID_ARGUMENT"), "INVALID_ARGUMENT");
    assert_eq!(response.bad_fields(), ["email", "password"]);
    assert_eq!(app.count(Table::Users).await, 0);
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_account_and_address() {
    let app = TestApp::builder().var("LOGIN_FAILURES_PER_ACCOUNT_AND_IP", "2").spawn().await;
    let user = app.user(Role::Customer).await; // a successful login, which does not count
    let body = json!({ "email": user.email, "password": "not the password" });
    for _ in 0..2 {
        let response = app.rest(Method::POST, "/v1/auth/token", None, Some(body.clone())).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let limited = app.rest(Method::POST, "/v1/auth/token", None, Some(body)).await;
    assert_eq!(limited.error_reason(429, "RESOURCE_EXHAUSTED"), "RATE_LIMITED");
    let retry_after: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(limited.headers["ratelimit-policy"], "\"login_failures\";q=2;w=60");
    let state = limited.headers["ratelimit"].to_str().unwrap();
    assert!(state.starts_with("\"login_failures\";r=0;t="), "{state}");
    // From this address even the right password waits (elsewhere it does not:
    // security::failures_from_elsewhere_never_lock_the_owner_out).
    let right = app
        .rest(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({ "email": user.email, "password": "a long enough password" })),
        )
        .await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn login_is_rate_limited_per_client_address() {
    let app = TestApp::builder().var("LOGIN_LIMIT_PER_IP", "2").spawn().await;
    for n in 0..2 {
        let response = app
            .rest(
                Method::POST,
                "/v1/auth/token",
                None,
                Some(json!({ "email": format!("u{n}@example.com"), "password": "whatever password" })),
            )
            .await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let limited = app
        .rest(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({ "email": "u9@example.com", "password": "whatever password" })),
        )
        .await;
    assert_eq!(limited.error_reason(429, "RESOURCE_EXHAUSTED"), "RATE_LIMITED");
}

#[tokio::test]
async fn sign_ups_are_limited_per_address_and_a_forged_forwarded_for_does_not_escape_it() {
    let app = TestApp::builder().var("LOGIN_LIMIT_PER_IP", "3").spawn().await;
    let sign_up = |n: usize, forwarded: Option<&'static str>| {
        let mut request = app
            .http
            .post(app.url("/v1/auth/register"))
            .json(&json!({ "email": format!("crowd-{n}@example.com"), "password": "a long enough password" }));
        if let Some(address) = forwarded {
            request = request.header("x-forwarded-for", address);
        }
        app.raw(request)
    };
    for n in 0..3 {
        let created = sign_up(n, None).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    let refused = sign_up(3, None).await;
    assert_eq!(refused.error_reason(429, "RESOURCE_EXHAUSTED"), "RATE_LIMITED");
    assert!(refused.headers.contains_key("retry-after"), "{:?}", refused.headers);
    // No trusted proxy in front: the header is the client's to invent, and ignored.
    let forged = sign_up(4, Some("203.0.113.9")).await;
    assert_eq!(forged.error_reason(429, "RESOURCE_EXHAUSTED"), "RATE_LIMITED");
    assert_eq!(app.count(Table::Users).await, 3, "refused sign-ups wrote no account");
}
