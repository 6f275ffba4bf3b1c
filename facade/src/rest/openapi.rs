//! The REST API as an OpenAPI 3.1 document, generated from the operations
//! table and the contract's own descriptors: each body is its message in
//! the canonical proto3 JSON mapping (what pbjson reads and writes), so the
//! document cannot drift from the code. Served at `GET /openapi.json`,
//! committed as `proto/openapi.json` (`ticketing openapi`, checked by
//! `ci/proto-check`).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::LazyLock,
};

use axum::{
    http::header::CONTENT_TYPE,
    response::{IntoResponse, Response},
};
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};
use ticketing_domain::Reason;

use super::operations::{Caller, Calls, Header, Input, Operation, Output, operations};

const PACKAGE: &str = "ticketing.v1";
const ERROR: &str = "#/components/schemas/Error";

/// The document's bytes, built once.
static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string_pretty(&document()).expect("a JSON value serializes") + "\n");

pub async fn serve() -> Response {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response()
}

/// The document as committed and served.
pub fn text() -> &'static str {
    &DOCUMENT
}

pub fn document() -> Value {
    let pool = DescriptorPool::decode(ticketing_proto::FILE_DESCRIPTOR_SET).expect("the contract's descriptors decode");
    let mut schemas = Schemas::default();
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    let all = operations();
    for operation in all {
        let mut item = path_item(&pool, operation, &mut schemas);
        let links = if answers_with_id(&pool, operation) { links(operation, all) } else { Map::new() };
        if !links.is_empty() {
            let success = item["responses"].as_object_mut().and_then(|r| r.values_mut().next()).expect("a success");
            success["links"] = Value::Object(links);
        }
        paths.entry(operation.path).or_default().insert(operation.verb.name().to_owned(), item);
    }
    let mut components = schemas.done();
    components.insert("Error".into(), error_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Ticketing API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "REST/JSON over the ticketing.v1 gRPC contract (shared/API.md): the same \
                methods, messages in the canonical proto3 JSON mapping, errors in Google's JSON \
                error form. 429 and 503 carry Retry-After; rate-limited answers carry the IETF \
                RateLimit and RateLimit-Policy headers.",
        },
        "servers": [{ "url": "/" }],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A user's token from POST /v1/auth/token, or a scanner device's \
                        token from CreateScanner (check-in operations).",
                },
            },
            "headers": {
                "Retry-After": { "description": "Seconds to wait before retrying.", "schema": { "type": "integer", "minimum": 0 } },
                "RateLimit": { "description": "The caller's remaining quota (IETF httpapi-ratelimit-headers).", "schema": { "type": "string" } },
                "RateLimit-Policy": { "description": "The quota's policy.", "schema": { "type": "string" } },
            },
            "responses": {
                "Error": error_response("The request failed; `error.details[0].reason` says why."),
                "Throttled": throttled_response(),
                "Unavailable": unavailable_response(),
            },
        },
    })
}

/// Whether the operation's answer is a resource with an `id`.
fn answers_with_id(pool: &DescriptorPool, operation: &Operation) -> bool {
    rpc_messages(pool, operation).1.is_some_and(|output| output.get_field_by_name("id").is_some())
}

/// The RPC's request and response messages; none for a REST-only operation.
fn rpc_messages(
    pool: &DescriptorPool,
    operation: &Operation,
) -> (Option<MessageDescriptor>, Option<MessageDescriptor>) {
    match operation.calls {
        Calls::Rpc(rpc) => {
            let (service, method) = rpc.split_once('.').expect("Service.Method");
            let service = pool
                .get_service_by_name(&format!("{PACKAGE}.{service}"))
                .unwrap_or_else(|| panic!("no service {service} in the contract"));
            let method = service
                .methods()
                .find(|m| m.name() == method)
                .unwrap_or_else(|| panic!("no method {rpc} in the contract"));
            (Some(method.input()), Some(method.output()))
        }
        Calls::RestOnly(_) => (None, None),
    }
}

