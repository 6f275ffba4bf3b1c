//! Sales reports: requested by an organizer, built by the worker
//! ([`BuildReport`]), downloaded as CSV once READY.

use scoped_futures::ScopedFutureExt;
use ticketing_domain::Reason;
use ticketing_domain::{Error, identity::Principal};
use ticketing_store::{
    Conn, StoreError,
    reports::{self as store, ReportRow},
};
use uuid::Uuid;

use crate::{
    AppState,
    app::{
        catalog::{Access, as_event_manager},
        jobs::{BuildReport, Job},
    },
};

#[tracing::instrument(name = "reports.create_report", skip_all)]
pub async fn create_report(state: &AppState, caller: &Principal, event_id: Uuid) -> Result<ReportRow, Error> {
    let requested_by = caller.user_id;
    as_event_manager(state, caller, event_id, Access::Write, move |conn| {
        async move {
            let report = store::insert_report(conn, Uuid::now_v7(), event_id, requested_by).await?;
            BuildReport { report_id: report.id }.enqueue(conn).await?;
            Ok(report)
        }
        .scope_boxed()
    })
    .await
}

#[tracing::instrument(name = "reports.get_report", skip_all)]
pub async fn get_report(
    state: &AppState,
    caller: &Principal,
    event_id: Uuid,
    report_id: Uuid,
) -> Result<ReportRow, Error> {
    as_event_manager(state, caller, event_id, Access::Primary, move |conn| {
        event_report(conn, event_id, report_id).scope_boxed()
    })
    .await
}

/// The report, when it is the event's; "not found" otherwise.
async fn event_report(conn: &mut Conn, event_id: Uuid, report_id: Uuid) -> Result<ReportRow, StoreError> {
    store::find_report(conn, report_id)
        .await?
        .filter(|r| r.event_id == event_id)
        .ok_or_else(|| Error::not_found("report").into())
}

/// The custom method (AIP-136) a READY report's CSV is downloaded by: the
/// REST facade routes it, [`download_url`] points at it.
pub const DOWNLOAD_METHOD: &str = "download";

/// Where a READY report's CSV is (REST only: no gRPC method serves it).
pub fn download_url(event_id: Uuid, report_id: Uuid) -> String {
    format!("/v1/events/{event_id}/reports/{report_id}:{DOWNLOAD_METHOD}")
}

/// The CSV of a READY report.
#[tracing::instrument(name = "reports.download", skip_all)]
pub async fn download(state: &AppState, caller: &Principal, event_id: Uuid, report_id: Uuid) -> Result<String, Error> {
    as_event_manager(state, caller, event_id, Access::Primary, move |conn| {
        async move {
            event_report(conn, event_id, report_id).await?;
            store::report_csv(conn, report_id).await
        }
        .scope_boxed()
    })
    .await?
    .ok_or_else(|| Error::failed_precondition(Reason::ReportNotReady, "the report is not ready yet"))
}
