//! Check-in: scanners over gRPC (and REST), exactly-once admission raced
//! over several replicas, offline scans and the manifest.

use std::{collections::BTreeSet, time::Duration};

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use scoped_futures::ScopedFutureExt;
use serde_json::{Value, json};
use ticketing_domain::{identity::Role, ticket_code};
use ticketing_proto::v1::{self, RedeemResult, check_in_service_client::CheckInServiceClient};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::helpers::{
    Processes, Sale, Table, TestApp, authed, buy, buy_in_background, deliver, eventually, eventually_within, execute,
    notification, on_sale, order_body, order_of_ticket, order_status, paid_tickets, query_one, query_value, sale,
    scanner, statement_calls, uuid,
};

async fn client(base: &str) -> CheckInServiceClient<Channel> {
    CheckInServiceClient::new(Channel::from_shared(base.to_owned()).unwrap().connect().await.unwrap())
}

fn redeem_request(code: &str, gate: &str, token: &str) -> tonic::Request<v1::RedeemRequest> {
    authed(v1::RedeemRequest { code: code.to_owned(), gate: gate.to_owned(), ..Default::default() }, token)
}

#[tokio::test]
async fn fifty_concurrent_scans_of_one_ticket_on_three_replicas_admit_it_once() {
    let app = TestApp::builder().var("SCAN_LIMIT_PER_SCANNER", "100000").spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let (_, code) = paid_tickets(&app, &customer, &event, 1).await.remove(0);
    let (scanner_id, token) = scanner(&app, &organizer, &event.0, "North gate").await;
    let replicas = Processes::start(3, &app.vars).await;
    let mut clients = Vec::new();
    for base in &replicas.bases {
        clients.push(client(base).await);
    }

    let scans = (0..50).map(|n| {
        let mut client = clients[n % 3].clone();
        let request = redeem_request(&code, &format!("gate-{n}"), &token);
        tokio::spawn(async move { (n, client.redeem(request).await.expect("a result, not an error").into_inner()) })
    });
    let results: Vec<(usize, v1::RedeemResponse)> =
        futures::future::join_all(scans).await.into_iter().map(Result::unwrap).collect();

    let accepted: Vec<_> = results.iter().filter(|(_, r)| r.result() == RedeemResult::Accepted).collect();
    assert_eq!(accepted.len(), 1, "exactly one admission");
    let winning_gate = format!("gate-{}", accepted[0].0);
    assert_eq!(accepted[0].1.ticket.as_ref().unwrap().status(), v1::TicketStatus::CheckedIn);
    let others: Vec<_> = results.iter().filter(|(_, r)| r.result() != RedeemResult::Accepted).collect();
    assert_eq!(others.len(), 49);
    for (_, response) in others {
        assert_eq!(response.result(), RedeemResult::AlreadyCheckedIn);
        let first = response.first_checkin.as_ref().expect("names the first check-in");
        assert_eq!(first.gate, winning_gate);
        assert_eq!(first.scanner_id, scanner_id);
    }
    assert_eq!(app.count(Table::Checkins).await, 1);
    assert_eq!(app.count(Table::Scans).await, 50, "every scan is in the gate log");
}

#[tokio::test]
async fn a_fresh_replica_looks_up_the_event_key_once_for_a_burst_of_offline_uploads() {
    // The subject is the one key lookup: the burst's uploads may wait for a
    // pooled connection however long a loaded machine makes them.
    let app = TestApp::builder()
        .var("SCAN_LIMIT_PER_SCANNER", "100000")
        .var("DATABASE_POOL_TIMEOUT_MS", "30000")
        .spawn()
        .await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let tickets = paid_tickets(&app, &customer, &event, 4).await;
    let (_, token) = scanner(&app, &organizer, &event.0, "North gate").await;
    // A replica started as the network comes back: nothing cached yet.
    let replica = Processes::start(1, &app.vars).await;
    let gate = client(&replica.bases[0]).await;
    let primary = app.direct_url();
    let key_lookups =
        || statement_calls(&primary, &app.database, &["SELECT sealed_private_key FROM event_signing_keys%"]);
    let before = key_lookups().await;

    // One scan time for all: which scan of a ticket wins does not depend on
    // the second each upload was made in.
    let scan_time = pbjson_types::Timestamp { seconds: chrono::Utc::now().timestamp(), nanos: 0 };
    let uploads = (0..100).map(|n| {
        let mut gate = gate.clone();
        let scan = v1::OfflineScan {
            scan_time: Some(scan_time),
            ..offline(&tickets[n % tickets.len()].1, "gate-1", 0, &format!("burst-{n}"))
        };
        let request = authed(v1::SyncOfflineScansRequest { scans: vec![scan] }, &token);
        tokio::spawn(async move { gate.sync_offline_scans(request).await.expect("results, not an error").into_inner() })
    });
    let results: Vec<v1::OfflineScanResult> =
        futures::future::join_all(uploads).await.into_iter().flat_map(|r| r.unwrap().results).collect();

    let accepted = results.iter().filter(|r| r.result() == RedeemResult::Accepted).count();
    assert_eq!(accepted, tickets.len(), "each ticket admitted once: {results:?}");
    assert_eq!(key_lookups().await - before, 1, "100 concurrent uploads for a cold event wait on one key lookup");
}

