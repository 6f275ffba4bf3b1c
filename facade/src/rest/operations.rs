//! Every REST operation, declared once: the router mounts each on its path
//! and load class, and the OpenAPI document describes each from the same
//! row and the contract's messages.

use axum::routing::{MethodFilter, MethodRouter, on};
use ticketing_service::load_class::LoadClass;

use super::{handlers as h, state::RestState};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Get,
    Post,
    Patch,
}

impl Verb {
    pub fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Patch => MethodFilter::PATCH,
        }
    }

    pub fn http(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Patch => "PATCH",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Patch => "patch",
        }
    }
}

/// Who may call: what the document's security requirement says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No credentials (a token, if sent, is checked and may show more).
    Anyone,
    /// A signed-in user's bearer token (the role is checked by the method).
    User,
    /// A scanner device's bearer token.
    Scanner,
    /// Midtrans: no token, the notification's signature is checked.
    Midtrans,
}

/// What the request carries besides the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Nothing,
    /// The RPC's request message in proto3 JSON (path fields come from the path).
    Body,
    /// These fields of the RPC's request message, as query parameters.
    Query(&'static [&'static str]),
    /// Midtrans's notification, read raw so its signature covers what was sent.
    Notification,
}

/// What a success looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// 200 with the RPC's response message.
    Ok,
    /// 201 with the RPC's response message.
    Created,
    /// 200 with the response message, a strong `ETag`, `Cache-Control`, and
    /// 304 for a matching `If-None-Match`.
    Cacheable,
    /// Server-Sent Events, each `data:` one of the stream's messages.
    EventStream,
    /// Newline-delimited JSON, one `{"result": message}` per line.
    JsonLines,
    /// The report's CSV.
    Csv,
    /// 200 `{"status": "ok"}`: Midtrans stops retrying.
    Acknowledged,
}

/// Request headers an operation reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// `Idempotency-Key`, required (AIP-155).
    IdempotencyKey,
    /// `Ticketing-Admission`: the waiting room's admission token.
    Admission,
}

/// What an operation calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calls {
    /// A `ticketing.v1` method (`Service.Method`), whose messages are the bodies.
    Rpc(&'static str),
    /// Nothing gRPC has: the name is the operation's id.
    RestOnly(&'static str),
}

impl Calls {
    pub fn operation_id(self) -> &'static str {
        match self {
            Calls::Rpc(rpc) => rpc.split_once('.').map_or(rpc, |(_, method)| method),
            Calls::RestOnly(name) => name,
        }
    }

    /// `Service.Method`, or the REST-only operation's name.
    pub fn name(self) -> &'static str {
        match self {
            Calls::Rpc(rpc) | Calls::RestOnly(rpc) => rpc,
        }
    }

    /// The document's grouping: the gRPC service, or REST for the rest.
    pub fn tag(self) -> &'static str {
        match self {
            Calls::Rpc(rpc) => rpc.split_once('.').map_or(rpc, |(service, _)| service),
            Calls::RestOnly(_) => "REST only",
        }
    }
}

pub struct Operation {
    pub verb: Verb,
    /// As documented: `{camelCase}` parameters, AIP-136 `:verb` custom methods.
    pub path: &'static str,
    pub calls: Calls,
    pub summary: &'static str,
    pub caller: Caller,
    pub class: LoadClass,
    pub input: Input,
    pub output: Output,
    pub headers: &'static [Header],
    /// The handler, on this row's verb. Custom methods of one resource share
    /// the resource's handler, which dispatches on the verb.
    pub handler: fn(MethodFilter) -> MethodRouter<RestState>,
}

impl Operation {
    /// Whether a request path is an instance of this operation's path: `{x}`
    /// is one segment without `:`, `{x}:verb` one that ends in `:verb`.
    pub fn matches(&self, path: &str) -> bool {
        let (template, path): (Vec<&str>, Vec<&str>) = (self.path.split('/').collect(), path.split('/').collect());
        template.len() == path.len()
            && template.iter().zip(&path).all(|(expected, segment)| match expected.split_once('}') {
                Some((_, "")) => !segment.is_empty() && !segment.contains(':'),
                Some((_, custom)) => segment.strip_suffix(custom).is_some_and(|id| !id.is_empty() && !id.contains(':')),
                None => expected == segment,
            })
    }

    /// The path axum routes: a custom method (`{id}:verb`) is a POST or GET
    /// on the resource's own segment, which its handler splits.
    pub fn route_path(&self) -> &'static str {
        match self.path.rfind("}:") {
            Some(at) => &self.path[..=at],
            None => self.path,
        }
    }
}

const PAGE: &[&str] = &["pageSize", "pageToken"];
const STATUS_PAGE: &[&str] = &["status", "pageSize", "pageToken"];

/// The operation a request names, if any (HEAD is GET's).
pub fn find(method: &axum::http::Method, path: &str) -> Option<&'static Operation> {
    let method = if method == axum::http::Method::HEAD { "GET" } else { method.as_str() };
    operations().iter().find(|operation| operation.verb.http() == method && operation.matches(path))
}