fn path_item(pool: &DescriptorPool, operation: &Operation, schemas: &mut Schemas) -> Value {
    let (input, output) = rpc_messages(pool, operation);
    let mut parameters: Vec<Value> = path_parameters(operation.path)
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }))
        .collect();
    if let Input::Query(fields) = operation.input {
        let message = input.as_ref().expect("query fields belong to an RPC's request");
        for name in fields {
            let field = field_by_json_name(message, name);
            let schema = match field.kind() {
                Kind::Enum(e) => status_filter(&e),
                _ => schemas.field(&field),
            };
            parameters.push(json!({ "name": name, "in": "query", "required": false, "schema": schema }));
        }
    }
    for header in operation.headers {
        parameters.push(match header {
            Header::IdempotencyKey => json!({
                "name": "Idempotency-Key", "in": "header", "required": true,
                "description": "The request's identity: a retry with the same key and body answers \
                    what the first did (`Idempotent-Replayed: true`); another body is 409 IDEMPOTENCY_KEY_REUSED.",
                "schema": { "type": "string", "minLength": 1, "maxLength": 255 },
            }),
            Header::Admission => json!({
                "name": "Ticketing-Admission", "in": "header", "required": false,
                "description": "The waiting room's admission token, while the event's room is enabled.",
                "schema": { "type": "string" },
            }),
        });
    }
    if operation.output == Output::EventStream {
        parameters.push(json!({
            "name": "Last-Event-ID", "in": "header", "required": false,
            "description": "The last event's id: the current state is sent only if it differs (an id longer than 64 characters is not ours and is ignored).",
            "schema": { "type": "string" },
        }));
    }
    if operation.output == Output::Cacheable {
        parameters.push(json!({
            "name": "If-None-Match", "in": "header", "required": false,
            "description": "An ETag from an earlier answer: 304 if it still matches.",
            "schema": { "type": "string" },
        }));
    }

    let mut item = Map::new();
    item.insert("operationId".into(), json!(operation.calls.operation_id()));
    item.insert("summary".into(), json!(operation.summary));
    item.insert("tags".into(), json!([operation.calls.tag()]));
    if !parameters.is_empty() {
        item.insert("parameters".into(), Value::Array(parameters));
    }
    match operation.input {
        Input::Body => {
            let message = input.as_ref().expect("a body is an RPC's request");
            // A field the path sets is ignored in the body: no rule on it there.
            for name in path_parameters(operation.path) {
                schemas.path_bound.insert((message.full_name().to_owned(), name.to_owned()));
            }
            item.insert(
                "requestBody".into(),
                json!({
                    "description": "The request message; path parameters override its fields. An empty body is the empty message.",
                    "required": false,
                    "content": { "application/json": { "schema": schemas.message(message) } },
                }),
            );
        }
        Input::Notification => {
            item.insert(
                "requestBody".into(),
                json!({
                    "description": "Midtrans's HTTP notification, as Midtrans sends it.",
                    "required": true,
                    "content": { "application/json": { "schema": midtrans_notification() } },
                }),
            );
        }
        Input::Nothing | Input::Query(_) => {}
    }
    item.insert("responses".into(), responses(operation, output.as_ref(), schemas));
    item.insert(
        "security".into(),
        match operation.caller {
            Caller::Anyone => json!([{}, { "bearer": [] }]),
            Caller::User | Caller::Scanner => json!([{ "bearer": [] }]),
            Caller::Midtrans => json!([]),
        },
    );
    Value::Object(item)
}

