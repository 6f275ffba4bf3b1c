//! Live streams: availability and queue places pushed over gRPC, gRPC-Web
//! and Server-Sent Events (through nginx too), one subscription per replica
//! shared by all its watchers, slow readers, drains and the watcher cap.

use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use ticketing_domain::identity::Role;
use ticketing_proto::v1::{
    self, catalog_service_client::CatalogServiceClient, waiting_room_service_client::WaitingRoomServiceClient,
};
use ticketing_service::app;
use tonic::transport::Channel;

use crate::helpers::{
    GrpcWebItem, GrpcWebStream, OwnRedis, Processes, STREAM_PATIENCE, Sale, SseStream, TestApp, add_category, authed,
    buy, event_body, exported_sample, free_port, grpc_until, join, open_grpc_web, open_sse, order_body, order_request,
    room, room_event, sale, start_nginx, statement_calls, with_database,
};

/// (available, soldOut) of the first category in an update's JSON.
fn first_category(update: &Value) -> (i64, bool) {
    let category = &update["categories"][0];
    (category["available"].as_i64().unwrap_or(0), category["soldOut"].as_bool().unwrap_or(false))
}

fn total_available(update: &Value) -> i64 {
    update["categories"].as_array().expect("categories").iter().map(|c| c["available"].as_i64().unwrap_or(0)).sum()
}

fn grpc_first(update: &v1::AvailabilityUpdate) -> (i64, bool) {
    update.categories.first().map_or((0, false), |c| (i64::from(c.available), c.sold_out))
}

async fn watch_grpc(channel: Channel, event_id: &str) -> tonic::Streaming<v1::AvailabilityUpdate> {
    let request = v1::WatchAvailabilityRequest { event_id: event_id.to_owned() };
    CatalogServiceClient::new(channel).watch_availability(request).await.expect("a gRPC stream").into_inner()
}

async fn connect(base: &str) -> Channel {
    Channel::from_shared(base.to_owned()).expect("uri").connect().await.expect("gRPC connects")
}

