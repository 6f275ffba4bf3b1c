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
}
