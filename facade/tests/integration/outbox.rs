//! The outbox's bookkeeping under worker failures: a worker that overran its
//! lease cannot overwrite the next one's result, and a job whose worker died
//! on the last attempt is dead-lettered instead of claimed forever.

use chrono::Utc;
use scoped_futures::ScopedFutureExt;
use ticketing_service::app;
use ticketing_store::outbox;

use crate::helpers::{TestApp, execute, query_value};

async fn claim(app: &TestApp) -> Vec<outbox::Job> {
    let lease = Utc::now() + chrono::Duration::seconds(60);
    app.state.db.write(|conn| outbox::claim(conn, lease, 10, 10).scope_boxed()).await.unwrap()
}

#[tokio::test]
async fn a_worker_past_its_lease_cannot_overwrite_the_next_workers_result() {
    let app = TestApp::spawn().await;
    execute(&app.direct_url(), "INSERT INTO outbox (kind, payload) VALUES ('refund', '{}')", &[]).await;
    let first = claim(&app).await.remove(0);
    // The first worker is slow; its lease runs out and a second one takes the job.
    execute(&app.direct_url(), "UPDATE outbox SET next_attempt_at = now()", &[]).await;
    let second = claim(&app).await.remove(0);
    assert_eq!((first.attempts, second.attempts), (1, 2));
    let (id, second_attempt) = (second.id, second.attempts);
    app.state.db.write(|conn| outbox::complete(conn, id, second_attempt).scope_boxed()).await.unwrap();
    // The first worker finally fails, on what it thinks is its last attempt.
    let first_attempt = first.attempts;
    app.state
        .db
        .write(|conn| async move { outbox::fail(conn, id, first_attempt, "late failure", None).await }.scope_boxed())
        .await
        .unwrap();
    assert_eq!(query_value(&app.direct_url(), "SELECT status FROM outbox").await.unwrap(), "done");
}

#[tokio::test]
async fn a_job_whose_worker_died_on_the_last_attempt_is_dead_lettered() {
    let app = TestApp::builder().var("OUTBOX_MAX_ATTEMPTS", "2").spawn().await;
    execute(
        &app.direct_url(),
        "INSERT INTO outbox (kind, payload, attempts, next_attempt_at) VALUES ('refund', '{}', 2, now())",
        &[],
    )
    .await;
    let ran = app::jobs::run_due(&app.state).await.unwrap();
    assert_eq!(ran, 0, "not claimed a third time");
    assert_eq!(query_value(&app.direct_url(), "SELECT status FROM outbox").await.unwrap(), "pending");
    assert_eq!(app::jobs::dead_letter_abandoned(&app.state).await.unwrap(), 1);
    assert_eq!(query_value(&app.direct_url(), "SELECT status FROM outbox").await.unwrap(), "dead");
}