async fn sse(http: &reqwest::Client, url: &str) -> SseStream {
    let (status, headers, stream, body) = open_sse(http, url, None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-cache");
    stream.expect("an event stream")
}

/// Every transport's watcher of one event.
struct Watchers {
    grpc: Vec<tonic::Streaming<v1::AvailabilityUpdate>>,
    grpc_web: Vec<GrpcWebStream>,
    sse: Vec<SseStream>,
}

impl Watchers {
    /// Each watcher reads until its event shows `expected` (first category).
    async fn all_see(&mut self, expected: (i64, bool)) {
        for stream in &mut self.grpc {
            grpc_until(stream, |u| grpc_first(u) == expected).await;
        }
        for stream in &mut self.grpc_web {
            stream.until::<v1::AvailabilityUpdate>(|u| grpc_first(u) == expected).await;
        }
        for stream in &mut self.sse {
            stream.until(|u| first_category(u) == expected).await;
        }
    }
}

#[tokio::test]
async fn availability_is_pushed_from_snapshot_to_sold_out_and_back_over_every_transport_and_through_nginx() {
    let app = TestApp::builder().var("AVAILABILITY_PUSH_MS", "50").var("ORDER_HOLD_SECONDS", "1").spawn().await;
    let Sale { customer, event: (event_id, category_id), .. } = sale(&app, 3, 3).await;
    let (_nginx, edge, edge_grpc) = start_nginx(&[app.url("")], "1000r/s", "1000").await;
    let request = v1::WatchAvailabilityRequest { event_id: event_id.clone() };
    let web_method = "/ticketing.v1.CatalogService/WatchAvailability";
    let sse_path = format!("/v1/events/{event_id}:watchAvailability");

    // Streams outlive app.http's whole-request timeout.
    let http = reqwest::Client::new();
    let snapshot = sse(&http, &app.url(&sse_path)).await.until(|_| true).await;
    assert_eq!(snapshot["eventId"], event_id.as_str());
    assert_eq!(snapshot["categories"][0]["ticketCategoryId"], category_id.as_str());
    assert_eq!(first_category(&snapshot), (3, false), "the current state comes first: {snapshot}");
    assert!(snapshot["updateTime"].as_str().is_some(), "{snapshot}");

    let mut watchers = Watchers {
        grpc: vec![
            watch_grpc(app.channel().await, &event_id).await,
            watch_grpc(connect(&edge_grpc).await, &event_id).await,
        ],
        grpc_web: vec![
            open_grpc_web(&http, &app.url(web_method), &request).await,
            open_grpc_web(&http, &format!("{edge}{web_method}"), &request).await,
        ],
        sse: vec![sse(&http, &app.url(&sse_path)).await, sse(&http, &format!("{edge}{sse_path}")).await],
    };
    watchers.all_see((3, false)).await;

    let bought = buy(&app, &customer.token, "live-1", order_body(&event_id, &category_id, 1)).await;
    assert_eq!(bought.status, StatusCode::CREATED, "{}", bought.body);
    watchers.all_see((2, false)).await;

    let bought = buy(&app, &customer.token, "live-2", order_body(&event_id, &category_id, 2)).await;
    assert_eq!(bought.status, StatusCode::CREATED, "{}", bought.body);
    watchers.all_see((0, true)).await;

    // The holds run out (ORDER_HOLD_SECONDS=1) and the expiry gives the seats back.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(app::orders::expire_due_orders(&app.state, 10).await.expect("expiry ran"), 2);
    watchers.all_see((3, false)).await;
}

#[tokio::test]
async fn three_replicas_hold_one_subscription_each_and_all_600_watchers_get_the_final_state() {
    let app = TestApp::builder().var("AVAILABILITY_PUSH_MS", "100").spawn().await;
    let Sale { customer, event: (event_id, category_id), .. } = sale(&app, 6, 2).await;
    let replicas = Processes::start(3, &app.vars).await;
    let sse_path = format!("/v1/events/{event_id}:watchAvailability");
    // One connection per SSE watcher, as browsers hold them.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");

    let mut grpc = Vec::new();
    let mut sse_watchers = Vec::new();
    for base in &replicas.bases {
        let channel = connect(base).await;
        grpc.extend(join_all((0..100).map(|_| watch_grpc(channel.clone(), &event_id))).await);
        let url = format!("{base}{sse_path}");
        sse_watchers.extend(join_all((0..100).map(|_| sse(&http, &url))).await);
    }
    for index in 0..replicas.admins.len() {
        let metrics = replicas.metrics(index).await;
        assert_eq!(exported_sample(&metrics, r#"ticketing_watchers{kind="availability"}"#), 200.0, "replica {index}");
        assert_eq!(
            exported_sample(&metrics, r#"ticketing_watch_subscriptions{kind="availability"}"#),
            1.0,
            "replica {index}: one Redis subscription for all its watchers of the event"
        );
    }

    // Sold out by one order on each replica.
    for (index, base) in replicas.bases.iter().enumerate() {
        let request = order_request(
            &http,
            base,
            &customer.token,
            &format!("spread-{index}"),
            &order_body(&event_id, &category_id, 2),
        );
        let answer = request.send().await.expect("answered");
        assert_eq!(answer.status(), StatusCode::CREATED, "{}", answer.text().await.unwrap_or_default());
    }
    let grpc_final = join_all(grpc.iter_mut().map(|s| grpc_until(s, |u| grpc_first(u) == (0, true)))).await;
    let sse_final = join_all(sse_watchers.iter_mut().map(|s| s.until(|u| first_category(u) == (0, true)))).await;
    assert_eq!(grpc_final.len() + sse_final.len(), 600, "every watcher got the sold-out state");

    // The watchers cost the database one read per replica per change, not one each.
    // The reads first: a hub counts a refresh before its read, so the hubs'
    // turns still running (a late wake on a busy machine) cannot put a read
    // on record that the counters read afterwards lack.
    let primary = with_database(&crate::helpers::stack("DATABASE_DIRECT_URL"), "postgres");
    let reads = statement_calls(&primary, &app.database, &["%JOIN inventory_buckets b%", "%WHERE e.id = $1%"]).await;
    let mut refreshes = 0.0;
    for index in 0..replicas.admins.len() {
        let metrics = replicas.metrics(index).await;
        refreshes += exported_sample(&metrics, r#"ticketing_watch_refreshes_total{kind="availability"}"#);
    }
    assert!(reads > 0 && reads as f64 <= refreshes, "{reads} availability reads, {refreshes} hub refreshes");
    assert!(
        refreshes < 60.0,
        "{refreshes} refreshes for 600 watchers and 3 changes: reads are per replica, not per watcher"
    );
}

#[tokio::test]
async fn a_stalled_sse_reader_is_skipped_to_the_latest_state_and_resumes_with_last_event_id() {
    let app = TestApp::builder().var("AVAILABILITY_PUSH_MS", "10").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let customer = app.user(Role::Customer).await;
    let created = app.rest(Method::POST, "/v1/events", Some(&organizer.token), Some(event_body("Big room"))).await;
    let event_id = created.body["id"].as_str().expect("id").to_owned();
    // 30 categories: each message is a few KB, so what a stalled reader's
    // stream can hold (its 16 KiB window, the server's 64 KiB send buffer)
    // is a few dozen of them.
    let mut categories = Vec::new();
    for block in 0..30 {
        categories.push(add_category(&app, &organizer, &event_id, &format!("Block {block}"), 1000, 4).await);
    }
    let published =
        app.rest(Method::POST, &format!("/v1/events/{event_id}:publish"), Some(&organizer.token), None).await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.body);
    let replica = Processes::start(1, &app.vars).await;
    let base = &replica.bases[0];
    let url = format!("{base}/v1/events/{event_id}:watchAvailability");
    let http = reqwest::Client::new();

    // The stalled reader: HTTP/2 with a small window, a request, then its
    // body left unread (so its window is never given back).
    let stalled_client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .http2_initial_stream_window_size(16 * 1024)
        .http2_initial_connection_window_size(16 * 1024)
        .build()
        .expect("client");
    let (status, _, stalled, body) = open_sse(&stalled_client, &url, None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut stalled = stalled.expect("an event stream");

    let mut healthy = sse(&http, &url).await;
    let first = healthy.next().await.expect("the current state");
    assert_eq!(total_available(&first.json()), 30_000);
    let changes = 200;
    let mut last = first.clone();
    for sold in 1..=changes {
        let category = &categories[sold % categories.len()];
        let key = format!("stall-{sold}");
        let answer = order_request(&http, base, &customer.token, &key, &order_body(&event_id, category, 1))
            .send()
            .await
            .expect("answered");
        assert_eq!(answer.status(), StatusCode::CREATED);
        let left = i64::try_from(30_000 - sold).unwrap();
        loop {
            last = healthy.next().await.expect("a state");
            if total_available(&last.json()) == left {
                break;
            }
        }
    }
    let last_id = last.id.clone().expect("an id");

    // Reading again, the stalled reader gets what its stream held, then the
    // latest state: far fewer messages than were pushed.
    let mut messages = 0;
    loop {
        let event = stalled.next().await.expect("the stream goes on");
        messages += 1;
        if event.id.as_deref() == Some(last_id.as_str()) {
            break;
        }
    }
    assert!(messages < changes / 2, "{messages} messages of {changes} states reached the stalled reader");
    let metrics = replica.metrics(0).await;
    let skipped = exported_sample(&metrics, r#"ticketing_watch_skipped_total{kind="availability"}"#);
    assert!(skipped >= (changes - messages) as f64, "the stalled reader's states were skipped, not queued: {skipped}");

    // Resuming with the current state's id: nothing is re-sent; the next change comes.
    let (_, _, resumed, _) = open_sse(&http, &url, None, Some(&last_id)).await;
    let mut resumed = resumed.expect("stream");
    let answer = order_request(&http, base, &customer.token, "after-resume", &order_body(&event_id, &categories[0], 1))
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), StatusCode::CREATED);
    let next = resumed.next().await.expect("the next change");
    assert_ne!(next.id.as_deref(), Some(last_id.as_str()));
    assert_eq!(total_available(&next.json()), i64::try_from(30_000 - changes - 1).unwrap(), "{}", next.data);
    // Resuming with an old id: the current state at once.
    let (_, _, stale, _) = open_sse(&http, &url, None, first.id.as_deref()).await;
    let current = stale.expect("stream").next().await.expect("the current state");
    assert_eq!(current.id, next.id);
}

#[tokio::test]
async fn sigterm_ends_every_stream_with_a_retryable_unavailable_and_the_replica_exits() {
    // A grace period longer than the test's patience: the replica can only
    // exit in time if the streams end by themselves.
    let app = TestApp::builder().var("SHUTDOWN_GRACE_SECONDS", "600").spawn().await;
    let Sale { event: (event_id, _), .. } = sale(&app, 10, 2).await;
    let mut replica = Processes::start(1, &app.vars).await;
    let base = replica.bases[0].clone();
    let http = reqwest::Client::new();
    let mut grpc = watch_grpc(connect(&base).await, &event_id).await;
    grpc_until(&mut grpc, |_| true).await;
    let request = v1::WatchAvailabilityRequest { event_id: event_id.clone() };
    let mut grpc_web =
        open_grpc_web(&http, &format!("{base}/ticketing.v1.CatalogService/WatchAvailability"), &request).await;
    grpc_web.until::<v1::AvailabilityUpdate>(|_| true).await;
    let mut sse_stream = sse(&http, &format!("{base}/v1/events/{event_id}:watchAvailability")).await;
    sse_stream.next().await.expect("the current state");

    replica.terminate(0);

    let status = tokio::time::timeout(STREAM_PATIENCE, grpc.message()).await.expect("not quiet").expect_err("a status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let trailers = loop {
        match grpc_web.next::<v1::AvailabilityUpdate>().await.expect("trailers") {
            GrpcWebItem::Trailers(trailers) => break trailers,
            GrpcWebItem::Message(_) => {}
        }
    };
    assert!(trailers.contains("grpc-status:14"), "{trailers}");
    let close = sse_stream.next().await.expect("a closing event");
    assert_eq!(close.event, "close", "{close:?}");
    assert_eq!(close.json()["error"]["status"], "UNAVAILABLE");
    assert!(sse_stream.next().await.is_none(), "the stream ends after its close event");
    let exit = replica.wait_exit(0, Duration::from_secs(60)).await;
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn a_queue_watcher_sees_its_place_move_and_its_admission_the_moment_it_is_granted() {
    let app = TestApp::builder().var("QUEUE_PUSH_MS", "50").var("QUEUE_JOINS_PER_IP", "100000").spawn().await;
    let organizer = app.user(Role::Organizer).await;
    // One admission a second, after the start: three customers in arrival order.
    let (event_id, category_id) =
        room_event(&app, &organizer, room(60, 100), Utc::now() - chrono::Duration::minutes(1)).await;
    let mut customers = Vec::new();
    for _ in 0..3 {
        let customer = app.user(Role::Customer).await;
        let joined = join(&app, &customer.token, &event_id).await;
        assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.body);
        customers.push((customer, joined.body["id"].as_str().expect("id").to_owned()));
    }
    let (last, entry_id) = &customers[2];
    let path = format!("/v1/events/{event_id}/queue/{entry_id}:watch");

    let http = reqwest::Client::new();
    let (status, _, _, body) = open_sse(&http, &app.url(&path), Some(&customers[0].0.token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another customer's entry is not theirs to watch: {body}");
    let (status, _, sse_stream, body) = open_sse(&http, &app.url(&path), Some(&last.token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut sse_stream = sse_stream.expect("an event stream");
    let request = v1::WatchQueueEntryRequest { event_id: event_id.clone(), queue_entry_id: entry_id.clone() };
    let mut grpc = WaitingRoomServiceClient::new(app.channel().await)
        .watch_queue_entry(authed(request, &last.token))
        .await
        .expect("a gRPC stream")
        .into_inner();

    let first = sse_stream.until(|_| true).await;
    assert_eq!((first["status"].as_str(), first["position"].as_i64()), (Some("QUEUE_ENTRY_STATUS_WAITING"), Some(3)));
    grpc_until(&mut grpc, |e| e.position == 3).await;

    // The admissions run as the worker runs them, in another state (another
    // process's signal reaches this server through Redis).
    let state = app.state.clone();
    let admitting = tokio::spawn(async move {
        loop {
            app::waiting_room::admit_due(&state).await.expect("a step");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    for position in [2, 1] {
        sse_stream.until(|e| e["position"].as_i64() == Some(position)).await;
        grpc_until(&mut grpc, |e| e.position == i32::try_from(position).unwrap()).await;
    }
    let admitted = sse_stream.until(|e| e["status"] == "QUEUE_ENTRY_STATUS_ADMITTED").await;
    let admitted_grpc = grpc_until(&mut grpc, |e| e.status == i32::from(v1::QueueEntryStatus::Admitted)).await;
    admitting.abort();
    let token = admitted["admission"]["token"].as_str().expect("the admission comes with the push");
    assert_eq!(admitted_grpc.admission.as_ref().map(|a| a.token.as_str()), Some(token));
    let bought = app
        .raw(
            order_request(&app.http, &app.url(""), &last.token, "admitted", &order_body(&event_id, &category_id, 1))
                .header("ticketing-admission", token),
        )
        .await;
    assert_eq!(bought.status, StatusCode::CREATED, "the pushed admission buys: {}", bought.body);

    // The organizer turns the room off: nothing more will move, so the
    // streams end (retryably; a reconnect is told why).
    let off = serde_json::json!({ "waitingRoom": { "enabled": false } });
    let patched = app.rest(Method::PATCH, &format!("/v1/events/{event_id}"), Some(&organizer.token), Some(off)).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let close = loop {
        let event = sse_stream.next().await.expect("a closing event");
        if event.event == "close" {
            break event;
        }
    };
    assert_eq!(close.json()["error"]["status"], "UNAVAILABLE", "{close:?}");
    let ended = loop {
        match tokio::time::timeout(STREAM_PATIENCE, grpc.message()).await.expect("not quiet") {
            Ok(Some(_)) => {}
            other => break other,
        }
    };
    assert_eq!(ended.expect_err("a status").code(), tonic::Code::Unavailable);
    let (status, _, _, body) = open_sse(&http, &app.url(&path), Some(&last.token), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a reconnect is told why: {body}");
}

#[tokio::test]
async fn past_max_watchers_a_stream_is_refused_with_retry_after_while_orders_go_on() {
    // Twice as many streams as the replica's concurrency slots.
    let app = TestApp::builder()
        .var("MAX_WATCHERS", "8")
        .var("CONCURRENCY_LIMIT_MIN", "4")
        .var("CONCURRENCY_LIMIT_MAX", "4")
        .spawn()
        .await;
    let Sale { customer, event: (event_id, category_id), .. } = sale(&app, 10, 2).await;
    let url = app.url(&format!("/v1/events/{event_id}:watchAvailability"));
    let http = reqwest::Client::new();
    let mut open = Vec::new();
    for _ in 0..7 {
        open.push(sse(&http, &url).await);
    }
    let _grpc = watch_grpc(app.channel().await, &event_id).await;

    let (status, headers, _, body) = open_sse(&http, &url, None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    let error: Value = serde_json::from_str(&body).expect("API.md's error shape");
    assert_eq!(error["error"]["details"][0]["reason"], "OVERLOADED");
    assert_eq!(error["error"]["details"][0]["metadata"]["resource"], "watchers");
    let refused = CatalogServiceClient::new(app.channel().await)
        .watch_availability(v1::WatchAvailabilityRequest { event_id: event_id.clone() })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::Unavailable);

    // Streams are their own bulkhead: eight open streams hold none of the
    // four concurrency slots, and the sale goes on.
    let bought = buy(&app, &customer.token, "while-full", order_body(&event_id, &category_id, 1)).await;
    assert_eq!(bought.status, StatusCode::CREATED, "{}", bought.body);

    // A watcher that leaves gives its place back.
    drop(open.pop());
    crate::helpers::eventually_within(200, Duration::from_millis(100), || async {
        let (status, _, stream, _) = open_sse(&http, &url, None, None).await;
        (status == StatusCode::OK).then_some(stream)
    })
    .await;
}

#[tokio::test]
async fn with_redis_down_watchers_still_get_the_change_from_the_hubs_own_refresh() {
    let mut redis = OwnRedis::start(free_port());
    let app = TestApp::builder().var("REDIS_URL", redis.url()).var("AVAILABILITY_PUSH_MS", "50").spawn().await;
    let Sale { customer, event: (event_id, category_id), .. } = sale(&app, 10, 2).await;
    let http = reqwest::Client::new();
    let mut watcher = sse(&http, &app.url(&format!("/v1/events/{event_id}:watchAvailability"))).await;
    assert_eq!(first_category(&watcher.until(|_| true).await), (10, false));

    // kill -9: no signal can be published or received now.
    redis.stop();
    let bought = buy(&app, &customer.token, "no-redis", order_body(&event_id, &category_id, 2)).await;
    assert_eq!(bought.status, StatusCode::CREATED, "{}", bought.body);
    watcher.until(|u| first_category(u) == (8, false)).await;
}