#[tokio::test]
async fn a_gate_whose_master_key_cannot_open_the_event_key_fails_offline_uploads_loudly_and_still_scans_online() {
    let app = TestApp::builder().var("SCAN_LIMIT_PER_SCANNER", "100000").spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let tickets = paid_tickets(&app, &customer, &event, 2).await;
    let (_, token) = scanner(&app, &organizer, &event.0, "North gate").await;
    // A replica deployed with another TICKET_KEY_ENCRYPTION_KEY than the one that sealed the key.
    let mut vars = app.vars.clone();
    vars.insert("TICKET_KEY_ENCRYPTION_KEY".into(), "c2VhbGVkLWJ5LWEtdGVzdC1vZi10aGUtbG9nLWxpbmU=".into());
    let replica = Processes::start(1, &vars).await;
    let mut gate = client(&replica.bases[0]).await;
    let upload = |code: &str| {
        authed(v1::SyncOfflineScansRequest { scans: vec![offline(code, "gate-1", 0, "upload-1")] }, &token)
    };
    let failed = gate.sync_offline_scans(upload(&tickets[0].1)).await.expect_err("not a verdict");
    assert_eq!(failed.code(), tonic::Code::Internal, "{failed:?}");
    // The ticket was not spent: a correctly configured gate admits it.
    let mut good_gate = client(&format!("http://{}", app.addr)).await;
    let answer = good_gate.sync_offline_scans(upload(&tickets[0].1)).await.expect("a verdict").into_inner();
    assert_eq!(answer.results[0].result(), RedeemResult::Accepted);
    // Online scans need no event key: the database compares the issued code.
    let online = gate.redeem(redeem_request(&tickets[1].1, "gate-1", &token)).await.expect("a verdict");
    assert_eq!(online.into_inner().result(), RedeemResult::Accepted);
}

#[tokio::test]
async fn one_batch_decides_its_scans_in_order_and_a_repeated_scan_id_gets_the_first_answer() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let tickets = paid_tickets(&app, &customer, &event, 2).await;
    let (first, second) = (&tickets[0].0, &tickets[1].0);
    let (scanner_id, _) = scanner(&app, &organizer, &event.0, "Main gate").await;
    // The batch statement as the gate's lanes send it, with what a batch can
    // hold at once: a ticket scanned at two gates, and a retried scan
    // (same scan id) queued beside the scan it repeats.
    let sql = "SELECT string_agg(out_index || ' ' || out_result || ' ' || coalesce(out_first_gate, '-'), ', '
                                 ORDER BY out_index)
                 FROM scanners s,
                      redeem_tickets(array_fill(s.id, ARRAY[4]), array_fill(s.token_hash, ARRAY[4]),
                                     ARRAY[$1::uuid, $2::uuid, $1::uuid, $2::uuid],
                                     ARRAY[sha256(convert_to($4::text, 'UTF8')), sha256(convert_to($5::text, 'UTF8')),
                                           sha256(convert_to($4::text, 'UTF8')), sha256(convert_to($5::text, 'UTF8'))],
                                     ARRAY['G1', 'G2', 'G3', 'G4'], array_fill(now(), ARRAY[4]),
                                     ARRAY['retried', NULL, 'retried', NULL])
                WHERE s.id = $3";
    let params = (uuid(first), uuid(second), uuid(&scanner_id));
    let codes = (&tickets[0].1, &tickets[1].1);
    let answers: String =
        query_one(&app.direct_url(), sql, &[&params.0, &params.1, &params.2, codes.0, codes.1]).await.expect("answers");
    assert_eq!(answers, "1 ACCEPTED -, 2 ACCEPTED -, 3 ACCEPTED -, 4 ALREADY_CHECKED_IN G2");
    assert_eq!(app.count(Table::Checkins).await, 2);
    assert_eq!(app.count(Table::Scans).await, 3, "the retried scan is logged once");
}

