use reqwest::{Method, StatusCode};
use serde_json::json;
use ticketing_domain::identity::Role;
use ticketing_proto::v1::{self, catalog_service_client::CatalogServiceClient};
use tonic::Code;

use crate::helpers::{Table, TestApp, authed, category_body, event_body, eventually, published_event};

#[tokio::test]
async fn organizer_creates_fills_and_publishes_over_rest_and_a_customer_sees_it() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let customer = app.user(Role::Customer).await;

    let created = app.rest(Method::POST, "/v1/events", Some(&organizer.token), Some(event_body("Java Jazz"))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["status"], "EVENT_STATUS_DRAFT");
    assert_eq!(created.body["organizerId"], organizer.id.to_string());
    let id = created.body["id"].as_str().unwrap().to_owned();

    // A draft is invisible to the public.
    let hidden = app.rest(Method::GET, &format!("/v1/events/{id}"), Some(&customer.token), None).await;
    assert_eq!(hidden.error_reason(404, "NOT_FOUND"), "NOT_FOUND");

    let no_categories = app.rest(Method::POST, &format!("/v1/events/{id}:publish"), Some(&organizer.token), None).await;
    assert_eq!(no_categories.error_reason(400, "FAILED_PRECONDITION"), "EVENT_HAS_NO_CATEGORIES");

    let category = app
        .rest(
            Method::POST,
            &format!("/v1/events/{id}/ticketCategories"),
            Some(&organizer.token),
            Some(category_body("VIP", 200)),
        )
        .await;
    assert_eq!(category.status, StatusCode::CREATED, "{}", category.body);
    assert_eq!(category.body["price"], json!({ "currencyCode": "IDR", "units": "750000", "nanos": 0 }));
    assert_eq!(category.body["available"], 200);

    let published = app.rest(Method::POST, &format!("/v1/events/{id}:publish"), Some(&organizer.token), None).await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.body);
    assert_eq!(published.body["status"], "EVENT_STATUS_PUBLISHED");

    // The publish put the event's page in the caches: public at once.
    let seen = app.rest(Method::GET, &format!("/v1/events/{id}"), None, None).await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.body);
    assert_eq!(seen.body["name"], "Java Jazz");
    assert_eq!(seen.body["ticketCategories"][0]["name"], "VIP");
    assert_eq!(seen.body["ticketCategories"][0]["capacity"], 200);
    assert_eq!(seen.body["ticketCategories"][0]["available"], 200);
    assert_eq!(seen.body["ticketCategories"][0]["maxPerOrder"], 4);

    // Listings come from the replica: they catch up within moments.
    let ids: Vec<String> = eventually(|| async {
        let listed = app.rest(Method::GET, "/v1/events", Some(&customer.token), None).await;
        let events = listed.body["events"].as_array()?;
        let ids: Vec<String> = events.iter().filter_map(|e| Some(e["id"].as_str()?.to_owned())).collect();
        (!ids.is_empty()).then_some(ids)
    })
    .await;
    assert_eq!(ids, [id]);
}

#[tokio::test]
async fn organizer_creates_fills_and_publishes_over_grpc() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let mut client = CatalogServiceClient::new(app.channel().await);
    let now = chrono::Utc::now().timestamp();
    let ts = |seconds: i64| Some(pbjson_types::Timestamp { seconds, nanos: 0 });
    let event = client
        .create_event(authed(
            v1::CreateEventRequest {
                name: "Synchronize Fest".into(),
                venue: "Gambir Expo".into(),
                time_zone: "Asia/Jakarta".into(),
                start_time: ts(now + 86_400 * 20),
                end_time: ts(now + 86_400 * 20 + 3_600 * 8),
                sales_start_time: ts(now - 60),
                sales_end_time: ts(now + 86_400 * 19),
                ..Default::default()
            },
            &organizer.token,
        ))
        .await
        .expect("event created")
        .into_inner();
    assert_eq!(event.status(), v1::EventStatus::Draft);
    let category = client
        .create_ticket_category(authed(
            v1::CreateTicketCategoryRequest {
                event_id: event.id.clone(),
                name: "Day pass".into(),
                price: Some(v1::Money { currency_code: "IDR".into(), units: 450_000, nanos: 0 }),
                capacity: 1_000,
                max_per_order: 6,
                ..Default::default()
            },
            &organizer.token,
        ))
        .await
        .expect("category created")
        .into_inner();
    assert_eq!(category.available, 1_000);
    let published = client
        .publish_event(authed(v1::PublishEventRequest { event_id: event.id.clone() }, &organizer.token))
        .await
        .expect("published")
        .into_inner();
    assert_eq!(published.status(), v1::EventStatus::Published);

    let public = eventually(|| {
        let mut client = client.clone();
        let id = event.id.clone();
        async move { client.get_event(v1::GetEventRequest { event_id: id }).await.ok() }
    })
    .await
    .into_inner();
    assert_eq!(public.ticket_categories.len(), 1);
    assert_eq!(public.ticket_categories[0].price.as_ref().unwrap().units, 450_000);
}