fn responses(operation: &Operation, output: Option<&MessageDescriptor>, schemas: &mut Schemas) -> Value {
    let mut message = || schemas.message(output.expect("a message answer is an RPC's response"));
    let mut responses = Map::new();
    let (status, success) = match operation.output {
        Output::Ok => {
            ("200", json!({ "description": "OK", "content": { "application/json": { "schema": message() } } }))
        }
        Output::Created => {
            let idempotent = operation.headers.contains(&Header::IdempotencyKey);
            let mut created =
                json!({ "description": "Created", "content": { "application/json": { "schema": message() } } });
            if idempotent {
                created["headers"] = json!({ "Idempotent-Replayed": {
                    "description": "`true` when this answers an earlier request with the same key.",
                    "schema": { "type": "string", "enum": ["true"] } } });
            }
            ("201", created)
        }
        Output::Cacheable => {
            responses
                .insert("304".into(), json!({ "description": "Not Modified: the If-None-Match ETag still matches." }));
            (
                "200",
                json!({
                    "description": "OK",
                    "headers": {
                        "ETag": { "description": "A strong validator of the body.", "schema": { "type": "string" } },
                        "Cache-Control": { "description": "public for anonymous callers, private with credentials.", "schema": { "type": "string" } },
                    },
                    "content": { "application/json": { "schema": message() } },
                }),
            )
        }
        Output::EventStream => {
            // 204: nothing more will come (an expired queue entry), which
            // ends an EventSource's reconnects.
            responses.insert("204".into(), json!({ "description": "The stream has ended for good." }));
            let data = json!({ "oneOf": [message(), { "$ref": ERROR }] });
            (
                "200",
                json!({
                    "description": "Server-Sent Events: each `message` event's data is the JSON of one update, \
                        `id` its digest (send it back as Last-Event-ID); a `close` event carries the error that \
                        ended the stream (the client reconnects).",
                    "content": { "text/event-stream": { "schema": {
                        "type": "object",
                        "properties": {
                            "data": { "type": "string", "contentMediaType": "application/json", "contentSchema": data },
                            "event": { "type": "string", "enum": ["message", "close"] },
                            "id": { "type": "string" },
                            "retry": { "type": "integer" },
                        },
                    } } },
                }),
            )
        }
        Output::JsonLines => (
            "200",
            json!({
                "description": "Newline-delimited JSON: one `{\"result\": chunk}` per line; an error mid-stream is a last `{\"error\": …}` line.",
                "content": { "application/x-ndjson": { "schema": {
                    "type": "object",
                    "properties": { "result": message(), "error": { "$ref": format!("{ERROR}/properties/error") } },
                } } },
            }),
        ),
        Output::Csv => (
            "200",
            json!({ "description": "The report as CSV.", "content": { "text/csv": { "schema": { "type": "string" } } } }),
        ),
        Output::Acknowledged => (
            "200",
            json!({
                "description": "Received: Midtrans stops retrying.",
                "content": { "application/json": { "schema": {
                    "type": "object", "required": ["status"], "properties": { "status": { "const": "ok" } },
                } } },
            }),
        ),
    };
    responses.insert(status.into(), success);
    responses.insert("429".into(), json!({ "$ref": "#/components/responses/Throttled" }));
    responses.insert("503".into(), json!({ "$ref": "#/components/responses/Unavailable" }));
    responses.insert("default".into(), json!({ "$ref": "#/components/responses/Error" }));
    Value::Object(responses)
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": ERROR } } } })
}

fn throttled_response() -> Value {
    let mut response = error_response("Rate limited (RATE_LIMITED) or a quota spent: retry after Retry-After.");
    response["headers"] = json!({
        "Retry-After": { "$ref": "#/components/headers/Retry-After" },
        "RateLimit": { "$ref": "#/components/headers/RateLimit" },
        "RateLimit-Policy": { "$ref": "#/components/headers/RateLimit-Policy" },
    });
    response
}

fn unavailable_response() -> Value {
    let mut response =
        error_response("Overloaded (OVERLOADED, shed) or a dependency is down: retry after Retry-After.");
    response["headers"] = json!({ "Retry-After": { "$ref": "#/components/headers/Retry-After" } });
    response
}