/// A forged code that shares a scan id with the genuine code in one batch,
/// before or after it, is answered alone: the forgery is never ACCEPTED and
/// the genuine scan never INVALID.
#[tokio::test]
async fn a_forgery_sharing_a_scan_id_with_the_issued_code_in_one_batch_is_answered_alone() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let tickets = paid_tickets(&app, &customer, &event, 2).await;
    let (scanner_id, _) = scanner(&app, &organizer, &event.0, "Main gate").await;
    // Ticket 1: genuine, then a forgery under the same scan id; ticket 2: the other way round.
    let sql = "SELECT string_agg(out_index || ' ' || out_result, ', ' ORDER BY out_index)
                 FROM scanners s,
                      redeem_tickets(array_fill(s.id, ARRAY[4]), array_fill(s.token_hash, ARRAY[4]),
                                     ARRAY[$1::uuid, $1::uuid, $2::uuid, $2::uuid],
                                     ARRAY[sha256(convert_to($4::text, 'UTF8')), sha256(convert_to($5::text, 'UTF8')),
                                           sha256(convert_to($7::text, 'UTF8')), sha256(convert_to($6::text, 'UTF8'))],
                                     ARRAY['G1', 'G1', 'G2', 'G2'], array_fill(now(), ARRAY[4]),
                                     ARRAY['first', 'first', 'second', 'second'])
                WHERE s.id = $3";
    let (first, second) = (uuid(&tickets[0].0), uuid(&tickets[1].0));
    let codes = [&tickets[0].1, &altered(&tickets[0].1), &tickets[1].1, &altered(&tickets[1].1)];
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
        [&first, &second, &uuid(&scanner_id), codes[0], codes[1], codes[2], codes[3]];
    let answers: String = query_one(&app.direct_url(), sql, &params).await.expect("answers");
    assert_eq!(answers, "1 ACCEPTED, 2 INVALID, 3 INVALID, 4 ACCEPTED");
    assert_eq!(app.count(Table::Checkins).await, 2);
    assert_eq!(app.count(Table::Scans).await, 2, "only the genuine scans are logged");
}

/// Sequential and index scans of `checkins` so far, as Postgres counts them.
async fn checkins_reads(app: &TestApp) -> (i64, i64) {
    let sql = "SELECT seq_scan || ' ' || coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'checkins'";
    let counts = query_value(&app.direct_url(), sql).await.expect("checkins statistics");
    let (seq, idx) = counts.split_once(' ').expect("two counts");
    (seq.parse().unwrap(), idx.parse().unwrap())
}

#[tokio::test]
async fn gate_scans_find_check_ins_by_key_even_when_statistics_say_there_are_none() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let mut tickets = paid_tickets(&app, &customer, &event, 4).await;
    tickets.extend(paid_tickets(&app, &customer, &event, 4).await);
    let (_, token) = scanner(&app, &organizer, &event.0, "Main gate").await;
    // Statistics taken before anyone came in, as on a first event night: a
    // plan made from them and kept would read the whole table on every scan.
    execute(&app.direct_url(), "ANALYZE checkins, scanners", &[]).await;
    let (seq_before, idx_before) = checkins_reads(&app).await;

    let mut grpc = client(&app.url("")).await;
    for (_, code) in tickets.iter().chain(&tickets) {
        grpc.redeem(redeem_request(code, "A", &token)).await.expect("a result");
    }
    // Backends report their counts shortly after going idle.
    let (seq_after, _) = eventually_within(100, Duration::from_millis(200), || async {
        let (seq, idx) = checkins_reads(&app).await;
        (seq + idx >= seq_before + idx_before + 16).then_some((seq, idx))
    })
    .await;
    assert_eq!(seq_after, seq_before, "every scan found check-ins through the primary key");
    assert_eq!(app.count(Table::Checkins).await, 8);
}

#[tokio::test]
async fn the_gate_does_not_wait_on_transactions_holding_the_event_ticket_or_scanner() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let (ticket_id, code) = paid_tickets(&app, &customer, &event, 1).await.remove(0);
    let (scanner_id, token) = scanner(&app, &organizer, &event.0, "Main gate").await;
    // The strongest row locks: an organizer's edit of the event takes less
    // (catalog's lock_event, FOR NO KEY UPDATE); a refund holds its tickets;
    // a revocation, its scanner.
    let locker = app
        .lock(
            "SELECT 1 FROM events e, tickets t, scanners s WHERE e.id = $1 AND t.id = $2 AND s.id = $3 FOR UPDATE",
            &[&uuid(&event.0), &uuid(&ticket_id), &uuid(&scanner_id)],
        )
        .await;

    let mut grpc = client(&app.url("")).await;
    let scan = tokio::spawn(async move { grpc.redeem(redeem_request(&code, "A", &token)).await });
    while !scan.is_finished() {
        assert_eq!(app.lock_waiters().await, 0, "the scan waited on a row another transaction holds");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = scan.await.expect("scan task").expect("a result").into_inner();
    assert_eq!(answer.result(), RedeemResult::Accepted);
    locker.batch_execute("COMMIT").await.expect("locks released");
}

