//! The gRPC transport: one tonic service per contract service, plus health
//! and reflection. The REST facade calls these same services.

mod auth;
mod catalog;
pub mod checkin;
pub mod orders;
pub mod payments;
pub mod reports;
pub mod status;
pub mod waiting_room;

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
    time::Duration,
};

use prost::Message;
use prost_types::FileDescriptorSet;

use ticketing_proto::v1::{
    auth_service_server::AuthServiceServer, catalog_service_server::CatalogServiceServer,
    check_in_service_server::CheckInServiceServer, order_service_server::OrderServiceServer,
    payment_service_server::PaymentServiceServer, report_service_server::ReportServiceServer,
    waiting_room_service_server::WaitingRoomServiceServer,
};
use tonic::{Request, server::NamedService, service::Routes};
use tonic_health::{
    ServingStatus,
    pb::health_server::{Health, HealthServer},
    server::HealthReporter,
};
use tonic_web::GrpcWebLayer;
use tower::Layer;

pub use self::{
    auth::AuthApi, catalog::CatalogApi, checkin::CheckInApi, orders::OrderApi, payments::PaymentApi,
    reports::ReportApi, waiting_room::WaitingRoomApi,
};
use crate::{AppState, auth::RequestContext, load_class::LoadClass};

/// A live stream's messages as tonic sends them.
pub type MessageStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, tonic::Status>> + Send>>;

/// A live stream for tonic: its messages, then its end's status (a drain's
/// UNAVAILABLE tells the client to reconnect).
fn message_stream<T: Clone + Send + Sync + 'static>(watch: crate::app::live::Watch<T>) -> MessageStream<T> {
    use futures::StreamExt;
    Box::pin(watch.into_messages().map(|item| item.map_err(status::to_status)))
}

/// The context the auth layer left on the request (anonymous if absent).
pub(crate) fn context<T>(request: &Request<T>) -> RequestContext {
    request.extensions().get::<RequestContext>().cloned().unwrap_or_default()
}

/// A method this server serves, from the compiled-in descriptors.
struct ServedMethod {
    client_streaming: bool,
}

/// Every method this server serves, by path (`/package.Service/Method`).
static SERVED: LazyLock<HashMap<&'static str, ServedMethod>> = LazyLock::new(|| {
    [
        ticketing_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
    .into_iter()
    .flat_map(|bytes| FileDescriptorSet::decode(bytes).expect("compiled-in descriptors decode").file)
    .flat_map(|file| {
        let package = file.package().to_owned();
        file.service.into_iter().flat_map(move |service| {
            let prefix = format!("/{package}.{}/", service.name());
            service.method.into_iter().map(move |method| {
                let path: &'static str = format!("{prefix}{}", method.name()).leak();
                (path, ServedMethod { client_streaming: method.client_streaming() })
            })
        })
    })
    .collect()
});

/// The metrics label of every gRPC path this server does not serve.
pub const UNKNOWN_METHOD: &str = "unknown_method";

/// [`ServiceSet`] behind one `Arc`: every REST request clones it twice (its
/// route's stack and axum's `State`), and eight `AppState`s a clone, all on
/// one contended reference count, were a cached read's largest cost.
#[derive(Clone)]
pub struct Services(Arc<ServiceSet>);

impl std::ops::Deref for Services {
    type Target = ServiceSet;

    fn deref(&self) -> &ServiceSet {
        &self.0
    }
}

/// One instance of each service, shared by the gRPC routes and the facade.
pub struct ServiceSet {
    pub auth: AuthApi,
    pub catalog: CatalogApi,
    pub orders: OrderApi,
    pub payments: PaymentApi,
    pub checkin: CheckInApi,
    pub reports: ReportApi,
    pub waiting_room: WaitingRoomApi,
    /// For the routes that have no gRPC method (REST only: the Midtrans
    /// webhook, a report's CSV): they call their use case directly.
    pub state: AppState,
}

impl Services {
    pub fn new(state: &AppState) -> Services {
        Services(Arc::new(ServiceSet {
            state: state.clone(),
            auth: AuthApi::new(state.clone()),
            catalog: CatalogApi::new(state.clone()),
            orders: OrderApi::new(state.clone()),
            payments: PaymentApi::new(state.clone()),
            checkin: CheckInApi::new(state.clone()),
            reports: ReportApi::new(state.clone()),
            waiting_room: WaitingRoomApi::new(state.clone()),
        }))
    }

    /// Each gRPC method's load class, declared with the services: the
    /// catalog's public reads browse, the gates are critical, everything else
    /// (health and reflection too) is standard.
    pub fn load_class(path: &str) -> LoadClass {
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or_default();
        if service == <CheckInServiceServer<CheckInApi> as NamedService>::NAME {
            LoadClass::Critical
        } else if service == <CatalogServiceServer<CatalogApi> as NamedService>::NAME
            && matches!(method, "ListEvents" | "GetEvent")
            // Polled by everyone waiting: shed first, like browsing.
            || service == <WaitingRoomServiceServer<WaitingRoomApi> as NamedService>::NAME && method == "GetQueueEntry"
            // Opening a live stream: its slot is held only until the stream
            // starts; open streams count against MAX_WATCHERS instead.
            || matches!(method, "WatchAvailability" | "WatchQueueEntry")
        {
            LoadClass::Browse
        } else {
            LoadClass::Standard
        }
    }