/// The table, built once.
pub fn operations() -> &'static [Operation] {
    static OPERATIONS: std::sync::LazyLock<Vec<Operation>> = std::sync::LazyLock::new(table);
    &OPERATIONS
}

/// A row per operation: verb, path, what it calls, summary, caller, load
/// class, input, output, headers read, handler.
#[rustfmt::skip]
fn table() -> Vec<Operation> {
    use Caller::*;
    use LoadClass::{Browse, Critical, Standard};
    use Verb::*;
    use Calls::{RestOnly, Rpc};
    let row = |verb, path, calls, summary, caller, class, input, output, headers, handler: fn(MethodFilter) -> MethodRouter<RestState>|
        Operation { verb, path, calls, summary, caller, class, input, output, headers, handler };
    vec![
        row(Post, "/v1/auth/register", Rpc("AuthService.Register"), "Create a customer account", Anyone, Standard, Input::Body, Output::Created, &[], |m| on(m, h::register)),
        row(Post, "/v1/auth/token", Rpc("AuthService.IssueToken"), "Sign in: a bearer token for e-mail and password", Anyone, Standard, Input::Body, Output::Ok, &[], |m| on(m, h::issue_token)),
        row(Post, "/v1/apiKeys", Rpc("AuthService.CreateApiKey"), "Create an API key for an internal tool (organizer, admin; the secret is shown once)", User, Standard, Input::Body, Output::Created, &[], |m| on(m, h::create_api_key)),
        row(Get, "/v1/apiKeys", Rpc("AuthService.ListApiKeys"), "The caller's API keys, newest first", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::list_api_keys)),
        row(Post, "/v1/apiKeys/{apiKeyId}:revoke", Rpc("AuthService.RevokeApiKey"), "Revoke an API key, at once on every replica", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::api_key_custom_method)),
        row(Get, "/v1/events", Rpc("CatalogService.ListEvents"), "Published events, soonest first", Anyone, Browse, Input::Query(PAGE), Output::Cacheable, &[], |m| on(m, h::list_events)),
        row(Post, "/v1/events", Rpc("CatalogService.CreateEvent"), "Create a draft event (organizer, admin)", User, Standard, Input::Body, Output::Created, &[], |m| on(m, h::create_event)),
        row(Get, "/v1/events/{eventId}", Rpc("CatalogService.GetEvent"), "One event with its ticket categories and their availability", Anyone, Browse, Input::Nothing, Output::Cacheable, &[], |m| on(m, h::get_event)),
        row(Get, "/v1/events/{eventId}:watchAvailability", Rpc("CatalogService.WatchAvailability"), "The event's availability now, then whenever it changes", Anyone, Browse, Input::Nothing, Output::EventStream, &[], |m| on(m, h::get_event)),
        row(Patch, "/v1/events/{eventId}", Rpc("CatalogService.UpdateEvent"), "Change the fields that are set (owning organizer, admin)", User, Standard, Input::Body, Output::Ok, &[], |m| on(m, h::update_event)),
        row(Post, "/v1/events/{eventId}:publish", Rpc("CatalogService.PublishEvent"), "Publish a draft that has a ticket category", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::event_custom_method)),
        row(Post, "/v1/events/{eventId}:cancel", Rpc("CatalogService.CancelEvent"), "Cancel the event: tickets void, paid orders refunded", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::event_custom_method)),
        row(Post, "/v1/events/{eventId}/ticketCategories", Rpc("CatalogService.CreateTicketCategory"), "Add a ticket category", User, Standard, Input::Body, Output::Created, &[], |m| on(m, h::create_ticket_category)),
        row(Patch, "/v1/events/{eventId}/ticketCategories/{ticketCategoryId}", Rpc("CatalogService.UpdateTicketCategory"), "Change a ticket category", User, Standard, Input::Body, Output::Ok, &[], |m| on(m, h::update_ticket_category)),
        row(Get, "/v1/events/{eventId}/auditEntries", Rpc("CatalogService.ListAuditEntries"), "Changes to the event's money and access, oldest first", User, Standard, Input::Query(PAGE), Output::Ok, &[], |m| on(m, h::list_audit_entries)),
        row(Post, "/v1/events/{eventId}/scanners", Rpc("CheckInService.CreateScanner"), "Register a scanner device (its token is shown once)", User, Standard, Input::Body, Output::Created, &[], |m| on(m, h::create_scanner)),
        row(Post, "/v1/events/{eventId}/scanners/{scannerId}:revoke", Rpc("CheckInService.RevokeScanner"), "Revoke a scanner device", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::scanner_custom_method)),
        row(Get, "/v1/events/{eventId}/checkinManifest", Rpc("CheckInService.StreamManifest"), "The tickets a scanner needs offline, in pages", Scanner, Standard, Input::Query(&["cursor", "sinceVersion", "pageSize"]), Output::JsonLines, &[], |m| on(m, h::stream_manifest)),
        row(Get, "/v1/events/{eventId}/checkinStats", Rpc("CheckInService.GetCheckinStats"), "Check-in counts by gate (organizer, admin)", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::checkin_stats)),
        row(Post, "/v1/checkins", Rpc("CheckInService.Redeem"), "Check a ticket in at a gate", Scanner, Critical, Input::Body, Output::Ok, &[], |m| on(m, h::redeem)),
        row(Post, "/v1/checkins:sync", Rpc("CheckInService.SyncOfflineScans"), "Upload scans made offline", Scanner, Critical, Input::Body, Output::Ok, &[], |m| on(m, h::sync_offline_scans)),
        row(Post, "/v1/events/{eventId}/reports", Rpc("ReportService.CreateReport"), "Start a sales report", User, Standard, Input::Nothing, Output::Created, &[], |m| on(m, h::create_report)),
        row(Get, "/v1/events/{eventId}/reports/{reportId}", Rpc("ReportService.GetReport"), "A report's status", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::get_report)),
        row(Get, "/v1/events/{eventId}/reports/{reportId}:download", RestOnly("DownloadReport"), "A ready report's CSV", User, Standard, Input::Nothing, Output::Csv, &[], |m| on(m, h::get_report)),
        row(Get, "/v1/events/{eventId}/queue:challenge", Rpc("WaitingRoomService.GetChallenge"), "An ALTCHA challenge to join the waiting room", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::get_challenge)),
        row(Post, "/v1/events/{eventId}/queue:join", Rpc("WaitingRoomService.JoinQueue"), "Join the waiting room with a solved challenge", User, Standard, Input::Body, Output::Created, &[], |m| on(m, h::join_queue)),
        row(Get, "/v1/events/{eventId}/queue/{queueEntryId}", Rpc("WaitingRoomService.GetQueueEntry"), "The caller's place in the waiting room", User, Browse, Input::Nothing, Output::Ok, &[], |m| on(m, h::get_queue_entry)),
        row(Get, "/v1/events/{eventId}/queue/{queueEntryId}:watch", Rpc("WaitingRoomService.WatchQueueEntry"), "The caller's place now, then whenever it changes", User, Browse, Input::Nothing, Output::EventStream, &[], |m| on(m, h::get_queue_entry)),
        row(Get, "/v1/events/{eventId}/refunds", Rpc("OrderService.ListRefunds"), "The event's refunds, by status", User, Standard, Input::Query(STATUS_PAGE), Output::Ok, &[], |m| on(m, h::list_refunds)),
        row(Post, "/v1/refunds/{refundId}:complete", Rpc("OrderService.CompleteManualRefund"), "Record a refund paid by hand", User, Standard, Input::Body, Output::Ok, &[], |m| on(m, h::refund_custom_method)),
        row(Get, "/v1/orders", Rpc("OrderService.ListOrders"), "The caller's own orders, newest first", User, Standard, Input::Query(PAGE), Output::Ok, &[], |m| on(m, h::list_orders)),
        row(Post, "/v1/orders", Rpc("OrderService.CreateOrder"), "Order tickets: held until paid or expired", User, Standard, Input::Body, Output::Created, &[Header::IdempotencyKey, Header::Admission], |m| on(m, h::create_order)),
        row(Get, "/v1/orders/{orderId}", Rpc("OrderService.GetOrder"), "One order", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::get_order)),
        row(Post, "/v1/orders/{orderId}:cancel", Rpc("OrderService.CancelOrder"), "Cancel a pending order", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::order_custom_method)),
        row(Post, "/v1/orders/{orderId}:refund", Rpc("OrderService.RefundOrder"), "Refund a paid order, whole or some tickets (organizer, admin)", User, Standard, Input::Body, Output::Created, &[Header::IdempotencyKey], |m| on(m, h::order_custom_method)),
        row(Get, "/v1/orders/{orderId}/tickets", Rpc("OrderService.ListTickets"), "A paid order's tickets with their codes", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::list_tickets)),
        row(Post, "/v1/orders/{orderId}/payments", Rpc("PaymentService.CreatePayment"), "Start paying a pending order (Midtrans Snap)", User, Standard, Input::Body, Output::Created, &[], |m| on(m, h::create_payment)),
        row(Get, "/v1/orders/{orderId}/payments/{paymentId}", Rpc("PaymentService.GetPayment"), "One payment", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::get_payment)),
        row(Post, "/v1/orders/{orderId}/payments/{paymentId}:approve", Rpc("PaymentService.ApprovePayment"), "Accept a card payment Midtrans challenged", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::payment_custom_method)),
        row(Post, "/v1/orders/{orderId}/payments/{paymentId}:deny", Rpc("PaymentService.DenyPayment"), "Refuse a card payment Midtrans challenged", User, Standard, Input::Nothing, Output::Ok, &[], |m| on(m, h::payment_custom_method)),
        row(Get, "/v1/events/{eventId}/payments", Rpc("PaymentService.ListPayments"), "The event's payments, by status", User, Standard, Input::Query(STATUS_PAGE), Output::Ok, &[], |m| on(m, h::list_payments)),
        row(Post, "/v1/payments/midtrans/notifications", RestOnly("ReceiveMidtransNotification"), "Midtrans's payment notification (signature-checked)", Midtrans, Critical, Input::Notification, Output::Acknowledged, &[], |m| on(m, h::midtrans_notification)),
    ]
}
