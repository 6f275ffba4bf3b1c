use std::pin::Pin;

use futures::{Stream, StreamExt};
use ticketing_domain::{checkin::ScanResult, error::Violations};
use ticketing_proto::v1::{self, check_in_service_server::CheckInService};
use ticketing_store::checkin::FirstCheckin;
use tonic::{Request, Response, Status};

use super::{context, status::to_status};
use crate::{
    AppState,
    app::checkin::{self, OfflineScan, ScanOutcome},
    wire::{optional_time, parse_id, ticket_to_proto, timestamp},
};

#[derive(Clone)]
pub struct CheckInApi {
    state: AppState,
}

impl CheckInApi {
    pub fn new(state: AppState) -> CheckInApi {
        CheckInApi { state }
    }
}

fn result_to_proto(result: ScanResult) -> v1::RedeemResult {
    match result {
        ScanResult::Accepted => v1::RedeemResult::Accepted,
        ScanResult::AlreadyCheckedIn => v1::RedeemResult::AlreadyCheckedIn,
        ScanResult::Invalid => v1::RedeemResult::Invalid,
        ScanResult::Void => v1::RedeemResult::Void,
        ScanResult::WrongEvent => v1::RedeemResult::WrongEvent,
        ScanResult::NotPaid => v1::RedeemResult::NotPaid,
    }
}

fn checkin_to_proto(checkin: FirstCheckin) -> v1::Checkin {
    v1::Checkin {
        scan_time: timestamp(checkin.scan_time),
        gate: checkin.gate,
        scanner_id: checkin.scanner_id.to_string(),
    }
}

fn redeem_to_proto(outcome: ScanOutcome) -> v1::RedeemResponse {
    v1::RedeemResponse {
        result: result_to_proto(outcome.result).into(),
        ticket: outcome.ticket.map(ticket_to_proto),
        first_checkin: outcome.first_checkin.map(checkin_to_proto),
    }
}

type ManifestStream = Pin<Box<dyn Stream<Item = Result<v1::ManifestChunk, Status>> + Send>>;

#[tonic::async_trait]
impl CheckInService for CheckInApi {
    async fn create_scanner(
        &self,
        request: Request<v1::CreateScannerRequest>,
    ) -> Result<Response<v1::CreateScannerResponse>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.get_ref();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        let (scanner, token) =
            checkin::create_scanner(&self.state, caller, event_id, &req.name).await.map_err(to_status)?;
        Ok(Response::new(v1::CreateScannerResponse { scanner_id: scanner.id.to_string(), token }))
    }

    async fn revoke_scanner(
        &self,
        request: Request<v1::RevokeScannerRequest>,
    ) -> Result<Response<v1::RevokeScannerResponse>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.get_ref();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        let scanner_id = parse_id(&req.scanner_id, "scannerId").map_err(to_status)?;
        let scanner = checkin::revoke_scanner(&self.state, caller, event_id, scanner_id).await.map_err(to_status)?;
        Ok(Response::new(v1::RevokeScannerResponse {
            scanner_id: scanner.id.to_string(),
            revoke_time: scanner.revoked_at.and_then(timestamp),
        }))
    }

    async fn redeem(&self, request: Request<v1::RedeemRequest>) -> Result<Response<v1::RedeemResponse>, Status> {
        let ctx = context(&request);
        let device = ctx.device().map_err(to_status)?;
        let req = request.into_inner();
        let mut violations = Violations::default();
        let scan_time = optional_time(req.scan_time, "scanTime", &mut violations);
        violations.into_result().map_err(to_status)?;
        let scan_id = Some(req.scan_id.as_str()).filter(|id| !id.is_empty());
        let outcome =
            checkin::redeem(&self.state, device, &req.code, &req.gate, scan_time, scan_id).await.map_err(to_status)?;
        Ok(Response::new(redeem_to_proto(outcome)))
    }

    async fn sync_offline_scans(
        &self,
        request: Request<v1::SyncOfflineScansRequest>,
    ) -> Result<Response<v1::SyncOfflineScansResponse>, Status> {
        let ctx = context(&request);
        let device = ctx.device().map_err(to_status)?;
        let mut violations = Violations::default();
        let scans: Vec<OfflineScan> = request
            .into_inner()
            .scans
            .into_iter()
            .enumerate()
            .map(|(i, scan)| OfflineScan {
                scan_time: optional_time(scan.scan_time, &format!("scans[{i}].scanTime"), &mut violations),
                code: scan.code,
                gate: scan.gate,
                scan_id: scan.scan_id,
            })
            .collect();
        violations.into_result().map_err(to_status)?;
        let outcomes = checkin::sync_offline_scans(&self.state, device, scans).await.map_err(to_status)?;
        Ok(Response::new(v1::SyncOfflineScansResponse {
            results: outcomes
                .into_iter()
                .map(|(scan_id, outcome)| v1::OfflineScanResult {
                    scan_id,
                    result: result_to_proto(outcome.result).into(),
                    first_checkin: outcome.first_checkin.map(checkin_to_proto),
                    conflict: outcome.conflict,
                })
                .collect(),
        }))
    }

    async fn stream_manifest(
        &self,
        request: Request<v1::StreamManifestRequest>,
    ) -> Result<Response<ManifestStream>, Status> {
        let ctx = context(&request);
        let device = ctx.device().map_err(to_status)?;
        let req = request.get_ref();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        let pages =
            checkin::stream_manifest(&self.state, device, event_id, &req.cursor, req.since_version, req.page_size)
                .await
                .map_err(to_status)?;
        let chunks = pages.map(|page| {
            page.map(|page| v1::ManifestChunk {
                event_public_key: page.public_key,
                valid_ticket_ids: page.valid.iter().map(ToString::to_string).collect(),
                void_ticket_ids: page.void.iter().map(ToString::to_string).collect(),
                version: page.version,
                cursor: page.cursor,
            })
            .map_err(to_status)
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn get_checkin_stats(
        &self,
        request: Request<v1::GetCheckinStatsRequest>,
    ) -> Result<Response<v1::CheckinStats>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let event_id = parse_id(&request.get_ref().event_id, "eventId").map_err(to_status)?;
        let stats = checkin::checkin_stats(&self.state, caller, event_id).await.map_err(to_status)?;
        Ok(Response::new(v1::CheckinStats {
            event_id: event_id.to_string(),
            counts: stats
                .counts
                .into_iter()
                .map(|c| v1::GateCount {
                    gate: c.gate,
                    result: ScanResult::parse(&c.result).map_or(v1::RedeemResult::Unspecified, result_to_proto).into(),
                    count: c.count,
                    conflicts: c.conflicts,
                })
                .collect(),
            checked_in: stats.checked_in,
            issued: stats.issued,
        }))
    }
}
