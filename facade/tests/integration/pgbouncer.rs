//! Two `ticketing serve` processes hammer the same queries through one
//! PgBouncer in transaction mode whose pool for this database holds two
//! server connections (`pgbouncer_race` in ci/stack), with PgBouncer set to
//! `DEALLOCATE ALL` after every transaction. Any statement prepared outside a
//! transaction, or kept across one, fails here.

use serde_json::json;
use ticketing_domain::identity::Role;
use ticketing_service::AppState;

use crate::helpers::{
    Processes, category_body, config_from, event_body, execute, post_json, query_value, stack, test_vars, with_database,
};

const DATABASE: &str = "pgbouncer_race";
const TASKS_PER_PROCESS: usize = 8;
const ROUNDS_PER_TASK: usize = 40;

#[tokio::test]
async fn two_processes_share_one_small_transaction_pool_without_errors() {
    let direct = with_database(&stack("DATABASE_DIRECT_URL"), DATABASE);
    execute(&direct, "DROP SCHEMA public CASCADE", &[]).await;
    execute(&direct, "CREATE SCHEMA public", &[]).await;
    ticketing_store::migrate::run_pending(&direct).await.expect("migrations apply");

    let mut vars = test_vars(DATABASE);
    vars.remove("DATABASE_REPLICA_URL"); // every read goes through the small pool too
    vars.insert("DATABASE_POOL_SIZE".into(), "8".into());
    vars.insert("DATABASE_POOL_TIMEOUT_MS".into(), "20000".into());
    let state = AppState::new(config_from(&vars)).unwrap();

    let processes = Processes::start(2, &vars).await;
    let http = reqwest::Client::new();

    let email = format!("race-{}@example.com", uuid::Uuid::now_v7().simple());
    ticketing_service::app::auth::create_user(&state, &email, "a long enough password".into(), Role::Organizer)
        .await
        .unwrap();
    let token: serde_json::Value = http
        .post(format!("{}/v1/auth/token", processes.bases[0]))
        .json(&json!({ "email": email, "password": "a long enough password" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["accessToken"].as_str().unwrap().to_owned();
    let event = post_json(&http, &format!("{}/v1/events", processes.bases[1]), &token, &event_body("Race")).await;
    let event_id = event["id"].as_str().unwrap().to_owned();

    // PgBouncer's own count of its client and server connections for this
    // database, sampled while the load runs: the most of each seen at once.
    let (stop_sampling, sampling) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(busiest_pool(sampling));

    let mut tasks = Vec::new();
    for base in &processes.bases {
        for task in 0..TASKS_PER_PROCESS {
            let (http, base, token, event_id) = (http.clone(), base.clone(), token.clone(), event_id.clone());
            tasks.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut categories = 0;
                for round in 0..ROUNDS_PER_TASK {
                    let calls = [
                        http.get(format!("{base}/v1/events/{event_id}")).bearer_auth(&token),
                        http.get(format!("{base}/v1/events?pageSize=5")),
                        http.patch(format!("{base}/v1/events/{event_id}"))
                            .bearer_auth(&token)
                            .json(&json!({ "description": format!("round {round} task {task}") })),
                        http.post(format!("{base}/v1/events/{event_id}/ticketCategories"))
                            .bearer_auth(&token)
                            .json(&category_body(&format!("T{task}R{round}"), 10)),
                    ];
                    for (n, call) in calls.into_iter().enumerate() {
                        let response = call.send().await.expect("sent");
                        let status = response.status();
                        if status.is_success() {
                            categories += usize::from(n == 3);
                        } else {
                            failures.push(format!("{status}: {}", response.text().await.unwrap_or_default()));
                        }
                    }
                }
                (categories, failures)
            }));
        }
    }
    let mut created = 0;
    let mut failures = Vec::new();
    for task in tasks {
        let (categories, task_failures) = task.await.unwrap();
        created += categories;
        failures.extend(task_failures);
    }
    assert!(failures.is_empty(), "{} failed calls, first: {:?}", failures.len(), failures.first());
    assert_eq!(created, 2 * TASKS_PER_PROCESS * ROUNDS_PER_TASK);
    let stored: usize = query_value(&direct, "SELECT count(*) FROM ticket_categories").await.unwrap().parse().unwrap();
    assert_eq!(stored, created, "every acknowledged write is stored exactly once");

    // The processes really shared two server connections: more clients
    // than that were connected at once, never more servers.
    let _ = stop_sampling.send(true);
    let (clients, servers) = sampler.await.unwrap();
    assert!((1..=2).contains(&servers), "{servers} server connections for a pool of 2");
    assert!(clients > servers, "{clients} client connections at once never outnumbered {servers} servers");
}

/// The most client connections (active or waiting) and server connections
/// PgBouncer held at once for [`DATABASE`] until `stop` turns true (`SHOW
/// POOLS` on its admin console, which speaks the simple protocol only).
async fn busiest_pool(mut stop: tokio::sync::watch::Receiver<bool>) -> (i64, i64) {
    let (admin, connection) =
        tokio_postgres::connect(&stack("PGBOUNCER_ADMIN_URL"), tokio_postgres::NoTls).await.expect("PgBouncer admin");
    tokio::spawn(connection);
    let (mut clients, mut servers) = (0, 0);
    while !*stop.borrow() {
        for message in admin.simple_query("SHOW POOLS").await.expect("SHOW POOLS") {
            let tokio_postgres::SimpleQueryMessage::Row(row) = message else { continue };
            if row.get("database") != Some(DATABASE) {
                continue;
            }
            let count = |names: &[&str]| -> i64 { names.iter().filter_map(|n| row.get(*n)?.parse::<i64>().ok()).sum() };
            clients = clients.max(count(&["cl_active", "cl_waiting"]));
            servers = servers.max(count(&["sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"]));
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
        }
    }
    (clients, servers)
}
