//! REST/JSON over the gRPC services: each handler binds the path, query and
//! proto3-JSON body onto the request message, calls the same service method
//! gRPC clients reach, and renders the reply (or the status as Google's JSON
//! error). No business rule lives here.

pub mod error;
pub mod extract;
mod live;

use axum::{
    Extension, Json, Router,
    extract::{DefaultBodyLimit, Path, State},
    http::{
        HeaderMap, HeaderValue, StatusCode,
        header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH},
    },
    middleware,
    response::{IntoResponse, Response},
    routing::{get, patch, post},
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ticketing_domain::Error;
use ticketing_proto::v1::{
    self, auth_service_server::AuthService, catalog_service_server::CatalogService,
    check_in_service_server::CheckInService, order_service_server::OrderService,
    payment_service_server::PaymentService, report_service_server::ReportService,
    waiting_room_service_server::WaitingRoomService,
};
use ticketing_service::{
    app::{self, payments, reports},
    auth::RequestContext,
    grpc::{Services, orders::IDEMPOTENT_REPLAYED},
    load_class::LoadClass,
    wire::parse_id,
};

use crate::overload::{self, Bulkheads};

use self::{
    error::RestError,
    extract::{Ctx, JsonBody, QueryParams, parse_json},
};

/// `Cache-Control` of public catalog reads, from the configuration.
#[derive(Clone)]
pub struct PublicCacheControl(pub HeaderValue);

/// The REST routes, each with its load class: overload control admits
/// (or sheds) a request by the class its route declares here.
pub fn router(
    services: Services,
    limits: &Bulkheads,
    max_body_bytes: usize,
    cache_control: PublicCacheControl,
) -> Router {
    let class = |class: LoadClass| middleware::from_fn_with_state((limits.clone(), class), overload::limit);
    let (browse, standard, critical) =
        (|| class(LoadClass::Browse), || class(LoadClass::Standard), || class(LoadClass::Critical));
    Router::new()
        .route("/v1/auth/register", post(register).layer(standard()))
        .route("/v1/auth/token", post(issue_token).layer(standard()))
        .route("/v1/events", get(list_events).layer(browse()).merge(post(create_event).layer(standard())))
        .route(
            "/v1/events/{event}",
            get(get_event).layer(browse()).merge(patch(update_event).post(event_custom_method).layer(standard())),
        )
        .route("/v1/events/{event}/ticketCategories", post(create_ticket_category).layer(standard()))
        .route("/v1/events/{event}/ticketCategories/{category}", patch(update_ticket_category).layer(standard()))
        .route("/v1/events/{event}/scanners", post(create_scanner).layer(standard()))
        .route("/v1/events/{event}/scanners/{scanner}", post(scanner_custom_method).layer(standard()))
        .route("/v1/events/{event}/checkinManifest", get(stream_manifest).layer(standard()))
        .route("/v1/events/{event}/checkinStats", get(checkin_stats).layer(standard()))
        .route("/v1/events/{event}/reports", post(create_report).layer(standard()))
        .route("/v1/events/{event}/queue:challenge", get(get_challenge).layer(standard()))
        .route("/v1/events/{event}/queue:join", post(join_queue).layer(standard()))
        // Polled by everyone waiting: shed first, like browsing.
        .route("/v1/events/{event}/queue/{entry}", get(get_queue_entry).layer(browse()))
        .route("/v1/events/{event}/reports/{report}", get(get_report).layer(standard()))
        .route("/v1/events/{event}/refunds", get(list_refunds).layer(standard()))
        .route("/v1/events/{event}/auditEntries", get(list_audit_entries).layer(standard()))
        .route("/v1/refunds/{refund}", post(refund_custom_method).layer(standard()))
        .route("/v1/orders", get(list_orders).post(create_order).layer(standard()))
        .route("/v1/orders/{order}", get(get_order).post(order_custom_method).layer(standard()))
        .route("/v1/orders/{order}/tickets", get(list_tickets).layer(standard()))
        .route("/v1/orders/{order}/payments", post(create_payment).layer(standard()))
        .route("/v1/orders/{order}/payments/{payment}", get(get_payment).post(payment_custom_method).layer(standard()))
        .route("/v1/events/{event}/payments", get(list_payments).layer(standard()))
        .route("/v1/payments/midtrans/notifications", post(midtrans_notification).layer(critical()))
        .route("/v1/checkins", post(redeem).layer(critical()))
        .route("/v1/checkins:sync", post(sync_offline_scans).layer(critical()))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(Extension(cache_control))
        .with_state(services)
}

