use ticketing_domain::{
    Error,
    payments::{PaymentStatus, SnapPaymentMethod},
};
use ticketing_proto::v1::{self, payment_service_server::PaymentService};
use ticketing_store::payments::PaymentRow;
use tonic::{Request, Response, Status};

use super::{context, status::to_status};
use crate::{
    AppState,
    adapters::midtrans::ChallengeDecision,
    app::payments,
    wire::{parse_id, timestamp},
};

#[derive(Clone)]
pub struct PaymentApi {
    state: AppState,
}

impl PaymentApi {
    pub fn new(state: AppState) -> PaymentApi {
        PaymentApi { state }
    }
}

fn payment_to_proto(payment: PaymentRow) -> v1::Payment {
    let status = match payment.status {
        PaymentStatus::Pending => v1::PaymentStatus::Pending,
        PaymentStatus::Challenged => v1::PaymentStatus::Challenged,
        PaymentStatus::Paid => v1::PaymentStatus::Paid,
        PaymentStatus::Failed => v1::PaymentStatus::Failed,
        PaymentStatus::RefundPending | PaymentStatus::Refunded => v1::PaymentStatus::Refunded,
    };
    v1::Payment {
        id: payment.id.to_string(),
        order_id: payment.order_id.to_string(),
        provider: payment.provider,
        status: status.into(),
        token: payment.token,
        redirect_url: payment.redirect_url,
        create_time: timestamp(payment.created_at),
        payment_type: payment.payment_type.unwrap_or_default(),
    }
}

/// A status filter; UNSPECIFIED is none (REFUNDED is both refund states).
fn status_filter(status: v1::PaymentStatus) -> Option<PaymentStatus> {
    match status {
        v1::PaymentStatus::Unspecified => None,
        v1::PaymentStatus::Pending => Some(PaymentStatus::Pending),
        v1::PaymentStatus::Challenged => Some(PaymentStatus::Challenged),
        v1::PaymentStatus::Paid => Some(PaymentStatus::Paid),
        v1::PaymentStatus::Failed => Some(PaymentStatus::Failed),
        v1::PaymentStatus::Refunded => Some(PaymentStatus::Refunded),
    }
}

impl PaymentApi {
    async fn decide(
        &self,
        ctx: &crate::auth::RequestContext,
        order_id: &str,
        payment_id: &str,
        decision: ChallengeDecision,
    ) -> Result<Response<v1::Payment>, Status> {
        let caller = ctx.principal().map_err(to_status)?;
        let order_id = parse_id(order_id, "orderId").map_err(to_status)?;
        let payment_id = parse_id(payment_id, "paymentId").map_err(to_status)?;
        let payment =
            payments::decide_challenge(&self.state, caller, order_id, payment_id, decision).await.map_err(to_status)?;
        Ok(Response::new(payment_to_proto(payment)))
    }
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn create_payment(
        &self,
        request: Request<v1::CreatePaymentRequest>,
    ) -> Result<Response<v1::CreatePaymentResponse>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let order_id = parse_id(&request.get_ref().order_id, "orderId").map_err(to_status)?;
        let method = match request.get_ref().payment_method.as_str() {
            "" => None,
            name => Some(SnapPaymentMethod::parse(name).ok_or_else(|| {
                to_status(Error::invalid_field("paymentMethod", "is not a Midtrans Snap payment method"))
            })?),
        };
        let payment = payments::create_payment(&self.state, caller, order_id, method).await.map_err(to_status)?;
        Ok(Response::new(v1::CreatePaymentResponse {
            payment_id: payment.id.to_string(),
            provider: payment.provider,
            token: payment.token,
            redirect_url: payment.redirect_url,
        }))
    }

    async fn get_payment(&self, request: Request<v1::GetPaymentRequest>) -> Result<Response<v1::Payment>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.get_ref();
        let order_id = parse_id(&req.order_id, "orderId").map_err(to_status)?;
        let payment_id = parse_id(&req.payment_id, "paymentId").map_err(to_status)?;
        let payment = payments::get_payment(&self.state, caller, order_id, payment_id).await.map_err(to_status)?;
        Ok(Response::new(payment_to_proto(payment)))
    }

    async fn list_payments(
        &self,
        request: Request<v1::ListPaymentsRequest>,
    ) -> Result<Response<v1::ListPaymentsResponse>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.get_ref();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        let status = v1::PaymentStatus::try_from(req.status)
            .map_err(|_| to_status(Error::invalid_field("status", "is not a payment status")))?;
        let page = payments::list_payments(
            &self.state,
            caller,
            event_id,
            status_filter(status),
            req.page_size,
            &req.page_token,
        )
        .await
        .map_err(to_status)?;
        Ok(Response::new(v1::ListPaymentsResponse {
            payments: page.payments.into_iter().map(payment_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn approve_payment(
        &self,
        request: Request<v1::ApprovePaymentRequest>,
    ) -> Result<Response<v1::Payment>, Status> {
        let ctx = context(&request);
        let req = request.get_ref();
        self.decide(&ctx, &req.order_id, &req.payment_id, ChallengeDecision::Approve).await
    }

    async fn deny_payment(&self, request: Request<v1::DenyPaymentRequest>) -> Result<Response<v1::Payment>, Status> {
        let ctx = context(&request);
        let req = request.get_ref();
        self.decide(&ctx, &req.order_id, &req.payment_id, ChallengeDecision::Deny).await
    }
}
