//! Sales reports: requested by an organizer, built by the worker from the
//! read replica (a large report never competes with the sale on the
//! primary), downloaded as CSV once READY.

use scoped_futures::ScopedFutureExt;
use ticketing_domain::{Error, identity::Principal};
use ticketing_store::{
    Conn, StoreError, outbox,
    reports::{self as store, Figure, ReportRow},
};
use uuid::Uuid;

use crate::{
    AppState,
    app::{catalog::require_event_manager, jobs},
};

#[tracing::instrument(name = "reports.create_report", skip_all)]
pub async fn create_report(state: &AppState, caller: &Principal, event_id: Uuid) -> Result<ReportRow, Error> {
    let caller = caller.clone();
    state
        .db
        .write(|conn| {
            async move {
                require_event_manager(conn, &caller, event_id).await?;
                let report = store::insert_report(conn, Uuid::now_v7(), event_id, caller.user_id).await?;
                outbox::enqueue(conn, jobs::REPORT, serde_json::json!({ "report_id": report.id })).await?;
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
    let caller = caller.clone();
    state.db.read(|conn| async move { visible_report(conn, &caller, event_id, report_id).await }.scope_boxed()).await
}

/// The report, when the caller manages its event; "not found" otherwise.
async fn visible_report(
    conn: &mut Conn,
    caller: &Principal,
    event_id: Uuid,
    report_id: Uuid,
) -> Result<ReportRow, StoreError> {
    require_event_manager(conn, caller, event_id).await?;
    store::find_report(conn, report_id)
        .await?
        .filter(|r| r.event_id == event_id)
        .ok_or_else(|| Error::not_found("report").into())
}

/// The CSV of a READY report.
#[tracing::instrument(name = "reports.download", skip_all)]
pub async fn download(state: &AppState, caller: &Principal, event_id: Uuid, report_id: Uuid) -> Result<String, Error> {
    let caller = caller.clone();
    state
        .db
        .read(|conn| {
            async move {
                visible_report(conn, &caller, event_id, report_id).await?;
                store::report_csv(conn, report_id).await
            }
            .scope_boxed()
        })
        .await?
        .ok_or_else(|| Error::failed_precondition("REPORT_NOT_READY", "the report is not ready yet"))
}

/// The report job: figures from the replica, the result on the primary.
pub(crate) async fn build(state: &AppState, report_id: Uuid) -> Result<(), Error> {
    let report = state
        .db
        .read(|conn| store::find_report(conn, report_id).scope_boxed())
        .await?
        .ok_or_else(|| Error::not_found("report"))?;
    let event_id = report.event_id;
    let figures = state.db.read_replica(|conn| store::event_figures(conn, event_id).scope_boxed()).await?;
    let csv = to_csv(&figures)?;
    state.db.write(|conn| async move { store::complete(conn, report_id, Ok(csv)).await }.scope_boxed()).await
}

/// `section,key,name,value`, one figure per line.
pub fn to_csv(figures: &[Figure]) -> Result<String, Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(["section", "key", "name", "value"]).map_err(Error::internal)?;
    for figure in figures {
        writer.write_record([&figure.section, &figure.key, &figure.name, &figure.value]).map_err(Error::internal)?;
    }
    String::from_utf8(writer.into_inner().map_err(Error::internal)?).map_err(Error::internal)
}

/// A report whose job was dead-lettered is FAILED, not PENDING forever.
pub(crate) async fn mark_failed(state: &AppState, report_id: Uuid, error: String) -> Result<(), Error> {
    state.db.write(|conn| async move { store::complete(conn, report_id, Err(error)).await }.scope_boxed()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let figure =
            |name: &str| Figure { section: "revenue".into(), key: "k".into(), name: name.into(), value: "1.00".into() };
        let csv = to_csv(&[figure("VIP"), figure("Front, \"golden\" circle")]).unwrap();
        assert_eq!(
            csv,
            "section,key,name,value\nrevenue,k,VIP,1.00\nrevenue,k,\"Front, \"\"golden\"\" circle\",1.00\n"
        );
    }
}