type Reply = Result<Response, RestError>;

/// Wraps a message as a gRPC request carrying the caller's context.
fn call<T>(ctx: RequestContext, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(ctx);
    request
}

fn ok<T: Serialize>(result: Result<tonic::Response<T>, tonic::Status>) -> Reply {
    reply(StatusCode::OK, result?)
}

fn created<T: Serialize>(result: Result<tonic::Response<T>, tonic::Status>) -> Reply {
    reply(StatusCode::CREATED, result?)
}

/// The JSON body, with the response metadata REST clients see as headers.
fn reply<T: Serialize>(status: StatusCode, response: tonic::Response<T>) -> Reply {
    let replayed = response.metadata().contains_key(IDEMPOTENT_REPLAYED);
    let mut reply = (status, Json(response.into_inner())).into_response();
    if replayed {
        reply.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(reply)
}

/// `{id}:{verb}` custom methods (AIP-136) share the resource's path segment.
fn split_custom_method<'a>(segment: &'a str, verbs: &[&str]) -> Result<(&'a str, &'a str), RestError> {
    match segment.split_once(':') {
        Some((id, verb)) if verbs.contains(&verb) => Ok((id, verb)),
        _ => Err(Error::new(ticketing_domain::Code::NotFound, format!("no such method: {segment}")).into()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PageQuery {
    #[serde(default, alias = "page_size")]
    page_size: i32,
    #[serde(default, alias = "page_token")]
    page_token: String,
}

async fn register(State(api): State<Services>, Ctx(ctx): Ctx, JsonBody(body): JsonBody<v1::RegisterRequest>) -> Reply {
    created(api.auth.register(call(ctx, body)).await)
}

async fn issue_token(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<v1::IssueTokenRequest>,
) -> Reply {
    ok(api.auth.issue_token(call(ctx, body)).await)
}

async fn list_events(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Extension(policy): Extension<PublicCacheControl>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<PageQuery>,
) -> Reply {
    let request = v1::ListEventsRequest { page_size: q.page_size, page_token: q.page_token };
    cacheable(&headers, &policy, api.catalog.list_events(call(ctx, request)).await)
}

async fn get_event(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Extension(policy): Extension<PublicCacheControl>,
    headers: HeaderMap,
    Path(segment): Path<String>,
) -> Reply {
    if segment.contains(':') {
        let (event_id, _) = split_custom_method(&segment, &["watchAvailability"])?;
        let event_id = parse_id(event_id, "eventId")?;
        let watch = app::live::watch_availability(&api.state, &ctx, event_id).await?;
        return Ok(live::events(watch, &headers));
    }
    let event_id = segment;
    cacheable(&headers, &policy, api.catalog.get_event(call(ctx, v1::GetEventRequest { event_id })).await)
}

/// A public read a CDN or the nginx edge may keep: strong `ETag` (a digest
/// of the body), `304` when `If-None-Match` has it, and public
/// `Cache-Control` — `private` when the caller sent credentials (an
/// organizer may see what the public does not).
fn cacheable<T: Serialize>(
    headers: &HeaderMap,
    policy: &PublicCacheControl,
    result: Result<tonic::Response<T>, tonic::Status>,
) -> Reply {
    let body = serde_json::to_vec(&result?.into_inner()).map_err(|e| RestError::from(Error::internal(e)))?;
    let etag = format!("\"{:x}\"", Sha256::digest(&body));
    let etag = HeaderValue::from_str(&etag).map_err(|e| RestError::from(Error::internal(e)))?;
    let cache_control = if headers.contains_key(AUTHORIZATION) {
        HeaderValue::from_static("private, no-cache")
    } else {
        policy.0.clone()
    };
    let matches = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(CONTENT_TYPE, "application/json")], body).into_response()
    };
    response.headers_mut().insert(ETAG, etag);
    response.headers_mut().insert(CACHE_CONTROL, cache_control);
    Ok(response)
}

async fn create_event(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<v1::CreateEventRequest>,
) -> Reply {
    created(api.catalog.create_event(call(ctx, body)).await)
}

async fn update_event(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(event_id): Path<String>,
    JsonBody(body): JsonBody<v1::UpdateEventRequest>,
) -> Reply {
    ok(api.catalog.update_event(call(ctx, v1::UpdateEventRequest { event_id, ..body })).await)
}