#[tokio::test]
async fn scans_are_answered_while_orders_hold_every_statement_connection() {
    // One statement connection for orders, taken by an order that waits on
    // the category's buckets, as in a rush where every connection is busy.
    let app = TestApp::builder().var("DATABASE_POOL_SIZE", "1").spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let (_, code) = paid_tickets(&app, &customer, &event, 1).await.remove(0);
    let (_, token) = scanner(&app, &organizer, &event.0, "Main gate").await;
    let locker =
        app.lock("SELECT 1 FROM inventory_buckets WHERE ticket_category_id = $1 FOR UPDATE", &[&uuid(&event.1)]).await;
    let order =
        buy_in_background(&app, &customer.token, &Uuid::now_v7().to_string(), &order_body(&event.0, &event.1, 1));
    eventually(|| async { (app.lock_waiters().await == 1).then_some(()) }).await;

    let mut grpc = client(&app.url("")).await;
    let answer = grpc.redeem(redeem_request(&code, "A", &token)).await.expect("a result").into_inner();
    assert_eq!(answer.result(), RedeemResult::Accepted);
    assert!(!order.is_finished(), "the order still held its connection");
    locker.batch_execute("COMMIT").await.expect("locks released");
    assert_eq!(order.await.expect("order answered").status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_scan_stuck_on_a_row_lock_does_not_hold_up_the_gate() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let mut tickets = paid_tickets(&app, &customer, &event, 2).await;
    let (scanner_id, token) = scanner(&app, &organizer, &event.0, "Main gate").await;
    let (other_ticket, other_code) = tickets.pop().unwrap();
    let (stuck_ticket, stuck_code) = tickets.pop().unwrap();
    // An offline sync admitting the ticket, not yet committed: the gate's
    // admission of the same ticket waits for it.
    let locker = app
        .lock(
            "INSERT INTO checkins (ticket_id, event_id, scanner_id, gate, scan_time)
             VALUES ($1, $2, $3, 'Offline gate', now())",
            &[&uuid(&stuck_ticket), &uuid(&event.0), &uuid(&scanner_id)],
        )
        .await;
    let mut grpc = client(&app.url("")).await;
    let stuck = {
        let mut grpc = grpc.clone();
        let request = redeem_request(&stuck_code, "A", &token);
        tokio::spawn(async move { grpc.redeem(request).await })
    };
    eventually(|| async { (app.lock_waiters().await == 1).then_some(()) }).await;

    let answer = grpc.redeem(redeem_request(&other_code, "B", &token)).await.expect("a result").into_inner();
    assert_eq!(answer.result(), RedeemResult::Accepted);
    assert_eq!(answer.ticket.expect("the ticket").id, other_ticket);
    assert!(!stuck.is_finished(), "the stuck scan was still waiting on the lock");

    locker.batch_execute("COMMIT").await.expect("lock released");
    let stuck = stuck.await.expect("scan task").expect("a result").into_inner();
    assert_eq!(stuck.result(), RedeemResult::AlreadyCheckedIn);
    assert_eq!(stuck.first_checkin.expect("the admission that won").gate, "Offline gate");
}

#[tokio::test]
async fn a_retried_scan_with_its_scan_id_gets_the_first_answer_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let (_, code) = paid_tickets(&app, &customer, &event, 1).await.remove(0);
    let (_, token) = scanner(&app, &organizer, &event.0, "Retry gate").await;
    let mut grpc = client(&app.url("")).await;
    let scan = |scan_id: &str| {
        let request =
            v1::RedeemRequest { code: code.clone(), gate: "R".into(), scan_id: scan_id.into(), ..Default::default() };
        authed(request, &token)
    };
    let first = grpc.redeem(scan("r-1")).await.unwrap().into_inner();
    assert_eq!(first.result(), RedeemResult::Accepted);
    // The answer was lost on the way; the scanner asks again with the same id.
    let retry = grpc.redeem(scan("r-1")).await.unwrap().into_inner();
    assert_eq!(retry.result(), RedeemResult::Accepted, "the holder is not turned away by their own scan");
    assert_eq!(app.count(Table::Scans).await, 1, "the retry wrote nothing");
    // A new scan of the same ticket is a second entry attempt.
    let again = grpc.redeem(scan("r-2")).await.unwrap().into_inner();
    assert_eq!(again.result(), RedeemResult::AlreadyCheckedIn);
    assert_eq!(app.count(Table::Checkins).await, 1);
}

/// The code with one character of its signature changed.
fn altered(code: &str) -> String {
    let mut altered = code.to_owned().into_bytes();
    altered[100] = if altered[100] == b'A' { b'B' } else { b'A' };
    String::from_utf8(altered).unwrap()
}

