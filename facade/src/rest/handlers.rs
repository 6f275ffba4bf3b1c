//! The REST handlers: each binds the path, query and proto3-JSON body onto
//! the request message, calls the same service method gRPC clients reach
//! (the catalog's public reads: the same use case, for its cached JSON),
//! and renders the reply (or the status as Google's JSON error). No business
//! rule lives here; which path reaches which handler is the operations table.

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{
        HeaderMap, HeaderValue, StatusCode,
        header::{CACHE_CONTROL, CONTENT_TYPE, ETAG},
    },
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use ticketing_domain::Error;
use ticketing_proto::v1::{
    self, auth_service_server::AuthService, catalog_service_server::CatalogService,
    check_in_service_server::CheckInService, order_service_server::OrderService,
    payment_service_server::PaymentService, report_service_server::ReportService,
    waiting_room_service_server::WaitingRoomService,
};
use ticketing_service::{
    app::{self, payments, read_cache::JsonRendering, reports},
    auth::RequestContext,
    grpc::{Services, orders::IDEMPOTENT_REPLAYED},
    wire::parse_id,
};

use super::{
    error::RestError,
    extract::{Ctx, JsonBody, QueryParams, ReadHeaders, parse_json},
    live,
    state::RestState,
};

use crate::header_names;

pub(super) type Reply = Result<Response, RestError>;

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
        reply.headers_mut().insert(header_names::IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
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
pub(super) struct PageQuery {
    #[serde(default, alias = "page_size")]
    page_size: i32,
    #[serde(default, alias = "page_token")]
    page_token: String,
}

pub(super) async fn register(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<v1::RegisterRequest>,
) -> Reply {
    created(api.auth.register(call(ctx, body)).await)
}

pub(super) async fn issue_token(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<v1::IssueTokenRequest>,
) -> Reply {
    ok(api.auth.issue_token(call(ctx, body)).await)
}

pub(super) async fn create_api_key(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<v1::CreateApiKeyRequest>,
) -> Reply {
    created(api.auth.create_api_key(call(ctx, body)).await)
}

pub(super) async fn list_api_keys(State(api): State<Services>, Ctx(ctx): Ctx) -> Reply {
    ok(api.auth.list_api_keys(call(ctx, v1::ListApiKeysRequest {})).await)
}

pub(super) async fn api_key_custom_method(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(segment): Path<String>,
) -> Reply {
    let (api_key_id, _revoke) = split_custom_method(&segment, &["revoke"])?;
    ok(api.auth.revoke_api_key(call(ctx, v1::RevokeApiKeyRequest { api_key_id: api_key_id.to_owned() })).await)
}

// The catalog's public reads call the use case the gRPC method calls, not the
// method, so they answer with the cache entry's JSON memo, not a decoded copy.
pub(super) async fn list_events(
    State(rest): State<RestState>,
    Ctx(ctx): Ctx,
    headers: ReadHeaders,
    QueryParams(q): QueryParams<PageQuery>,
) -> Reply {
    let page = app::catalog::list_events_for(&rest.services.state, &ctx, q.page_size, &q.page_token).await?;
    cacheable(&headers, &rest.public_cache_control, &*page.json()?)
}

pub(super) async fn get_event(
    State(rest): State<RestState>,
    Ctx(ctx): Ctx,
    headers: ReadHeaders,
    Path(segment): Path<String>,
) -> Reply {
    let state = &rest.services.state;
    if segment.contains(':') {
        let (event_id, _) = split_custom_method(&segment, &["watchAvailability"])?;
        let event_id = parse_id(event_id, "eventId")?;
        // Boxed: a page view's future need not carry a live stream's setup.
        let watch = Box::pin(app::live::watch_availability(state, &ctx, event_id)).await?;
        return Ok(live::events(watch, headers.last_event_id.as_ref()));
    }
    let page = app::catalog::get_event_for(state, &ctx, &segment).await?;
    cacheable(&headers, &rest.public_cache_control, &*page.json()?)
}

/// A page view's answer headers: its own three, and up to five that the
/// layers above add (`Vary`, `Content-Length`, CORS's when an `Origin` came).
const PAGE_VIEW_HEADERS: usize = 8;

/// A public read a CDN or the nginx edge may keep: strong `ETag` (a digest
/// of the body), `304` when `If-None-Match` has it, and public
/// `Cache-Control` — `private` when the caller sent credentials (an
/// organizer may see what the public does not).
fn cacheable(headers: &ReadHeaders, public_cache_control: &HeaderValue, rendered: &JsonRendering) -> Reply {
    let etag = &rendered.etag;
    let cache_control =
        if headers.credentials { HeaderValue::from_static("private, no-cache") } else { public_cache_control.clone() };
    let matches = headers
        .if_none_match
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim().as_bytes() == etag.as_bytes() || tag.trim() == "*");
    // Sized for what the layers above add (CORS's `Vary`, `Content-Length`):
    // a full map is regrown and rehashed, on every page view.
    let mut answer_headers = HeaderMap::with_capacity(PAGE_VIEW_HEADERS);
    if !matches {
        answer_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    answer_headers.insert(ETAG, etag.clone());
    answer_headers.insert(CACHE_CONTROL, cache_control);
    let mut response = if matches {
        (StatusCode::NOT_MODIFIED, Body::empty()).into_response()
    } else {
        Response::new(Body::from(rendered.body.clone()))
    };
    *response.headers_mut() = answer_headers;
    Ok(response)
}

pub(super) async fn create_event(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<v1::CreateEventRequest>,
) -> Reply {
    created(api.catalog.create_event(call(ctx, body)).await)
}

pub(super) async fn update_event(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(event_id): Path<String>,
    JsonBody(body): JsonBody<v1::UpdateEventRequest>,
) -> Reply {
    ok(api.catalog.update_event(call(ctx, v1::UpdateEventRequest { event_id, ..body })).await)
}

pub(super) async fn event_custom_method(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(segment): Path<String>,
) -> Reply {
    let (event_id, verb) = split_custom_method(&segment, &["publish", "cancel"])?;
    let event_id = event_id.to_owned();
    match verb {
        "publish" => ok(api.catalog.publish_event(call(ctx, v1::PublishEventRequest { event_id })).await),
        _ => ok(api.catalog.cancel_event(call(ctx, v1::CancelEventRequest { event_id })).await),
    }
}

pub(super) async fn create_ticket_category(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(event_id): Path<String>,
    JsonBody(body): JsonBody<v1::CreateTicketCategoryRequest>,
) -> Reply {
    created(api.catalog.create_ticket_category(call(ctx, v1::CreateTicketCategoryRequest { event_id, ..body })).await)
}

pub(super) async fn update_ticket_category(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path((event_id, ticket_category_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<v1::UpdateTicketCategoryRequest>,
) -> Reply {
    let request = v1::UpdateTicketCategoryRequest { event_id, ticket_category_id, ..body };
    ok(api.catalog.update_ticket_category(call(ctx, request)).await)
}

pub(super) async fn create_order(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    JsonBody(body): JsonBody<v1::CreateOrderRequest>,
) -> Reply {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let request_id = header(header_names::IDEMPOTENCY_KEY).unwrap_or_default();
    // The header is the contract's; a body field of the same name also counts.
    let admission_token = header(header_names::TICKETING_ADMISSION).unwrap_or(body.admission_token.clone());
    created(api.orders.create_order(call(ctx, v1::CreateOrderRequest { request_id, admission_token, ..body })).await)
}

pub(super) async fn list_orders(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    QueryParams(q): QueryParams<PageQuery>,
) -> Reply {
    ok(api
        .orders
        .list_orders(call(ctx, v1::ListOrdersRequest { page_size: q.page_size, page_token: q.page_token }))
        .await)
}

pub(super) async fn get_order(State(api): State<Services>, Ctx(ctx): Ctx, Path(order_id): Path<String>) -> Reply {
    ok(api.orders.get_order(call(ctx, v1::GetOrderRequest { order_id })).await)
}

/// `:cancel` (the buyer's, no body) and `:refund` (the organizer's, with a
/// body and an `Idempotency-Key`).
pub(super) async fn order_custom_method(
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
    let request_id =
        headers.get(header_names::IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    created(api.orders.refund_order(call(ctx, v1::RefundOrderRequest { order_id, request_id, ..body })).await)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct StatusPageQuery {
    #[serde(default)]
    status: String,
    #[serde(default, alias = "page_size")]
    page_size: i32,
    #[serde(default, alias = "page_token")]
    page_token: String,
}

pub(super) async fn list_refunds(
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

pub(super) async fn refund_custom_method(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(segment): Path<String>,
    JsonBody(body): JsonBody<v1::CompleteManualRefundRequest>,
) -> Reply {
    let (refund_id, _complete) = split_custom_method(&segment, &["complete"])?;
    let request = v1::CompleteManualRefundRequest { refund_id: refund_id.to_owned(), ..body };
    ok(api.orders.complete_manual_refund(call(ctx, request)).await)
}

pub(super) async fn list_audit_entries(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(event_id): Path<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Reply {
    let request = v1::ListAuditEntriesRequest { event_id, page_size: q.page_size, page_token: q.page_token };
    ok(api.catalog.list_audit_entries(call(ctx, request)).await)
}

pub(super) async fn list_tickets(State(api): State<Services>, Ctx(ctx): Ctx, Path(order_id): Path<String>) -> Reply {
    ok(api.orders.list_tickets(call(ctx, v1::ListTicketsRequest { order_id })).await)
}

pub(super) async fn create_payment(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(order_id): Path<String>,
    JsonBody(body): JsonBody<v1::CreatePaymentRequest>,
) -> Reply {
    created(api.payments.create_payment(call(ctx, v1::CreatePaymentRequest { order_id, ..body })).await)
}

pub(super) async fn get_payment(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path((order_id, payment_id)): Path<(String, String)>,
) -> Reply {
    ok(api.payments.get_payment(call(ctx, v1::GetPaymentRequest { order_id, payment_id })).await)
}

/// `:approve` and `:deny`: the organizer's decision on a challenged card payment.
pub(super) async fn payment_custom_method(
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

pub(super) async fn list_payments(
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

pub(super) async fn create_scanner(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(event_id): Path<String>,
    JsonBody(body): JsonBody<v1::CreateScannerRequest>,
) -> Reply {
    created(api.checkin.create_scanner(call(ctx, v1::CreateScannerRequest { event_id, ..body })).await)
}

pub(super) async fn scanner_custom_method(
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
pub(super) struct ManifestQuery {
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
pub(super) async fn stream_manifest(
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

pub(super) async fn checkin_stats(State(api): State<Services>, Ctx(ctx): Ctx, Path(event_id): Path<String>) -> Reply {
    ok(api.checkin.get_checkin_stats(call(ctx, v1::GetCheckinStatsRequest { event_id })).await)
}

pub(super) async fn redeem(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<v1::RedeemRequest>,
) -> Reply {
    ok(api.checkin.redeem(call(ctx, body)).await)
}

pub(super) async fn sync_offline_scans(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<v1::SyncOfflineScansRequest>,
) -> Reply {
    ok(api.checkin.sync_offline_scans(call(ctx, body)).await)
}

pub(super) async fn create_report(State(api): State<Services>, Ctx(ctx): Ctx, Path(event_id): Path<String>) -> Reply {
    created(api.reports.create_report(call(ctx, v1::CreateReportRequest { event_id })).await)
}

/// `GET …/reports/{reportId}` or, for the CSV, `GET …/reports/{reportId}:download`.
pub(super) async fn get_report(
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

pub(super) async fn get_challenge(State(api): State<Services>, Ctx(ctx): Ctx, Path(event_id): Path<String>) -> Reply {
    ok(api.waiting_room.get_challenge(call(ctx, v1::GetChallengeRequest { event_id })).await)
}

pub(super) async fn join_queue(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    Path(event_id): Path<String>,
    JsonBody(body): JsonBody<v1::JoinQueueRequest>,
) -> Reply {
    created(api.waiting_room.join_queue(call(ctx, v1::JoinQueueRequest { event_id, ..body })).await)
}

pub(super) async fn get_queue_entry(
    State(api): State<Services>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    Path((event_id, segment)): Path<(String, String)>,
) -> Reply {
    if segment.contains(':') {
        let (queue_entry_id, _) = split_custom_method(&segment, &["watch"])?;
        let event_id = parse_id(&event_id, "eventId")?;
        let watch = app::live::watch_queue_entry(&api.state, &ctx, event_id, queue_entry_id).await?;
        return Ok(live::events(watch, headers.get(header_names::LAST_EVENT_ID)));
    }
    let queue_entry_id = segment;
    ok(api.waiting_room.get_queue_entry(call(ctx, v1::GetQueueEntryRequest { event_id, queue_entry_id })).await)
}

/// Midtrans's HTTP notification: the raw body, so the signature is checked
/// over exactly what was sent. 200 tells Midtrans to stop retrying.
pub(super) async fn midtrans_notification(State(api): State<Services>, body: axum::body::Bytes) -> Reply {
    payments::receive_midtrans_notification(&api.state, &body).await?;
    Ok(Json(serde_json::json!({ "status": "ok" })).into_response())
}
