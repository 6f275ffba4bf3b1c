use ticketing_domain::{Error, orders::OrderLine};
use ticketing_proto::v1::{self, order_service_server::OrderService};
use ticketing_store::orders::OrderWithItems;
use tonic::{Request, Response, Status, metadata::MetadataValue};

use super::{context, status::to_status};
use crate::{
    AppState,
    app::{orders, refunds},
    wire::{money_to_proto, parse_id, refund_status_from_proto, refund_to_proto, ticket_to_proto, timestamp},
};

/// Response metadata set when an idempotency key replayed an earlier order;
/// REST shows it as the `Idempotent-Replayed` header.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

#[derive(Clone)]
pub struct OrderApi {
    state: AppState,
}

impl OrderApi {
    pub fn new(state: AppState) -> OrderApi {
        OrderApi { state }
    }
}

fn order_to_proto(order: OrderWithItems) -> v1::Order {
    use ticketing_domain::orders::OrderStatus;
    let OrderWithItems { order, items } = order;
    let status = match order.status {
        OrderStatus::Pending => v1::OrderStatus::Pending,
        OrderStatus::Paid => v1::OrderStatus::Paid,
        OrderStatus::Expired => v1::OrderStatus::Expired,
        OrderStatus::Cancelled => v1::OrderStatus::Cancelled,
        OrderStatus::Refunded => v1::OrderStatus::Refunded,
    };
    let total = order.total();
    v1::Order {
        id: order.id.to_string(),
        user_id: order.user_id.to_string(),
        event_id: order.event_id.to_string(),
        status: status.into(),
        items: items
            .into_iter()
            .map(|item| v1::OrderItem {
                ticket_category_id: item.ticket_category_id.to_string(),
                quantity: item.quantity,
                unit_price: Some(v1::Money {
                    currency_code: total.currency_code.clone(),
                    units: item.unit_price_units,
                    nanos: item.unit_price_nanos,
                }),
            })
            .collect(),
        total: Some(money_to_proto(total)),
        expire_time: timestamp(order.expire_time),
        create_time: timestamp(order.created_at),
        update_time: timestamp(order.updated_at),
    }
}

fn order_lines(items: &[v1::OrderItem]) -> Result<Vec<OrderLine>, Error> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            Ok(OrderLine {
                ticket_category_id: parse_id(&item.ticket_category_id, &format!("items[{i}].ticketCategoryId"))?,
                quantity: item.quantity,
            })
        })
        .collect()
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    async fn create_order(&self, request: Request<v1::CreateOrderRequest>) -> Result<Response<v1::Order>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.into_inner();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        let lines = order_lines(&req.items).map_err(to_status)?;
        let create = orders::CreateOrder {
            event_id,
            lines,
            idempotency_key: req.request_id,
            admission_token: req.admission_token,
        };
        let placed = orders::create_order(&self.state, caller, create).await.map_err(to_status)?;
        let mut response = Response::new(order_to_proto(placed.order));
        if placed.replayed {
            response.metadata_mut().insert(IDEMPOTENT_REPLAYED, MetadataValue::from_static("true"));
        }
        Ok(response)
    }

    async fn get_order(&self, request: Request<v1::GetOrderRequest>) -> Result<Response<v1::Order>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let order_id = parse_id(&request.get_ref().order_id, "orderId").map_err(to_status)?;
        let order = orders::get_order(&self.state, caller, order_id).await.map_err(to_status)?;
        Ok(Response::new(order_to_proto(order)))
    }

    async fn list_orders(
        &self,
        request: Request<v1::ListOrdersRequest>,
    ) -> Result<Response<v1::ListOrdersResponse>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.get_ref();
        let page = orders::list_orders(&self.state, caller, req.page_size, &req.page_token).await.map_err(to_status)?;
        Ok(Response::new(v1::ListOrdersResponse {
            orders: page.orders.into_iter().map(order_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn cancel_order(&self, request: Request<v1::CancelOrderRequest>) -> Result<Response<v1::Order>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let order_id = parse_id(&request.get_ref().order_id, "orderId").map_err(to_status)?;
        let order = orders::cancel_order(&self.state, caller, order_id).await.map_err(to_status)?;
        Ok(Response::new(order_to_proto(order)))
    }

    async fn list_tickets(
        &self,
        request: Request<v1::ListTicketsRequest>,
    ) -> Result<Response<v1::ListTicketsResponse>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let order_id = parse_id(&request.get_ref().order_id, "orderId").map_err(to_status)?;
        let tickets = orders::list_tickets(&self.state, caller, order_id).await.map_err(to_status)?;
        Ok(Response::new(v1::ListTicketsResponse { tickets: tickets.into_iter().map(ticket_to_proto).collect() }))
    }

    async fn refund_order(&self, request: Request<v1::RefundOrderRequest>) -> Result<Response<v1::Refund>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.into_inner();
        let order_id = parse_id(&req.order_id, "orderId").map_err(to_status)?;
        let ticket_ids = req
            .ticket_ids
            .iter()
            .enumerate()
            .map(|(i, id)| parse_id(id, &format!("ticketIds[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(to_status)?;
        let refund = refunds::RefundOrder {
            order_id,
            ticket_ids,
            reason: req.reason,
            return_to_sale: req.return_to_sale.unwrap_or(true),
            idempotency_key: req.request_id,
        };
        let issued = refunds::refund_order(&self.state, caller, refund).await.map_err(to_status)?;
        let mut response = Response::new(refund_to_proto(issued.refund));
        if issued.replayed {
            response.metadata_mut().insert(IDEMPOTENT_REPLAYED, MetadataValue::from_static("true"));
        }
        Ok(response)
    }

    async fn list_refunds(
        &self,
        request: Request<v1::ListRefundsRequest>,
    ) -> Result<Response<v1::ListRefundsResponse>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.get_ref();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        let status = v1::RefundStatus::try_from(req.status)
            .map_err(|_| to_status(Error::invalid_field("status", "is not a refund status")))?;
        let page = refunds::list_refunds(
            &self.state,
            caller,
            event_id,
            refund_status_from_proto(status),
            req.page_size,
            &req.page_token,
        )
        .await
        .map_err(to_status)?;
        Ok(Response::new(v1::ListRefundsResponse {
            refunds: page.refunds.into_iter().map(refund_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn complete_manual_refund(
        &self,
        request: Request<v1::CompleteManualRefundRequest>,
    ) -> Result<Response<v1::Refund>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.into_inner();
        let refund_id = parse_id(&req.refund_id, "refundId").map_err(to_status)?;
        let refund =
            refunds::complete_manual_refund(&self.state, caller, refund_id, req.reference).await.map_err(to_status)?;
        Ok(Response::new(refund_to_proto(refund)))
    }
}