    /// The metrics label of a gRPC path: the method itself when it is one
    /// this server serves, else one shared label, so guessed paths cannot
    /// mint a series each.
    pub fn method_label(path: &str) -> &'static str {
        SERVED.get_key_value(path).map_or(UNKNOWN_METHOD, |(path, _)| *path)
    }

    /// Whether `path` names a method this server serves.
    pub fn serves(path: &str) -> bool {
        SERVED.contains_key(path)
    }

    /// Whether a served method's request is a stream (client or
    /// bidirectional streaming: reflection), which cannot be read whole
    /// before the call starts.
    pub fn streams_requests(path: &str) -> bool {
        SERVED.get(path).is_some_and(|method| method.client_streaming)
    }

    /// gRPC (and gRPC-Web) routes for every service, health and reflection,
    /// with explicit message-size limits.
    pub fn routes(&self, health: HealthServer<impl Health>, max_message_bytes: usize) -> Routes {
        macro_rules! limited {
            ($server:expr) => {
                GrpcWebLayer::new().layer(
                    $server.max_decoding_message_size(max_message_bytes).max_encoding_message_size(max_message_bytes),
                )
            };
        }
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ticketing_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("the contract's descriptors are valid");
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ticketing_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .expect("the contract's descriptors are valid");
        Routes::new(limited!(AuthServiceServer::new(self.auth.clone())))
            .add_service(limited!(CatalogServiceServer::new(self.catalog.clone())))
            .add_service(limited!(OrderServiceServer::new(self.orders.clone())))
            .add_service(limited!(PaymentServiceServer::new(self.payments.clone())))
            .add_service(limited!(CheckInServiceServer::new(self.checkin.clone())))
            .add_service(limited!(ReportServiceServer::new(self.reports.clone())))
            .add_service(limited!(WaitingRoomServiceServer::new(self.waiting_room.clone())))
            .add_service(GrpcWebLayer::new().layer(health))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
    }
}

/// Names of the services whose health is reported.
pub const SERVICE_NAMES: &[&str] = &[
    "ticketing.v1.AuthService",
    "ticketing.v1.CatalogService",
    "ticketing.v1.OrderService",
    "ticketing.v1.PaymentService",
    "ticketing.v1.CheckInService",
    "ticketing.v1.ReportService",
    "ticketing.v1.WaitingRoomService",
];

/// Sets the status of the server ("") and of every service in [`SERVICE_NAMES`].
pub async fn report_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        reporter.set_service_status(*name, status).await;
    }
}

/// Keeps the gRPC health service in step with the dependencies: NOT_SERVING
/// while the primary is unreachable (Redis down costs speed, not service).
pub async fn watch_health(state: AppState, reporter: HealthReporter, every: Duration) {
    let mut last = None;
    loop {
        let (ready, redis) = tokio::join!(dependencies_ready(&state), state.redis.is_reachable());
        metrics::gauge!("ticketing_redis_up").set(if redis { 1.0 } else { 0.0 });
        if last != Some(ready) {
            report_health(&reporter, if ready { ServingStatus::Serving } else { ServingStatus::NotServing }).await;
            last = Some(ready);
        }
        tokio::time::sleep(every).await;
    }
}

/// Readiness: the primary answers. Redis is reported, not required.
pub async fn dependencies_ready(state: &AppState) -> bool {
    state.db.primary_is_reachable().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_have_a_label_of_their_own() {
        assert_eq!(
            Services::method_label("/ticketing.v1.OrderService/CreateOrder"),
            "/ticketing.v1.OrderService/CreateOrder"
        );
        assert_eq!(Services::method_label("/grpc.health.v1.Health/Check"), "/grpc.health.v1.Health/Check");
        assert_eq!(Services::method_label("/ticketing.v1.OrderService/p123"), UNKNOWN_METHOD);
        assert_eq!(Services::method_label("/ticketing.v1.Nope/CreateOrder"), UNKNOWN_METHOD);
        assert_eq!(Services::method_label("/"), UNKNOWN_METHOD);
    }

    #[test]
    fn only_reflection_streams_its_requests() {
        assert!(Services::streams_requests("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        assert!(!Services::streams_requests("/ticketing.v1.CheckInService/Redeem"));
        assert!(!Services::streams_requests("/ticketing.v1.CheckInService/StreamManifest"), "a server stream");
        assert!(!Services::streams_requests("/ticketing.v1.Nope/Redeem"));
    }

    #[test]
    fn grpc_methods_are_classified_as_their_services_declare() {
        assert_eq!(Services::load_class("/ticketing.v1.CheckInService/Redeem"), LoadClass::Critical);
        assert_eq!(Services::load_class("/ticketing.v1.CatalogService/GetEvent"), LoadClass::Browse);
        assert_eq!(Services::load_class("/ticketing.v1.CatalogService/ListEvents"), LoadClass::Browse);
        assert_eq!(Services::load_class("/ticketing.v1.CatalogService/UpdateEvent"), LoadClass::Standard);
        assert_eq!(Services::load_class("/ticketing.v1.OrderService/CreateOrder"), LoadClass::Standard);
        assert_eq!(Services::load_class("/grpc.health.v1.Health/Check"), LoadClass::Standard);
    }
}
