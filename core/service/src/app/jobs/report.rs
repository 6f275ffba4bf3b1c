//! Building a sales report: figures from the read replica (a large report
//! never competes with the sale on the primary), the result on the primary.

use scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use ticketing_domain::Error;
use ticketing_store::reports::{self as store, Figure};
use uuid::Uuid;

use super::{Job, JobKind};
use crate::AppState;

#[derive(Debug, Serialize, Deserialize)]
pub struct BuildReport {
    pub report_id: Uuid,
}

impl Job for BuildReport {
    const KIND: JobKind = JobKind::Report;

    async fn run(&self, state: &AppState) -> Result<(), Error> {
        let report_id = self.report_id;
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

    /// A report whose job was dead-lettered is FAILED, not PENDING forever.
    async fn give_up(&self, state: &AppState, error: &Error) -> Result<(), Error> {
        let (report_id, error) = (self.report_id, error.to_string());
        state.db.write(|conn| async move { store::complete(conn, report_id, Err(error)).await }.scope_boxed()).await
    }
}

/// `section,key,name,value`, one figure per line.
pub fn to_csv(figures: &[Figure]) -> Result<String, Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(["section", "key", "name", "value"]).map_err(Error::internal)?;
    for figure in figures {
        let cells = [&figure.section, &figure.key, &figure.name, &figure.value].map(|cell| inert(cell));
        writer.write_record(cells.iter().map(|cell| cell.as_bytes())).map_err(Error::internal)?;
    }
    String::from_utf8(writer.into_inner().map_err(Error::internal)?).map_err(Error::internal)
}

/// A cell a spreadsheet will not run: one that would start a formula
/// (`= + - @`, or a tab or carriage return before one) is prefixed with `'`
/// (OWASP, CSV injection). Gate and category names are the organizer's
/// staff's words, and the report is opened in a spreadsheet.
fn inert(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
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

    #[test]
    fn cells_that_would_run_as_formulas_are_inert() {
        let gate =
            |key: &str| Figure { section: "checkins".into(), key: key.into(), name: "x".into(), value: "3".into() };
        let csv = to_csv(&[
            gate("=HYPERLINK(\"http://evil\")"),
            gate("+1+1"),
            gate("-2+3"),
            gate("@SUM(A1)"),
            gate("\t=1"),
            gate("\r=1"),
            gate("North = main"),
        ])
        .unwrap();
        let keys: Vec<&str> = csv.lines().skip(1).filter_map(|l| l.split(',').nth(1)).collect();
        assert_eq!(
            keys,
            [
                "\"'=HYPERLINK(\"\"http://evil\"\")\"",
                "'+1+1",
                "'-2+3",
                "'@SUM(A1)",
                "'\t=1",
                "\"'\r=1\"",
                "North = main"
            ],
            "{csv}"
        );
    }
}
