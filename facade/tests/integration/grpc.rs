//! What gRPC tooling relies on: reflection, health, gRPC-Web, and errors
//! with ErrorInfo details.

use futures::StreamExt;
use prost::Message;
use reqwest::header::CONTENT_TYPE;
use ticketing_domain::identity::Role;
use ticketing_proto::v1::{self, catalog_service_client::CatalogServiceClient};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use tonic_types::StatusExt;

use crate::helpers::{Table, TestApp, authed, eventually, published_event};

/// As k6 and grpcurl use it: the request stream stays open while the
/// answers come (a body read ahead of the call would wait for its end).
#[tokio::test]
async fn reflection_answers_while_its_request_stream_stays_open() {
    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel().await);
    let (requests, stream) = tokio::sync::mpsc::channel(4);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    requests.send(request).await.unwrap();
    let opened = client.server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(stream));
    // Bounded so that the test ends either way; what it checks is an answer.
    let answered = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        opened.await.unwrap().into_inner().next().await.unwrap().unwrap()
    })
    .await
    .expect("reflection answers before the client closes its stream");
    assert!(matches!(answered.message_response, Some(MessageResponse::ListServicesResponse(_))));
    drop(requests);
}

#[tokio::test]
async fn reflection_lists_every_service() {
    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected {response:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "ticketing.v1.AuthService",
        "ticketing.v1.CatalogService",
        "ticketing.v1.OrderService",
        "ticketing.v1.PaymentService",
        "ticketing.v1.CheckInService",
        "ticketing.v1.ReportService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} not in {names:?}");
    }
}

#[tokio::test]
async fn health_reports_serving_when_dependencies_are_up() {
    let app = TestApp::spawn().await;
    let mut client = HealthClient::new(app.channel().await);
    for service in ["", "ticketing.v1.CatalogService"] {
        let status = eventually(|| {
            let mut client = client.clone();
            async move {
                let r = client.check(HealthCheckRequest { service: service.into() }).await.ok()?.into_inner();
                (r.status() == ServingStatus::Serving).then_some(r.status())
            }
        })
        .await;
        assert_eq!(status, ServingStatus::Serving);
    }
    let _ = &mut client;
}

#[tokio::test]
async fn grpc_errors_carry_error_info_and_field_violations() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let mut client = CatalogServiceClient::new(app.channel().await);
    let status = client
        .create_event(authed(v1::CreateEventRequest { name: "x".into(), ..Default::default() }, &organizer.token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let details = status.get_error_details();
    assert_eq!(details.error_info().unwrap().domain, "ticketing");
    let fields: Vec<String> = details.bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert!(fields.contains(&"startTime".to_owned()), "{fields:?}");
}

fn grpc_web_frame(message: &impl Message) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// Splits a gRPC-Web response body into its message and its trailers.
fn grpc_web_parts(body: &[u8]) -> (Option<Vec<u8>>, String) {
    let (mut message, mut trailers, mut rest) = (None, String::new(), body);
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let payload = rest[5..5 + len].to_vec();
        if rest[0] & 0x80 != 0 {
            trailers = String::from_utf8(payload).unwrap()
        } else {
            message = Some(payload)
        }
        rest = &rest[5 + len..];
    }
    (message, trailers)
}

#[tokio::test]
async fn grpc_web_over_http1_serves_browsers() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let id = published_event(&app, &organizer, "Web").await;
    let events = eventually(|| async {
        let response = app
            .http
            .post(app.url("/ticketing.v1.CatalogService/ListEvents"))
            .header(CONTENT_TYPE, "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .header("origin", "https://shop.example")
            .body(grpc_web_frame(&v1::ListEventsRequest::default()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("access-control-allow-origin"));
        let (message, trailers) = grpc_web_parts(&response.bytes().await.unwrap());
        assert!(trailers.contains("grpc-status:0"), "{trailers}");
        let events = v1::ListEventsResponse::decode(message.unwrap().as_slice()).unwrap().events;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events[0].id, id);
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument() {
    let app = TestApp::spawn().await;
    let mut body = vec![0u8, 0, 0, 0, 4];
    body.extend_from_slice(&[0x0a, 0xff, 0xff, 0xff]); // field 1, length far past the end
    let response = app
        .http
        .post(app.url("/ticketing.v1.AuthService/Register"))
        .header(CONTENT_TYPE, "application/grpc-web+proto")
        .body(body)
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    let (_, trailers) = grpc_web_parts(&response.bytes().await.unwrap());
    let code = headers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .or_else(|| trailers.lines().find_map(|l| l.strip_prefix("grpc-status:").map(|v| v.trim().to_owned())));
    assert_eq!(code.as_deref(), Some("3"), "expected INVALID_ARGUMENT; headers {headers:?} trailers {trailers}");
    assert_eq!(app.count(Table::Users).await, 0);
}