#[tokio::test]
async fn another_organizer_cannot_change_the_event() {
    let app = TestApp::spawn().await;
    let owner = app.user(Role::Organizer).await;
    let rival = app.user(Role::Organizer).await;
    let id = published_event(&app, &owner, "Owned").await;

    let patch = app
        .rest(Method::PATCH, &format!("/v1/events/{id}"), Some(&rival.token), Some(json!({ "name": "Hijacked" })))
        .await;
    assert_eq!(patch.error_reason(403, "PERMISSION_DENIED"), "PERMISSION_DENIED");
    let cancel = app.rest(Method::POST, &format!("/v1/events/{id}:cancel"), Some(&rival.token), None).await;
    assert_eq!(cancel.status, StatusCode::FORBIDDEN);
    let category = app
        .rest(
            Method::POST,
            &format!("/v1/events/{id}/ticketCategories"),
            Some(&rival.token),
            Some(category_body("Fake", 10)),
        )
        .await;
    assert_eq!(category.status, StatusCode::FORBIDDEN);

    let mut client = CatalogServiceClient::new(app.channel().await);
    let status = client
        .update_event(authed(
            v1::UpdateEventRequest { event_id: id.clone(), name: Some("Hijacked".into()), ..Default::default() },
            &rival.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let name = crate::helpers::query_value(&app.direct_url(), "SELECT name FROM events").await.unwrap();
    assert_eq!(name, "Owned");
    assert_eq!(app.count(Table::TicketCategories).await, 1);

    // An admin may.
    let admin = app.user(Role::Admin).await;
    let renamed = app
        .rest(
            Method::PATCH,
            &format!("/v1/events/{id}"),
            Some(&admin.token),
            Some(json!({ "name": "Renamed by admin" })),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    assert_eq!(renamed.body["name"], "Renamed by admin", "the answer is the renamed event");
    let stored = crate::helpers::query_value(&app.direct_url(), "SELECT name FROM events").await.unwrap();
    assert_eq!(stored, "Renamed by admin", "and the rename is stored");
}

#[tokio::test]
async fn anonymous_callers_and_customers_cannot_create_events() {
    let app = TestApp::spawn().await;
    let anonymous = app.rest(Method::POST, "/v1/events", None, Some(event_body("Nope"))).await;
    assert_eq!(anonymous.error_reason(401, "UNAUTHENTICATED"), "UNAUTHENTICATED");

    let customer = app.user(Role::Customer).await;
    let forbidden = app.rest(Method::POST, "/v1/events", Some(&customer.token), Some(event_body("Nope"))).await;
    assert_eq!(forbidden.error_reason(403, "PERMISSION_DENIED"), "PERMISSION_DENIED");

    let mut client = CatalogServiceClient::new(app.channel().await);
    let status =
        client.create_event(v1::CreateEventRequest { name: "Nope".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(app.count(Table::Events).await, 0);
}

#[tokio::test]
async fn patch_changes_only_the_given_fields_and_validates_the_result() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let id = published_event(&app, &organizer, "Before").await;
    let patched = app
        .rest(
            Method::PATCH,
            &format!("/v1/events/{id}"),
            Some(&organizer.token),
            Some(json!({ "venue": "GBK Stadium" })),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["venue"], "GBK Stadium");
    assert_eq!(patched.body["name"], "Before");

    let start = patched.body["startTime"].clone();
    let invalid = app
        .rest(
            Method::PATCH,
            &format!("/v1/events/{id}"),
            Some(&organizer.token),
            Some(json!({ "endTime": start, "timeZone": "Nowhere/Else" })),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    let fields = invalid.bad_fields();
    assert!(fields.contains(&"timeZone".to_owned()) && fields.contains(&"endTime".to_owned()), "{fields:?}");
    let venue = crate::helpers::query_value(&app.direct_url(), "SELECT time_zone FROM events").await.unwrap();
    assert_eq!(venue, "Asia/Jakarta");
}

#[tokio::test]
async fn create_event_reports_every_bad_field_at_once() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let response = app
        .rest(
            Method::POST,
            "/v1/events",
            Some(&organizer.token),
            Some(json!({ "name": "", "venue": "Somewhere", "timeZone": "Asia/Jakarta" })),
        )
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    let fields = response.bad_fields();
    for field in ["name", "startTime", "endTime", "salesStartTime", "salesEndTime"] {
        assert!(fields.contains(&field.to_owned()), "{field} missing in {fields:?}");
    }
    assert_eq!(app.count(Table::Events).await, 0);
}

#[tokio::test]
async fn ticket_category_validation_and_update() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let id = published_event(&app, &organizer, "Cats").await;
    let bad = app
        .rest(
            Method::POST,
            &format!("/v1/events/{id}/ticketCategories"),
            Some(&organizer.token),
            Some(json!({ "name": "Bad", "price": { "currencyCode": "idr", "units": "-5" }, "capacity": -1, "maxPerOrder": 1000 })),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let fields = bad.bad_fields();
    for field in ["price.currencyCode", "price.units", "capacity", "maxPerOrder"] {
        assert!(fields.contains(&field.to_owned()), "{field} missing in {fields:?}");
    }
    assert_eq!(app.count(Table::TicketCategories).await, 1);

    let event = app.rest(Method::GET, &format!("/v1/events/{id}"), Some(&organizer.token), None).await;
    let category_id = event.body["ticketCategories"][0]["id"].as_str().unwrap().to_owned();
    let updated = app
        .rest(
            Method::PATCH,
            &format!("/v1/events/{id}/ticketCategories/{category_id}"),
            Some(&organizer.token),
            Some(json!({ "capacity": 900 })),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["capacity"], 900);
    assert_eq!(updated.body["name"], "Festival");

    let other_event = published_event(&app, &organizer, "Other").await;
    let mismatched = app
        .rest(
            Method::PATCH,
            &format!("/v1/events/{other_event}/ticketCategories/{category_id}"),
            Some(&organizer.token),
            Some(json!({ "capacity": 1 })),
        )
        .await;
    assert_eq!(mismatched.error_reason(404, "NOT_FOUND"), "NOT_FOUND");
}

#[tokio::test]
async fn cancelled_events_leave_the_listing_and_stay_cancelled() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let id = published_event(&app, &organizer, "Rained out").await;
    let cancelled = app.rest(Method::POST, &format!("/v1/events/{id}:cancel"), Some(&organizer.token), None).await;
    assert_eq!(cancelled.body["status"], "EVENT_STATUS_CANCELLED");
    let again = app
        .rest(Method::PATCH, &format!("/v1/events/{id}"), Some(&organizer.token), Some(json!({ "name": "Back on" })))
        .await;
    assert_eq!(again.error_reason(400, "FAILED_PRECONDITION"), "EVENT_CANCELLED");
    let unknown_verb = app.rest(Method::POST, &format!("/v1/events/{id}:explode"), Some(&organizer.token), None).await;
    assert_eq!(unknown_verb.status, StatusCode::NOT_FOUND);
    eventually(|| async {
        let listed = app.rest(Method::GET, "/v1/events", None, None).await;
        listed.body["events"].as_array().unwrap().is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn listing_pages_through_every_published_event_in_start_order() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let mut ids = Vec::new();
    let now = chrono::Utc::now();
    for n in 0..5 {
        let id = published_event(&app, &organizer, &format!("Event {n}")).await;
        // Start order is the reverse of creation (and id) order: the later
        // an event was made, the sooner it starts.
        let start = now + chrono::Duration::days(40 - n);
        let moved =
            json!({ "startTime": start.to_rfc3339(), "endTime": (start + chrono::Duration::hours(4)).to_rfc3339() });
        let patched = app.rest(Method::PATCH, &format!("/v1/events/{id}"), Some(&organizer.token), Some(moved)).await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
        ids.push(id);
    }
    // A draft never shows up.
    let draft = app.rest(Method::POST, "/v1/events", Some(&organizer.token), Some(event_body("Draft"))).await;
    assert_eq!(draft.status, StatusCode::CREATED, "{}", draft.body);

    let seen = eventually(|| async {
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = app.rest(Method::GET, &format!("/v1/events?pageSize=2&pageToken={token}"), None, None).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            let events = page.body["events"].as_array().unwrap();
            assert!(events.len() <= 2);
            seen.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
            token = page.body["nextPageToken"].as_str().unwrap_or("").to_owned();
            if token.is_empty() {
                break;
            }
        }
        (seen.len() == 5).then_some(seen)
    })
    .await;
    let expected: Vec<String> = ids.iter().rev().cloned().collect(); // soonest start first
    assert_eq!(seen, expected, "every published event once, in start order, across pages");

    let bad_token = app.rest(Method::GET, "/v1/events?pageToken=garbage!", None, None).await;
    assert_eq!(bad_token.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_token.bad_fields(), ["pageToken"]);
    let bad_param = app.rest(Method::GET, "/v1/events?pageSize=lots", None, None).await;
    assert_eq!(bad_param.error_reason(400, "INVALID_ARGUMENT"), "INVALID_ARGUMENT");
}

#[tokio::test]
async fn public_reads_are_served_by_the_replica() {
    let app = TestApp::spawn().await;
    let organizer = app.user(Role::Organizer).await;
    let id = published_event(&app, &organizer, "Replicated").await;
    let replica = crate::helpers::with_database(&crate::helpers::stack("DATABASE_REPLICA_DIRECT_URL"), &app.database);
    let calls_on_replica = || crate::helpers::statement_calls(&replica, &app.database, &[r#"%FROM "events"%"#]);
    let before = calls_on_replica().await;
    eventually(|| async {
        (app.rest(Method::GET, &format!("/v1/events/{id}"), None, None).await.status == StatusCode::OK).then_some(())
    })
    .await;
    for _ in 0..5 {
        assert_eq!(app.rest(Method::GET, "/v1/events", None, None).await.status, StatusCode::OK);
    }
    // Most of these are answered from the cache; those that reach the
    // database reach the replica.
    let after = calls_on_replica().await;
    assert!(after > before, "the replica served no event query");
}
