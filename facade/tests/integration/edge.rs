//! The whole path as it will run: real nginx (deploy/nginx, rendered by
//! ci/nginx-conf) in front of two real replicas.

use futures::{StreamExt, stream};
use reqwest::{StatusCode, header};
use ticketing_domain::identity::Role;
use ticketing_proto::v1::{self, catalog_service_client::CatalogServiceClient};
use ticketing_service::AppState;

use crate::helpers::{
    Processes, category_body, config_from, event_body, eventually, fresh_database, mint_token, post_json, start_nginx,
    test_vars,
};

/// Requests for the event detail route that reached the replicas.
async fn upstream_detail_reads(replicas: &Processes) -> f64 {
    let mut total = 0.0;
    for admin in &replicas.admins {
        let text = reqwest::get(format!("{admin}/metrics")).await.unwrap().text().await.unwrap();
        total += text
            .lines()
            .filter(|l| l.starts_with(r#"ticketing_requests_total{transport="rest",route="GET /v1/events/{event}""#))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

#[tokio::test]
async fn through_nginx_reads_come_from_the_edge_cache_grpc_passes_and_limit_req_bites() {
    let database = fresh_database().await;
    let mut vars = test_vars(&database);
    vars.insert("TRUSTED_PROXIES".into(), "127.0.0.1".into());
    vars.insert("HTTP_CACHE_MAX_AGE".into(), "60".into());
    vars.insert("HTTP_CACHE_S_MAXAGE".into(), "60".into());
    let state = AppState::new(config_from(&vars)).unwrap();
    let organizer = ticketing_service::app::auth::create_user(
        &state,
        "edge@example.com",
        "a long enough password".into(),
        Role::Organizer,
    )
    .await
    .unwrap();
    let token = mint_token(organizer.id, Role::Organizer);
    let replicas = Processes::start(2, &vars).await;
    let (_nginx, edge, edge_grpc) = start_nginx(&replicas.bases, "50r/s", "100").await;

    // Arrange through the edge (writes pass straight through).
    let http = reqwest::Client::new();
    let event = post_json(&http, &format!("{edge}/v1/events"), &token, &event_body("Edge")).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let category = http
        .post(format!("{edge}/v1/events/{id}/ticketCategories"))
        .bearer_auth(&token)
        .json(&category_body("GA", 100))
        .send()
        .await
        .unwrap();
    assert_eq!(category.status(), StatusCode::CREATED);
    let published = http.post(format!("{edge}/v1/events/{id}:publish")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(published.status(), StatusCode::OK);

    // The first public read fills the edge cache (404s are not cached).
    let url = format!("{edge}/v1/events/{id}");
    let etag = eventually(|| async {
        let r = http.get(&url).send().await.ok()?;
        (r.status() == StatusCode::OK).then(|| r.headers()[header::ETAG].clone())
    })
    .await;
    let before = upstream_detail_reads(&replicas).await;
    for _ in 0..20 {
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-cache-status"], "HIT");
    }
    assert_eq!(upstream_detail_reads(&replicas).await, before, "repeated reads never reached a replica");
    let revalidated = http.get(&url).header(header::IF_NONE_MATCH, etag).send().await.unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    let authed = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(authed.headers()["x-cache-status"], "BYPASS", "credentials go past the cache");

    // gRPC over HTTP/2 through the edge.
    let channel = tonic::transport::Channel::from_shared(edge_grpc).unwrap().connect().await.unwrap();
    // The listing is read from the read replica: the event is in it once the
    // replica has replayed the publish (and a page cached before that lapses).
    eventually(|| async {
        let events =
            CatalogServiceClient::new(channel.clone()).list_events(v1::ListEventsRequest::default()).await.ok()?;
        events.into_inner().events.iter().any(|e| e.id == id).then_some(())
    })
    .await;

    // Past the public rate (50/s, burst 100) the edge answers 429 itself.
    let flooding = std::time::Instant::now();
    let statuses: Vec<u16> = stream::iter(0..400)
        .map(|_| {
            let request = http.get(format!("{edge}/v1/events"));
            async move { request.send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let seconds = flooding.elapsed().as_secs_f64();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert!(limited > 0 && served > 0 && limited + served == statuses.len(), "200: {served}, 429: {limited}");
    // The limit's own arithmetic, not just "something was limited": at
    // most the burst plus the rate over however long the flood took.
    let most = 100.0 + 50.0 * seconds + 1.0;
    assert!(served as f64 <= most, "{served} served in {seconds:.2} s, at most {most:.0} by 50r/s burst 100");
}