#[tokio::test]
async fn forged_foreign_truncated_and_huge_codes_are_invalid_and_write_nothing() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let (ticket_id, code) = paid_tickets(&app, &customer, &event, 1).await.remove(0);
    let (_, token) = scanner(&app, &organizer, &event.0, "South gate").await;

    let forged = altered(&code);
    // The right ticket and event, signed with a key that is not the event's.
    let claims = ticket_code::TicketClaims {
        ticket_id: Uuid::parse_str(&ticket_id).unwrap(),
        event_id: Uuid::parse_str(&event.0).unwrap(),
    };
    let other_key = ticket_code::EventKey::from_seed(rand::random()).sign(claims);
    let mut grpc = client(&app.url("")).await;
    for code in [forged, other_key, code[..60].to_owned(), "garbage".to_owned(), "A".repeat(100_000)] {
        let response = grpc.redeem(redeem_request(&code, "South", &token)).await.unwrap().into_inner();
        assert_eq!(response.result(), RedeemResult::Invalid);
        assert!(response.ticket.is_none());
    }
    let rest = app
        .raw(
            app.http
                .post(app.url("/v1/checkins"))
                .bearer_auth(&token)
                .json(&json!({ "code": "nope", "gate": "South" })),
        )
        .await;
    assert_eq!(rest.status, StatusCode::OK, "a decided result is 200");
    assert_eq!(rest.body["result"], "REDEEM_RESULT_INVALID");

    assert_eq!(app.count(Table::Checkins).await, 0);
    assert_eq!(app.count(Table::Scans).await, 0);
    assert_eq!(query_value(&app.direct_url(), "SELECT status FROM tickets").await.unwrap(), "valid");
}

/// The database, not the replica, tells a forgery from the issued code: forged
/// copies of a ticket scanned at once with the real one (so batched with it)
/// are all INVALID and logged nowhere, and the real one is admitted once.
#[tokio::test]
async fn forged_copies_scanned_beside_the_issued_code_are_invalid_and_take_nothing_from_it() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let (_, code) = paid_tickets(&app, &customer, &event, 1).await.remove(0);
    let (_, token) = scanner(&app, &organizer, &event.0, "Main gate").await;
    let forged = altered(&code);

    let grpc = client(&app.url("")).await;
    let scans = (0..40).map(|i| {
        let mut grpc = grpc.clone();
        let (scanned, token) = (if i % 2 == 0 { forged.clone() } else { code.clone() }, token.clone());
        async move { (i % 2 == 0, grpc.redeem(redeem_request(&scanned, "A", &token)).await.unwrap().into_inner()) }
    });
    let answers = futures::future::join_all(scans).await;
    let results = |forgeries: bool| {
        answers.iter().filter(move |(forged, _)| *forged == forgeries).map(|(_, answer)| answer.result())
    };
    assert!(results(true).all(|r| r == RedeemResult::Invalid), "{:?}", results(true).collect::<Vec<_>>());
    assert!(answers.iter().filter(|(forged, _)| *forged).all(|(_, answer)| answer.ticket.is_none()));
    let genuine: Vec<RedeemResult> = results(false).collect();
    assert_eq!(genuine.iter().filter(|r| **r == RedeemResult::Accepted).count(), 1, "{genuine:?}");
    assert!(genuine.iter().all(|r| matches!(r, RedeemResult::Accepted | RedeemResult::AlreadyCheckedIn)));
    assert_eq!(app.count(Table::Checkins).await, 1);
    assert_eq!(app.count(Table::Scans).await, 20, "only the issued code's scans are logged");
}

/// The gate's statement gained the scanned code as an argument (migration
/// `redeem_by_issued_code`); replicas of the previous release call the old
/// one until their rollout ends, so it must still decide a scan.
#[tokio::test]
async fn the_previous_releases_gate_statement_still_admits_during_a_rollout() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let (ticket_id, _) = paid_tickets(&app, &customer, &event, 1).await.remove(0);
    let (scanner_id, token) = scanner(&app, &organizer, &event.0, "Main gate").await;
    let result: Option<String> = query_one(
        &app.direct_url(),
        "SELECT out_result FROM redeem_tickets(ARRAY[$1::uuid], ARRAY[sha256(convert_to($2::text, 'UTF8'))], \
         ARRAY[$3::uuid], ARRAY['Main'], ARRAY[now()], ARRAY[NULL::text])",
        &[&uuid(&scanner_id), &token, &uuid(&ticket_id)],
    )
    .await;
    assert_eq!(result.as_deref(), Some("ACCEPTED"));
    assert_eq!(app.count(Table::Checkins).await, 1);
}

