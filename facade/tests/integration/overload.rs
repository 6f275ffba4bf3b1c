//! Overload control: past the limit, requests are shed at once with 503 /
//! UNAVAILABLE + Retry-After, browsing first, check-in last.

use reqwest::{Method, StatusCode};
use serde_json::json;
use ticketing_proto::v1::{self, auth_service_client::AuthServiceClient};
use tonic_types::StatusExt;

use crate::helpers::TestApp;

#[tokio::test]
async fn a_full_replica_sheds_browsing_and_standard_calls_but_admits_check_in() {
    // A limit of 4 in flight: standard calls may fill 3, browsing 2, check-in all 4.
    let app = TestApp::spawn_with(&[
        ("CONCURRENCY_LIMIT_MIN", "4"),
        ("CONCURRENCY_LIMIT_MAX", "4"),
        ("CONCURRENCY_MAX_WAIT_MS", "5"),
        ("DATABASE_POOL_TIMEOUT_MS", "30000"),
    ])
    .await;
    // Three sign-ups held in flight by a lock on the table they write.
    let held = app.hold_sign_ups(3).await;

    let standard = app
        .rest(Method::POST, "/v1/auth/token", None, Some(json!({ "email": "x@example.com", "password": "whatever" })))
        .await;
    assert_eq!(standard.error_reason(503, "UNAVAILABLE"), "OVERLOADED");
    assert_eq!(standard.headers["retry-after"], "1");
    let browse = app.rest(Method::GET, "/v1/events", None, None).await;
    assert_eq!(browse.error_reason(503, "UNAVAILABLE"), "OVERLOADED");
    let mut grpc = AuthServiceClient::new(app.channel().await);
    let status = grpc
        .issue_token(v1::IssueTokenRequest { email: "x@example.com".into(), password: "whatever".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.get_error_details().error_info().unwrap().reason, "OVERLOADED");
    let check_in = app.rest(Method::POST, "/v1/checkins", None, Some(json!({ "code": "x", "gate": "A" }))).await;
    assert_ne!(check_in.status, StatusCode::SERVICE_UNAVAILABLE, "check-in is shed last: {}", check_in.body);

    assert!(held.release().await.iter().all(|s| *s == StatusCode::CREATED));
    // Room again once the held calls finished.
    assert_eq!(app.rest(Method::GET, "/v1/events", None, None).await.status, StatusCode::OK);
}