async fn event_custom_method(State(api): State<Services>, Ctx(ctx): Ctx, Path(segment): Path<String>) -> Reply {
    let (event_id, verb) = split_custom_method(&segment, &["publish", "cancel"])?;
    let event_id = event_id.to_owned();
    match verb {
        "publish" => ok(api.catalog.publish_event(call(ctx, v1::PublishEventRequest { event_id })).await),
        _ => ok(api.catalog.cancel_event(call(ctx, v1::CancelEventRequest { event_id })).await),
    }
}

async fn create_ticket_category(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(event_id): Path<String>,
    JsonBody(body): JsonBody<v1::CreateTicketCategoryRequest>,
) -> Reply {
    created(api.catalog.create_ticket_category(call(ctx, v1::CreateTicketCategoryRequest { event_id, ..body })).await)
}

async fn update_ticket_category(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path((event_id, ticket_category_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<v1::UpdateTicketCategoryRequest>,
) -> Reply {
    let request = v1::UpdateTicketCategoryRequest { event_id, ticket_category_id, ..body };
    ok(api.catalog.update_ticket_category(call(ctx, request)).await)
}

async fn create_order(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    JsonBody(body): JsonBody<v1::CreateOrderRequest>,
) -> Reply {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let request_id = header("idempotency-key").unwrap_or_default();
    // The header is the contract's; a body field of the same name also counts.
    let admission_token = header("ticketing-admission").unwrap_or(body.admission_token.clone());
    created(api.orders.create_order(call(ctx, v1::CreateOrderRequest { request_id, admission_token, ..body })).await)
}

async fn list_orders(State(api): State<Services>, Ctx(ctx): Ctx, QueryParams(q): QueryParams<PageQuery>) -> Reply {
    ok(api
        .orders
        .list_orders(call(ctx, v1::ListOrdersRequest { page_size: q.page_size, page_token: q.page_token }))
        .await)
}

async fn get_order(State(api): State<Services>, Ctx(ctx): Ctx, Path(order_id): Path<String>) -> Reply {
    ok(api.orders.get_order(call(ctx, v1::GetOrderRequest { order_id })).await)
}

/// `:cancel` (the buyer's, no body) and `:refund` (the organizer's, with a
/// body and an `Idempotency-Key`).
async fn order_custom_method(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Reply {
    let (order_id, verb) = split_custom_method(&segment, &["cancel", "refund"])?;
    let order_id = order_id.to_owned();
    if verb == "cancel" {
        return ok(api.orders.cancel_order(call(ctx, v1::CancelOrderRequest { order_id })).await);
    }
    let body: v1::RefundOrderRequest = parse_json(&body)?;
    let request_id = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    created(api.orders.refund_order(call(ctx, v1::RefundOrderRequest { order_id, request_id, ..body })).await)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StatusPageQuery {
    #[serde(default)]
    status: String,
    #[serde(default, alias = "page_size")]
    page_size: i32,
    #[serde(default, alias = "page_token")]
    page_token: String,
}

async fn list_refunds(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(event_id): Path<String>,
    QueryParams(q): QueryParams<StatusPageQuery>,
) -> Reply {
    let status = enum_query::<v1::RefundStatus>(&q.status, "REFUND_STATUS_", v1::RefundStatus::from_str_name)?;
    let request =
        v1::ListRefundsRequest { event_id, status: status.into(), page_size: q.page_size, page_token: q.page_token };
    ok(api.orders.list_refunds(call(ctx, request)).await)
}

async fn refund_custom_method(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(segment): Path<String>,
    JsonBody(body): JsonBody<v1::CompleteManualRefundRequest>,
) -> Reply {
    let (refund_id, _complete) = split_custom_method(&segment, &["complete"])?;
    let request = v1::CompleteManualRefundRequest { refund_id: refund_id.to_owned(), ..body };
    ok(api.orders.complete_manual_refund(call(ctx, request)).await)
}

async fn list_audit_entries(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(event_id): Path<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Reply {
    let request = v1::ListAuditEntriesRequest { event_id, page_size: q.page_size, page_token: q.page_token };
    ok(api.catalog.list_audit_entries(call(ctx, request)).await)
}

async fn list_tickets(State(api): State<Services>, Ctx(ctx): Ctx, Path(order_id): Path<String>) -> Reply {
    ok(api.orders.list_tickets(call(ctx, v1::ListTicketsRequest { order_id })).await)
}

async fn create_payment(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(order_id): Path<String>,
    JsonBody(body): JsonBody<v1::CreatePaymentRequest>,
) -> Reply {
    created(api.payments.create_payment(call(ctx, v1::CreatePaymentRequest { order_id, ..body })).await)
}

async fn get_payment(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path((order_id, payment_id)): Path<(String, String)>,
) -> Reply {
    ok(api.payments.get_payment(call(ctx, v1::GetPaymentRequest { order_id, payment_id })).await)
}

/// `:approve` and `:deny`: the organizer's decision on a challenged card payment.
async fn payment_custom_method(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path((order_id, segment)): Path<(String, String)>,
) -> Reply {
    let (payment_id, verb) = split_custom_method(&segment, &["approve", "deny"])?;
    let payment_id = payment_id.to_owned();
    if verb == "approve" {
        return ok(api.payments.approve_payment(call(ctx, v1::ApprovePaymentRequest { order_id, payment_id })).await);
    }
    ok(api.payments.deny_payment(call(ctx, v1::DenyPaymentRequest { order_id, payment_id })).await)
}

async fn list_payments(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(event_id): Path<String>,
    QueryParams(q): QueryParams<StatusPageQuery>,
) -> Reply {
    let status = enum_query::<v1::PaymentStatus>(&q.status, "PAYMENT_STATUS_", v1::PaymentStatus::from_str_name)?;
    let request =
        v1::ListPaymentsRequest { event_id, status: status.into(), page_size: q.page_size, page_token: q.page_token };
    ok(api.payments.list_payments(call(ctx, request)).await)
}

/// A `status=` filter: the enum value's name with or without its prefix;
/// none is every status.
fn enum_query<E: Default>(value: &str, prefix: &str, parse: fn(&str) -> Option<E>) -> Result<E, RestError> {
    if value.is_empty() {
        return Ok(E::default());
    }
    parse(value)
        .or_else(|| parse(&format!("{prefix}{value}")))
        .ok_or_else(|| Error::invalid_field("status", "is not one of the statuses this list filters by").into())
}

async fn create_scanner(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(event_id): Path<String>,
    JsonBody(body): JsonBody<v1::CreateScannerRequest>,
) -> Reply {
    created(api.checkin.create_scanner(call(ctx, v1::CreateScannerRequest { event_id, ..body })).await)
}

async fn scanner_custom_method(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path((event_id, segment)): Path<(String, String)>,
) -> Reply {
    let (scanner_id, _revoke) = split_custom_method(&segment, &["revoke"])?;
    let request = v1::RevokeScannerRequest { event_id, scanner_id: scanner_id.to_owned() };
    ok(api.checkin.revoke_scanner(call(ctx, request)).await)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ManifestQuery {
    #[serde(default)]
    cursor: String,
    #[serde(default, alias = "since_version")]
    since_version: i64,
    #[serde(default, alias = "page_size")]
    page_size: i32,
}

/// The server stream as newline-delimited JSON, one `{"result": chunk}` per
/// line (grpc-gateway's convention); an error mid-stream is a last
/// `{"error": …}` line.
async fn stream_manifest(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(event_id): Path<String>,
    QueryParams(q): QueryParams<ManifestQuery>,
) -> Reply {
    let request = v1::StreamManifestRequest {
        event_id,
        cursor: q.cursor,
        since_version: q.since_version,
        page_size: q.page_size,
    };
    let chunks = api.checkin.stream_manifest(call(ctx, request)).await?.into_inner();
    let lines = chunks.map(|chunk| {
        let line = match chunk {
            Ok(chunk) => serde_json::json!({ "result": chunk }),
            Err(status) => RestError::from(status).json().1,
        };
        let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        Ok::<_, std::io::Error>(bytes)
    });
    Ok(([(CONTENT_TYPE, "application/x-ndjson")], axum::body::Body::from_stream(lines)).into_response())
}

async fn checkin_stats(State(api): State<Services>, Ctx(ctx): Ctx, Path(event_id): Path<String>) -> Reply {
    ok(api.checkin.get_checkin_stats(call(ctx, v1::GetCheckinStatsRequest { event_id })).await)
}

async fn redeem(State(api): State<Services>, Ctx(ctx): Ctx, JsonBody(body): JsonBody<v1::RedeemRequest>) -> Reply {
    ok(api.checkin.redeem(call(ctx, body)).await)
}

async fn sync_offline_scans(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<v1::SyncOfflineScansRequest>,
) -> Reply {
    ok(api.checkin.sync_offline_scans(call(ctx, body)).await)
}

async fn create_report(State(api): State<Services>, Ctx(ctx): Ctx, Path(event_id): Path<String>) -> Reply {
    created(api.reports.create_report(call(ctx, v1::CreateReportRequest { event_id })).await)
}

/// `GET …/reports/{reportId}` or, for the CSV, `GET …/reports/{reportId}:download`.
async fn get_report(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path((event_id, segment)): Path<(String, String)>,
) -> Reply {
    if segment.contains(':') {
        let (report_id, _download) = split_custom_method(&segment, &[reports::DOWNLOAD_METHOD])?;
        let (event_id, report_id) = (parse_id(&event_id, "eventId")?, parse_id(report_id, "reportId")?);
        let csv = reports::download(&api.state, ctx.principal()?, event_id, report_id).await?;
        return Ok(([(CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response());
    }
    ok(api.reports.get_report(call(ctx, v1::GetReportRequest { event_id, report_id: segment })).await)
}

async fn get_challenge(State(api): State<Services>, Ctx(ctx): Ctx, Path(event_id): Path<String>) -> Reply {
    ok(api.waiting_room.get_challenge(call(ctx, v1::GetChallengeRequest { event_id })).await)
}

async fn join_queue(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(event_id): Path<String>,
    JsonBody(body): JsonBody<v1::JoinQueueRequest>,
) -> Reply {
    created(api.waiting_room.join_queue(call(ctx, v1::JoinQueueRequest { event_id, ..body })).await)
}

async fn get_queue_entry(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    Path((event_id, segment)): Path<(String, String)>,
) -> Reply {
    if segment.contains(':') {
        let (queue_entry_id, _) = split_custom_method(&segment, &["watch"])?;
        let event_id = parse_id(&event_id, "eventId")?;
        let watch = app::live::watch_queue_entry(&api.state, &ctx, event_id, queue_entry_id).await?;
        return Ok(live::events(watch, &headers));
    }
    let queue_entry_id = segment;
    ok(api.waiting_room.get_queue_entry(call(ctx, v1::GetQueueEntryRequest { event_id, queue_entry_id })).await)
}

/// Midtrans's HTTP notification: the raw body, so the signature is checked
/// over exactly what was sent. 200 tells Midtrans to stop retrying.
async fn midtrans_notification(State(api): State<Services>, body: axum::body::Bytes) -> Reply {
    payments::receive_midtrans_notification(&api.state, &body).await?;
    Ok(Json(serde_json::json!({ "status": "ok" })).into_response())
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use ticketing_service::{AppState, Config};
    use tower::ServiceExt;

    use super::*;

    /// The REST router over a state whose pools connect lazily: the requests
    /// below are all answered before any database or Redis call.
    fn routes(config: Config, limits: &Bulkheads) -> Router {
        let services = Services::new(&AppState::new(config).expect("state"));
        router(services, limits, 1 << 20, PublicCacheControl(HeaderValue::from_static("public")))
    }

    async fn shed(router: &Router, method: &str, path: &str) -> bool {
        let request = Request::builder().method(method).uri(path).body(Body::empty()).expect("request");
        let response = router.clone().oneshot(request).await.expect("answered");
        response.status() == StatusCode::SERVICE_UNAVAILABLE
    }

    #[tokio::test]
    async fn requests_are_classified_by_route() {
        let config = Config::from_lookup(|name| match name {
            "ENV" => Some("development".into()),
            "DATABASE_URL" => Some("postgres://127.0.0.1:1/none".into()),
            "REDIS_URL" => Some("redis://127.0.0.1:1".into()),
            "CONCURRENCY_LIMIT_MAX" => Some("4".into()),
            _ => None,
        })
        .expect("config");
        let limits = Bulkheads::new(&config);
        let router = routes(config, &limits);

        let browsing = limits.fill(LoadClass::Browse);
        assert!(shed(&router, "GET", "/v1/events/abc").await, "an event page browses");
        assert!(shed(&router, "GET", "/v1/events").await, "the listing browses");
        assert!(!shed(&router, "PATCH", "/v1/events/abc").await, "an edit does not");
        assert!(!shed(&router, "POST", "/v1/orders").await);
        drop(browsing);

        let buying = limits.fill(LoadClass::Standard);
        assert!(shed(&router, "POST", "/v1/orders").await, "orders are standard");
        assert!(shed(&router, "PATCH", "/v1/events/abc").await);
        assert!(!shed(&router, "POST", "/v1/checkins").await, "the gates are critical: shed last");
        assert!(!shed(&router, "POST", "/v1/payments/midtrans/notifications").await, "and payment notifications");
        assert!(!shed(&router, "GET", "/v1/events/abc").await, "browsing has its own bulkhead");
        drop(buying);
    }
}