#[tokio::test]
async fn a_scanner_checks_only_its_own_event_and_stops_when_revoked() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event: event_a } = sale(&app, 10, 4).await;
    let event_b = on_sale(&app, &organizer, 10, 4).await;
    let (_, code_b) = paid_tickets(&app, &customer, &event_b, 1).await.remove(0);
    let (_, code_a) = paid_tickets(&app, &customer, &event_a, 1).await.remove(0);
    let (scanner_a, token_a) = scanner(&app, &organizer, &event_a.0, "A1").await;
    let mut grpc = client(&app.url("")).await;

    let wrong = grpc.redeem(redeem_request(&code_b, "A1", &token_a)).await.unwrap().into_inner();
    assert_eq!(wrong.result(), RedeemResult::WrongEvent);
    assert!(wrong.ticket.is_none(), "another event's ticket is not shown");

    let denied = grpc.redeem(redeem_request(&code_a, "A1", &customer.token)).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let anonymous = grpc.redeem(tonic::Request::new(v1::RedeemRequest { code: code_a.clone(), ..Default::default() }));
    assert_eq!(anonymous.await.unwrap_err().code(), tonic::Code::Unauthenticated);
    let malformed = grpc.redeem(redeem_request(&code_a, "A1", "tks_not-a-token")).await.unwrap_err();
    assert_eq!(malformed.code(), tonic::Code::Unauthenticated);

    // Only the event's organizer (or an admin) makes and revokes scanners.
    let stranger = app.user(Role::Organizer).await;
    let path = format!("/v1/events/{}/scanners", event_a.0);
    let refused = app.rest(Method::POST, &path, Some(&stranger.token), Some(json!({ "name": "x" }))).await;
    assert_eq!(refused.error_reason(404, "NOT_FOUND"), "NOT_FOUND");
    let revoked = app.rest(Method::POST, &format!("{path}/{scanner_a}:revoke"), Some(&organizer.token), None).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert!(revoked.body["revokeTime"].is_string());
    let after = grpc.redeem(redeem_request(&code_a, "A1", &token_a)).await.unwrap_err();
    assert_eq!(after.code(), tonic::Code::Unauthenticated, "revocation takes effect at once");
    assert_eq!(app.count(Table::Checkins).await, 0);
}

#[tokio::test]
async fn unpaid_and_refunded_tickets_are_turned_away() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let (_, token) = scanner(&app, &organizer, &event.0, "East").await;
    let mut grpc = client(&app.url("")).await;

    // Refunded: Midtrans reports the refund, the order's tickets are void.
    let (refunded_id, refunded_code) = paid_tickets(&app, &customer, &event, 1).await.remove(0);
    let order_id = order_of_ticket(&app, &refunded_id).await;
    let refund = deliver(&app, &notification(&order_id, "refund", "750000.00")).await;
    assert_eq!(refund.status, StatusCode::OK);
    assert_eq!(order_status(&app, &order_id).await, "refunded");
    let void = grpc.redeem(redeem_request(&refunded_code, "East", &token)).await.unwrap().into_inner();
    assert_eq!(void.result(), RedeemResult::Void);

    // Not paid: a genuinely signed ticket whose order is still pending
    // (issuing happens only on payment, so it is arranged directly).
    let pending = buy(&app, &customer.token, "pending", order_body(&event.0, &event.1, 1)).await;
    let pending_id = Uuid::parse_str(pending.body["id"].as_str().unwrap()).unwrap();
    let (event_id, category_id) = (Uuid::parse_str(&event.0).unwrap(), event.1.clone());
    let ticket_id = Uuid::now_v7();
    let master = app.state.config.ticket_key_encryption_key.clone();
    let code = app
        .state
        .db
        .write(|conn| {
            async move {
                let key = ticketing_service::app::tickets::event_key(conn, &master, event_id).await?;
                Ok(key.sign(ticket_code::TicketClaims { ticket_id, event_id }))
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    execute(
        &app.direct_url(),
        "INSERT INTO tickets (id, order_id, event_id, ticket_category_id, code) VALUES ($1, $2, $3, $4, $5)",
        &[&ticket_id, &pending_id, &event_id, &uuid(&category_id), &code],
    )
    .await;
    let unpaid = grpc.redeem(redeem_request(&code, "East", &token)).await.unwrap().into_inner();
    assert_eq!(unpaid.result(), RedeemResult::NotPaid);
    assert_eq!(app.count(Table::Checkins).await, 0);
}

fn offline(code: &str, gate: &str, seconds: i64, scan_id: &str) -> v1::OfflineScan {
    v1::OfflineScan {
        code: code.to_owned(),
        gate: gate.to_owned(),
        // After the scanners were made, as real offline scans are.
        scan_time: Some(pbjson_types::Timestamp { seconds: chrono::Utc::now().timestamp() + seconds, nanos: 0 }),
        scan_id: scan_id.to_owned(),
    }
}

#[tokio::test]
async fn offline_admissions_settle_on_the_earliest_scan_and_report_the_conflict() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let (_, code) = paid_tickets(&app, &customer, &event, 1).await.remove(0);
    let (_, token_a) = scanner(&app, &organizer, &event.0, "Gate A").await;
    let (scanner_b, token_b) = scanner(&app, &organizer, &event.0, "Gate B").await;
    let mut grpc = client(&app.url("")).await;
    let sync = |scans: Vec<v1::OfflineScan>, token: &str| {
        let mut grpc = grpc.clone();
        let request = authed(v1::SyncOfflineScansRequest { scans }, token);
        async move { grpc.sync_offline_scans(request).await.unwrap().into_inner().results }
    };

    // Gate A let the holder in at +10 s, gate B at +0 s; A uploads first.
    let a = sync(vec![offline(&code, "A", 10, "a-1")], &token_a).await;
    assert_eq!(a[0].result(), RedeemResult::Accepted);
    let b = sync(vec![offline(&code, "B", 0, "b-1")], &token_b).await;
    assert_eq!(b[0].result(), RedeemResult::Accepted, "the earlier scan wins");
    assert!(b[0].conflict, "admitted at two gates");
    let scans_before = app.count(Table::Scans).await;

    // A's upload again: nothing changes, and A learns it lost.
    let again = sync(vec![offline(&code, "A", 10, "a-1")], &token_a).await;
    assert_eq!(again[0].result(), RedeemResult::AlreadyCheckedIn);
    assert!(again[0].conflict);
    let first = again[0].first_checkin.as_ref().unwrap();
    assert_eq!((first.gate.as_str(), first.scanner_id.as_str()), ("B", scanner_b.as_str()));
    assert_eq!(app.count(Table::Scans).await, scans_before, "a retried upload writes nothing");
    assert_eq!(query_value(&app.direct_url(), "SELECT gate FROM checkins").await.unwrap(), "B");

    // A scanner whose clock says yesterday cannot beat the gates that scanned
    // before it existed: its time counts from its own creation at the earliest.
    let (_, token_c) = scanner(&app, &organizer, &event.0, "Gate C").await;
    let backdated = sync(vec![offline(&code, "C", -86_400, "c-1")], &token_c).await;
    assert_eq!(backdated[0].result(), RedeemResult::AlreadyCheckedIn);
    assert_eq!(backdated[0].first_checkin.as_ref().unwrap().gate, "B");
    // A clock an hour ahead is refused outright.
    let ahead = authed(v1::SyncOfflineScansRequest { scans: vec![offline(&code, "C", 3_600, "c-2")] }, &token_c);
    assert_eq!(grpc.sync_offline_scans(ahead).await.unwrap_err().code(), tonic::Code::InvalidArgument);

    // An online scan now names B's check-in too.
    let online = grpc.redeem(redeem_request(&code, "C", &token_a)).await.unwrap().into_inner();
    assert_eq!(online.result(), RedeemResult::AlreadyCheckedIn);
    assert_eq!(online.first_checkin.unwrap().gate, "B");

    // The organizer sees the conflict on the gate dashboard.
    let stats = eventually(|| async {
        let stats =
            app.rest(Method::GET, &format!("/v1/events/{}/checkinStats", event.0), Some(&organizer.token), None).await;
        let conflicts: i64 = stats.body["counts"]
            .as_array()?
            .iter()
            .map(|c| c["conflicts"].as_str().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0))
            .sum();
        (conflicts == 3 && stats.body["checkedIn"] == "1").then_some(stats)
    })
    .await;
    assert_eq!(stats.body["issued"], "1");
    let request = authed(v1::SyncOfflineScansRequest { scans: vec![offline(&code, "", 0, "")] }, &token_a);
    let invalid = grpc.sync_offline_scans(request).await.unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument, "no gate, no scan id");
}