/// Where a created resource leads (OpenAPI links, which Schemathesis's
/// stateful phase follows): every operation on the new resource — a path
/// below the collection that needs just the new id, from the answer's `id`.
fn links(creator: &Operation, all: &[Operation]) -> Map<String, Value> {
    let mut links = Map::new();
    if creator.output != Output::Created {
        return links;
    }
    // `…/queue:join` creates in `…/queue`.
    let collection = match creator.path.rsplit_once(':') {
        Some((collection, _)) if !collection.ends_with('}') => collection,
        _ => creator.path,
    };
    let prefix = format!("{collection}/{{");
    for target in all {
        let Some((id, rest)) = target.path.strip_prefix(&prefix).and_then(|rest| rest.split_once('}')) else {
            continue;
        };
        if rest.contains('{') {
            continue;
        }
        let mut parameters: Map<String, Value> =
            path_parameters(creator.path).map(|p| (p.to_owned(), json!(format!("$request.path.{p}")))).collect();
        parameters.insert(id.to_owned(), json!("$response.body#/id"));
        let name = target.calls.operation_id();
        links.insert(name.to_owned(), json!({ "operationId": name, "parameters": parameters }));
    }
    links
}

/// The fields of Midtrans's notification this service reads (shared/MIDTRANS.md);
/// Midtrans sends more, which are ignored.
fn midtrans_notification() -> Value {
    let text = json!({ "type": "string" });
    json!({
        "type": "object",
        "required": ["order_id", "status_code", "gross_amount", "signature_key", "transaction_status"],
        "properties": {
            "order_id": text, "status_code": text, "gross_amount": text, "signature_key": text,
            "transaction_status": text, "transaction_id": text, "fraud_status": text, "payment_type": text,
        },
    })
}

/// Google's JSON error form (shared/API.md "Errors").
fn error_schema() -> Value {
    let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    json!({
        "type": "object",
        "required": ["error"],
        "properties": { "error": {
            "type": "object",
            "required": ["code", "status", "message", "details"],
            "properties": {
                "code": { "type": "integer", "description": "The HTTP status." },
                "status": { "type": "string", "description": "The gRPC code's name, e.g. ABORTED." },
                "message": { "type": "string" },
                "details": { "type": "array", "items": {
                    "type": "object",
                    "required": ["@type"],
                    "properties": {
                        "@type": { "type": "string", "enum": [
                            "type.googleapis.com/google.rpc.ErrorInfo",
                            "type.googleapis.com/google.rpc.BadRequest",
                        ] },
                        "reason": { "type": "string", "description": format!(
                            "ErrorInfo: what clients branch on — one of {}, or the code's name.", reasons.join(", ")) },
                        "domain": { "type": "string", "const": "ticketing" },
                        "metadata": { "type": "object", "additionalProperties": { "type": "string" } },
                        "fieldViolations": { "type": "array", "items": {
                            "type": "object",
                            "properties": { "field": { "type": "string" }, "description": { "type": "string" } },
                        } },
                    },
                } },
            },
        } },
    })
}

/// A `status=` filter (handlers' `enum_query`): a value's name with or
/// without the enum's prefix; empty (or UNSPECIFIED) is every status.
fn status_filter(e: &prost_reflect::EnumDescriptor) -> Value {
    let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
    let prefix = names.first().and_then(|n| n.rfind("_UNSPECIFIED").map(|at| n[..=at].to_owned())).unwrap_or_default();
    let mut accepted = vec![String::new()];
    accepted.extend(names.iter().cloned());
    accepted.extend(names.iter().filter_map(|n| n.strip_prefix(prefix.as_str())).map(str::to_owned));
    json!({ "type": "string", "enum": accepted })
}

/// `{name}` segments of a path template, in order.
pub fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('{').skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}

fn field_by_json_name(message: &MessageDescriptor, name: &str) -> FieldDescriptor {
    message
        .fields()
        .find(|f| f.json_name() == name)
        .unwrap_or_else(|| panic!("{} has no field {name}", message.full_name()))
}

