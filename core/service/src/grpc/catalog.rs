use ticketing_domain::{
    Error,
    catalog::{CategoryDetails, CategoryPatch, EventDetails, EventPatch},
    error::Violations,
    money::Money,
};
use ticketing_proto::v1::{self, catalog_service_server::CatalogService};
use tonic::{Request, Response, Status};

use super::{context, status::to_status};
use crate::{
    AppState,
    app::{catalog, live, read_cache::Page},
    wire::{
        audit_entry_to_proto, category_to_proto, event_to_proto, money_from_proto, optional_time, parse_id,
        payment_from_proto, required_time, waiting_room_from_proto,
    },
};

#[derive(Clone)]
pub struct CatalogApi {
    state: AppState,
}

impl CatalogApi {
    pub fn new(state: AppState) -> CatalogApi {
        CatalogApi { state }
    }
}

fn event_details(req: v1::CreateEventRequest) -> Result<EventDetails, Error> {
    let mut violations = Violations::default();
    let details = EventDetails {
        start_time: required_time(req.start_time, "startTime", &mut violations),
        end_time: required_time(req.end_time, "endTime", &mut violations),
        sales_start_time: required_time(req.sales_start_time, "salesStartTime", &mut violations),
        sales_end_time: required_time(req.sales_end_time, "salesEndTime", &mut violations),
        name: req.name,
        description: req.description,
        venue: req.venue,
        time_zone: req.time_zone,
        max_tickets_per_customer: req.max_tickets_per_customer,
        waiting_room: req.waiting_room.map(waiting_room_from_proto).unwrap_or_default(),
        payment: req.payment.map(|p| payment_from_proto(p, &mut violations)).unwrap_or_default(),
    };
    // Missing times are reported together with every other bad field.
    details.validate(&mut violations);
    violations.into_result().map(|()| details)
}

fn event_patch(req: v1::UpdateEventRequest) -> Result<EventPatch, Error> {
    let mut violations = Violations::default();
    let patch = EventPatch {
        start_time: optional_time(req.start_time, "startTime", &mut violations),
        end_time: optional_time(req.end_time, "endTime", &mut violations),
        sales_start_time: optional_time(req.sales_start_time, "salesStartTime", &mut violations),
        sales_end_time: optional_time(req.sales_end_time, "salesEndTime", &mut violations),
        name: req.name,
        description: req.description,
        venue: req.venue,
        time_zone: req.time_zone,
        max_tickets_per_customer: req.max_tickets_per_customer,
        waiting_room: req.waiting_room.map(waiting_room_from_proto),
        payment: req.payment.map(|p| payment_from_proto(p, &mut violations)),
    };
    violations.into_result().map(|()| patch)
}

fn category_details(req: v1::CreateTicketCategoryRequest) -> Result<CategoryDetails, Error> {
    let mut violations = Violations::default();
    let price = money_from_proto(req.price);
    if price.is_none() {
        violations.add("price", "is required");
    }
    let details = CategoryDetails {
        sales_start_time: optional_time(req.sales_start_time, "salesStartTime", &mut violations),
        sales_end_time: optional_time(req.sales_end_time, "salesEndTime", &mut violations),
        name: req.name,
        price: price.unwrap_or(Money { currency_code: String::new(), units: 0, nanos: 0 }),
        capacity: req.capacity,
        max_per_order: req.max_per_order,
    };
    violations.into_result().map(|()| details)
}