async fn manifest(
    grpc: &mut CheckInServiceClient<Channel>,
    token: &str,
    event_id: &str,
    cursor: &str,
    since_version: i64,
    page_size: i32,
) -> Vec<v1::ManifestChunk> {
    let request = v1::StreamManifestRequest {
        event_id: event_id.to_owned(),
        cursor: cursor.to_owned(),
        since_version,
        page_size,
    };
    let stream = grpc.stream_manifest(authed(request, token)).await.unwrap().into_inner();
    stream.map(|chunk| chunk.unwrap()).collect().await
}

fn ids(chunks: &[v1::ManifestChunk]) -> (BTreeSet<String>, BTreeSet<String>) {
    let valid = chunks.iter().flat_map(|c| c.valid_ticket_ids.clone()).collect();
    let void = chunks.iter().flat_map(|c| c.void_ticket_ids.clone()).collect();
    (valid, void)
}

#[tokio::test]
async fn the_manifest_in_pages_and_resumed_from_a_cursor_equals_the_whole() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 40, 4).await;
    let mut tickets = Vec::new();
    for _ in 0..3 {
        tickets.extend(paid_tickets(&app, &customer, &event, 4).await);
    }
    let (_, token) = scanner(&app, &organizer, &event.0, "Manifest").await;
    let mut grpc = client(&app.url("")).await;

    horizon_passes(&app, newest_version(&app, &event.0).await).await;
    let whole = manifest(&mut grpc, &token, &event.0, "", 0, 0).await;
    assert_eq!(ids(&whole).0.len(), 12);
    assert_eq!(whole.len(), 1);
    let public_key = &whole[0].event_public_key;
    let key: [u8; 32] = base64_decode(public_key).try_into().unwrap();
    for (_, code) in &tickets {
        ticket_code::verify(code, &key).expect("the manifest's key verifies every code");
    }

    let paged = manifest(&mut grpc, &token, &event.0, "", 0, 5).await;
    assert_eq!(paged.len(), 3, "12 tickets in pages of 5");
    assert_eq!(ids(&paged), ids(&whole));
    assert!(paged.iter().all(|c| c.version == paged[0].version), "one version per stream");
    assert!(paged[0].version >= whole[0].version);
    assert!(paged.last().unwrap().cursor.is_empty() && !paged[0].cursor.is_empty());
    // Interrupted after the first page, resumed from its cursor.
    let resumed = manifest(&mut grpc, &token, &event.0, &paged[0].cursor, 0, 5).await;
    let mut stitched = vec![paged[0].clone()];
    stitched.extend(resumed);
    assert_eq!(ids(&stitched), ids(&whole));

    // Changes since: a refunded order's tickets come back as void, nothing else.
    let order_id = order_of_ticket(&app, &tickets[0].0).await;
    let refund = deliver(&app, &notification(&order_id, "refund", "3000000.00")).await;
    assert_eq!(refund.status, StatusCode::OK);
    horizon_passes(&app, newest_version(&app, &event.0).await).await;
    let changes = manifest(&mut grpc, &token, &event.0, "", whole[0].version, 0).await;
    assert_eq!(ids(&changes).1.len(), 4, "the refunded order's tickets");
    assert!(ids(&changes).0.is_empty(), "only the changed tickets");

    // REST streams the same chunks as newline-delimited JSON.
    let ndjson = app
        .http
        .get(app.url(&format!("/v1/events/{}/checkinManifest?pageSize=5", event.0)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = ndjson.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    let rest_ids: usize = lines
        .iter()
        .map(|l| {
            l["result"]["validTicketIds"].as_array().map_or(0, Vec::len)
                + l["result"]["voidTicketIds"].as_array().map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(rest_ids, 12);
}

/// The newest manifest version among the event's tickets.
async fn newest_version(app: &TestApp, event_id: &str) -> i64 {
    let sql = "SELECT max(version) FROM tickets WHERE event_id = $1";
    query_one(&app.direct_url(), sql, &[&uuid(event_id)]).await.expect("the event has tickets")
}

/// Waits until a manifest read now would reach past `version`: until no
/// transaction older than it runs on the cluster. That includes other
/// tests' (a held lock, a long report), so the patience is long; the
/// manifest itself is then read once and must be whole.
async fn horizon_passes(app: &TestApp, version: i64) {
    let sql = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint";
    eventually_within(3000, Duration::from_millis(20), || async {
        let horizon: i64 = query_one(&app.direct_url(), sql, &[]).await.expect("a horizon");
        (horizon > version).then_some(())
    })
    .await;
}

/// A refund's write in flight while a scanner reads the manifest: the read
/// cannot see it (not committed), so its version must stay below the
/// writer's, and the scanner's next sync from that version brings it.
#[tokio::test]
async fn a_change_committed_during_a_manifest_read_comes_in_the_next_sync() {
    let app = TestApp::spawn().await;
    let Sale { organizer, customer, event } = sale(&app, 10, 4).await;
    let tickets = paid_tickets(&app, &customer, &event, 3).await;
    let (_, token) = scanner(&app, &organizer, &event.0, "Horizon").await;
    let mut grpc = client(&app.url("")).await;
    horizon_passes(&app, newest_version(&app, &event.0).await).await;
    let first = manifest(&mut grpc, &token, &event.0, "", 0, 0).await;
    assert_eq!(ids(&first).0.len(), 3);

    // The refund voids the tickets, then waits for the category's buckets
    // (to put the seats back on sale), which this test holds.
    let buckets = "SELECT 1 FROM inventory_buckets WHERE ticket_category_id = $1 FOR UPDATE";
    let holder = app.lock(buckets, &[&uuid(&event.1)]).await;
    let order_id = order_of_ticket(&app, &tickets[0].0).await;
    let refund = app.http.post(app.url(&format!("/v1/orders/{order_id}:refund")));
    let refund =
        refund.bearer_auth(&organizer.token).header("idempotency-key", "horizon").json(&json!({ "reason": "r" }));
    let refund = tokio::spawn(refund.send());
    let writer =
        "SELECT backend_xid::text::bigint FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'";
    let writer_xid: i64 = eventually_within(1000, Duration::from_millis(20), || async {
        query_one(&app.direct_url(), writer, &[&app.database]).await
    })
    .await;

    let during = manifest(&mut grpc, &token, &event.0, "", first[0].version, 0).await;
    assert!(ids(&during).1.is_empty(), "nothing committed since: {during:?}");
    assert!(during[0].version <= writer_xid, "the read's version {} passed the writer {writer_xid}", during[0].version);

    holder.batch_execute("COMMIT").await.unwrap();
    let refunded = refund.await.unwrap().unwrap();
    assert_eq!(refunded.status(), StatusCode::CREATED);
    horizon_passes(&app, writer_xid).await;
    let next = manifest(&mut grpc, &token, &event.0, "", during[0].version, 0).await;
    let void: BTreeSet<String> = tickets.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids(&next), (BTreeSet::new(), void), "the refund's tickets, void, in the next sync");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap()
}