/// The components' schemas, one per message reached, in proto3 JSON.
#[derive(Default)]
struct Schemas {
    done: BTreeMap<String, Value>,
    pending: BTreeSet<String>,
    messages: Vec<MessageDescriptor>,
    /// (message, field) pairs a body carries but its path overrides.
    path_bound: BTreeSet<(String, String)>,
}

impl Schemas {
    /// A reference to the message's schema (built once, in `done`).
    fn message(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(schema) = well_known(message) {
            return schema;
        }
        let name = component_name(message);
        if self.pending.insert(name.clone()) {
            self.messages.push(message.clone());
        }
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    fn field(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            let entry = field.kind();
            let entry = entry.as_message().expect("a map's entry is a message");
            let value = self.kind(&entry.map_entry_value_field().kind());
            return json!({ "type": "object", "additionalProperties": value });
        }
        let one = self.kind(&field.kind());
        if field.is_list() { json!({ "type": "array", "items": one }) } else { one }
    }

    fn kind(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double | Kind::Float => json!({ "type": "number" }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({ "type": "integer", "format": "int32" }),
            Kind::Uint32 | Kind::Fixed32 => json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX }),
            // proto3 JSON writes 64-bit integers as decimal strings.
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$" })
            }
            Kind::Uint64 | Kind::Fixed64 => json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]{1,19}$" }),
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
            Kind::Enum(e) => {
                json!({ "type": "string", "enum": e.values().map(|v| v.name().to_owned()).collect::<Vec<_>>() })
            }
            Kind::Message(m) => self.message(m),
        }
    }

    /// Builds every referenced message's schema, following new references.
    fn done(mut self) -> Map<String, Value> {
        while let Some(message) = self.messages.pop() {
            let mut properties = Map::new();
            for field in message.fields() {
                let mut schema = self.field(&field);
                let bound = self.path_bound.contains(&(message.full_name().to_owned(), field.json_name().to_owned()));
                if message.name().ends_with("Request") && is_id(&field) && !bound {
                    schema["format"] = json!("uuid");
                }
                properties.insert(field.json_name().to_owned(), schema);
            }
            let schema = json!({
                "type": "object",
                "title": message.name(),
                "properties": properties,
                "additionalProperties": false,
            });
            self.done.insert(component_name(&message), schema);
        }
        self.done.into_iter().collect()
    }
}

/// Ids the caller makes up, not the service: any text.
const CALLERS_IDS: &[&str] = &[
    // The idempotency key.
    "request_id",
    // A scanner's own id for an offline scan.
    "scan_id",
];

/// A resource's id: a UUID.
fn is_id(field: &FieldDescriptor) -> bool {
    field.kind() == Kind::String
        && !field.is_list()
        && field.name().ends_with("_id")
        && !CALLERS_IDS.contains(&field.name())
}

/// `ticketing.v1.Event` → `Event`; a nested message keeps its parent's name.
fn component_name(message: &MessageDescriptor) -> String {
    message.full_name().strip_prefix(&format!("{PACKAGE}.")).unwrap_or(message.full_name()).to_owned()
}

/// The well-known types' JSON forms (proto3 JSON mapping).
fn well_known(message: &MessageDescriptor) -> Option<Value> {
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$" }),
        "google.protobuf.Empty" => json!({ "type": "object", "additionalProperties": false }),
        "google.protobuf.Struct" => json!({ "type": "object" }),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.FieldMask" => json!({ "type": "string" }),
        "google.protobuf.StringValue" => json!({ "type": "string" }),
        "google.protobuf.BoolValue" => json!({ "type": "boolean" }),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => json!({ "type": "integer" }),
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => {
            json!({ "type": "string", "pattern": "^-?[0-9]{1,19}$" })
        }
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => json!({ "type": "number" }),
        _ => return None,
    })
}