fn category_patch(req: v1::UpdateTicketCategoryRequest) -> Result<CategoryPatch, Error> {
    let mut violations = Violations::default();
    let patch = CategoryPatch {
        sales_start_time: optional_time(req.sales_start_time, "salesStartTime", &mut violations),
        sales_end_time: optional_time(req.sales_end_time, "salesEndTime", &mut violations),
        name: req.name,
        price: money_from_proto(req.price),
        capacity: req.capacity,
        max_per_order: req.max_per_order,
    };
    violations.into_result().map(|()| patch)
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    async fn list_events(
        &self,
        request: Request<v1::ListEventsRequest>,
    ) -> Result<Response<v1::ListEventsResponse>, Status> {
        let req = request.get_ref();
        catalog::list_events_for(&self.state, &context(&request), req.page_size, &req.page_token)
            .await
            .and_then(Page::into_message)
            .map(Response::new)
            .map_err(to_status)
    }

    async fn watch_availability(
        &self,
        request: Request<v1::WatchAvailabilityRequest>,
    ) -> Result<Response<super::MessageStream<v1::AvailabilityUpdate>>, Status> {
        let ctx = context(&request);
        let event_id = parse_id(&request.get_ref().event_id, "eventId").map_err(to_status)?;
        let watch = live::watch_availability(&self.state, &ctx, event_id).await.map_err(to_status)?;
        Ok(Response::new(super::message_stream(watch)))
    }

    async fn get_event(&self, request: Request<v1::GetEventRequest>) -> Result<Response<v1::Event>, Status> {
        catalog::get_event_for(&self.state, &context(&request), &request.get_ref().event_id)
            .await
            .and_then(Page::into_message)
            .map(Response::new)
            .map_err(to_status)
    }

    async fn create_event(&self, request: Request<v1::CreateEventRequest>) -> Result<Response<v1::Event>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        // Authorization before validation (AIP-211): a customer learns nothing
        // about what a valid event looks like.
        caller.require_event_creator().map_err(to_status)?;
        let details = event_details(request.into_inner()).map_err(to_status)?;
        let event = catalog::create_event(&self.state, caller, details).await.map_err(to_status)?;
        Ok(Response::new(event_to_proto(event, Vec::new())))
    }

    async fn update_event(&self, request: Request<v1::UpdateEventRequest>) -> Result<Response<v1::Event>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.into_inner();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        let patch = event_patch(req).map_err(to_status)?;
        let event = catalog::update_event(&self.state, caller, event_id, patch).await.map_err(to_status)?;
        Ok(Response::new(event_to_proto(event, Vec::new())))
    }

    async fn publish_event(&self, request: Request<v1::PublishEventRequest>) -> Result<Response<v1::Event>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let event_id = parse_id(&request.get_ref().event_id, "eventId").map_err(to_status)?;
        let event = catalog::publish_event(&self.state, caller, event_id).await.map_err(to_status)?;
        Ok(Response::new(event_to_proto(event, Vec::new())))
    }

    async fn cancel_event(&self, request: Request<v1::CancelEventRequest>) -> Result<Response<v1::Event>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let event_id = parse_id(&request.get_ref().event_id, "eventId").map_err(to_status)?;
        let event = catalog::cancel_event(&self.state, caller, event_id).await.map_err(to_status)?;
        Ok(Response::new(event_to_proto(event, Vec::new())))
    }

    async fn create_ticket_category(
        &self,
        request: Request<v1::CreateTicketCategoryRequest>,
    ) -> Result<Response<v1::TicketCategory>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.into_inner();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        let details = category_details(req).map_err(to_status)?;
        let (available, category) =
            catalog::create_ticket_category(&self.state, caller, event_id, details).await.map_err(to_status)?;
        Ok(Response::new(category_to_proto(available, category)))
    }

    async fn update_ticket_category(
        &self,
        request: Request<v1::UpdateTicketCategoryRequest>,
    ) -> Result<Response<v1::TicketCategory>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.into_inner();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        let category_id = parse_id(&req.ticket_category_id, "ticketCategoryId").map_err(to_status)?;
        let patch = category_patch(req).map_err(to_status)?;
        let (available, category) = catalog::update_ticket_category(&self.state, caller, event_id, category_id, patch)
            .await
            .map_err(to_status)?;
        Ok(Response::new(category_to_proto(available, category)))
    }

    async fn list_audit_entries(
        &self,
        request: Request<v1::ListAuditEntriesRequest>,
    ) -> Result<Response<v1::ListAuditEntriesResponse>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.get_ref();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        let page = catalog::list_audit_entries(&self.state, caller, event_id, req.page_size, &req.page_token)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListAuditEntriesResponse {
            entries: page.entries.into_iter().map(audit_entry_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
