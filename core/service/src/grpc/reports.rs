use ticketing_domain::reports::ReportStatus;
use ticketing_proto::v1::{self, report_service_server::ReportService};
use ticketing_store::reports::ReportRow;
use tonic::{Request, Response, Status};

use super::{context, status::to_status};
use crate::{
    AppState,
    app::reports,
    wire::{parse_id, timestamp},
};

#[derive(Clone)]
pub struct ReportApi {
    state: AppState,
}

impl ReportApi {
    pub fn new(state: AppState) -> ReportApi {
        ReportApi { state }
    }
}

fn report_to_proto(report: ReportRow) -> v1::Report {
    let (status, download_url) = match report.status {
        ReportStatus::Ready => (v1::ReportStatus::Ready, reports::download_url(report.event_id, report.id)),
        ReportStatus::Failed => (v1::ReportStatus::Failed, String::new()),
        ReportStatus::Pending => (v1::ReportStatus::Pending, String::new()),
    };
    v1::Report {
        id: report.id.to_string(),
        event_id: report.event_id.to_string(),
        status: status.into(),
        download_url,
        create_time: timestamp(report.created_at),
    }
}

#[tonic::async_trait]
impl ReportService for ReportApi {
    async fn create_report(&self, request: Request<v1::CreateReportRequest>) -> Result<Response<v1::Report>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let event_id = parse_id(&request.get_ref().event_id, "eventId").map_err(to_status)?;
        let report = reports::create_report(&self.state, caller, event_id).await.map_err(to_status)?;
        Ok(Response::new(report_to_proto(report)))
    }

    async fn get_report(&self, request: Request<v1::GetReportRequest>) -> Result<Response<v1::Report>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.get_ref();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        let report_id = parse_id(&req.report_id, "reportId").map_err(to_status)?;
        let report = reports::get_report(&self.state, caller, event_id, report_id).await.map_err(to_status)?;
        Ok(Response::new(report_to_proto(report)))
    }
}
