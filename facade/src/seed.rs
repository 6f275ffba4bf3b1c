//! `ticketing seed --demo`: a few published events with ticket categories,
//! and one account per role, so a newcomer has something to browse and buy.

use chrono::{Duration, Utc};
use ticketing_domain::{
    Code,
    catalog::{CategoryDetails, EventDetails},
    identity::{Principal, Role},
    money::Money,
};
use ticketing_service::{AppState, app};

pub struct DemoAccount {
    pub role: Role,
    pub email: &'static str,
    pub password: &'static str,
}

pub const DEMO_ACCOUNTS: [DemoAccount; 3] = [
    DemoAccount { role: Role::Admin, email: "admin@demo.ticketing.test", password: "admin-demo-password" },
    DemoAccount { role: Role::Organizer, email: "organizer@demo.ticketing.test", password: "organizer-demo-password" },
    DemoAccount { role: Role::Customer, email: "customer@demo.ticketing.test", password: "customer-demo-password" },
];

struct DemoEvent {
    name: &'static str,
    venue: &'static str,
    time_zone: &'static str,
    days_ahead: i64,
    categories: &'static [(&'static str, i64, i32)],
}

const DEMO_EVENTS: [DemoEvent; 3] = [
    DemoEvent {
        name: "Jakarta Jazz Night",
        venue: "JIExpo Kemayoran, Jakarta",
        time_zone: "Asia/Jakarta",
        days_ahead: 30,
        categories: &[("Festival", 750_000, 5_000), ("VIP", 2_500_000, 500)],
    },
    DemoEvent {
        name: "Bali Sunset Festival",
        venue: "GWK Cultural Park, Bali",
        time_zone: "Asia/Makassar",
        days_ahead: 45,
        categories: &[("General Admission", 500_000, 10_000), ("Gold", 1_200_000, 2_000), ("Platinum", 3_000_000, 300)],
    },
    DemoEvent {
        name: "Bandung Indie Fest",
        venue: "Sabuga, Bandung",
        time_zone: "Asia/Jakarta",
        days_ahead: 60,
        categories: &[("Early Bird", 250_000, 1_000), ("Regular", 350_000, 3_000)],
    },
];

/// Creates the demo data unless it exists; returns whether it created it.
pub async fn demo(state: &AppState) -> Result<bool, ticketing_domain::Error> {
    let mut organizer = None;
    for account in &DEMO_ACCOUNTS {
        match app::auth::create_user(state, account.email, account.password.to_owned(), account.role).await {
            Ok(user) if account.role == Role::Organizer => {
                organizer = Some(Principal { user_id: user.id, role: Role::Organizer })
            }
            Ok(_) => {}
            Err(e) if e.code == Code::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    // The organizer existed already: the demo events were made with it.
    let Some(organizer) = organizer else { return Ok(false) };

    let now = Utc::now();
    for demo in &DEMO_EVENTS {
        let start =
            (now + Duration::days(demo.days_ahead)).date_naive().and_hms_opt(12, 0, 0).unwrap_or_default().and_utc();
        let details = EventDetails {
            name: demo.name.to_owned(),
            description: format!("{} — demo event seeded by `ticketing seed --demo`.", demo.name),
            venue: demo.venue.to_owned(),
            time_zone: demo.time_zone.to_owned(),
            start_time: start,
            end_time: start + Duration::hours(6),
            sales_start_time: now - Duration::hours(1),
            sales_end_time: start - Duration::hours(2),
        };
        let event = app::catalog::create_event(state, &organizer, details).await?;
        for (name, price, capacity) in demo.categories {
            let category = CategoryDetails {
                name: (*name).to_owned(),
                price: Money { currency_code: "IDR".to_owned(), units: *price, nanos: 0 },
                capacity: *capacity,
                max_per_order: 4,
                sales_start_time: None,
                sales_end_time: None,
            };
            app::catalog::create_ticket_category(state, &organizer, event.id, category).await?;
        }
        app::catalog::publish_event(state, &organizer, event.id).await?;
    }
    Ok(true)
}

/// What `ticketing seed --checkin-bench N` made, for the k6 check-in scenario.
#[derive(serde::Serialize)]
pub struct CheckinBench {
    pub event_id: String,
    /// Still on sale (the seeded tickets bypass the inventory): for order load.
    pub ticket_category_id: String,
    /// The seeded buyer, for minted tokens.
    pub customer_id: String,
    pub codes: Vec<String>,
    pub scanner_tokens: Vec<String>,
}

/// A published event with `tickets` paid tickets (genuinely signed codes) and
/// `scanners` scanner devices: the data of the check-in benchmark. Orders and
/// tickets are written in bulk on `DATABASE_DIRECT_URL`; everything else goes
/// through the use cases.
pub async fn checkin_bench(state: &AppState, tickets: usize, scanners: usize) -> anyhow::Result<CheckinBench> {
    let stamp = uuid::Uuid::now_v7().simple().to_string();
    let password = "bench-password-not-secret".to_owned();
    let organizer =
        app::auth::create_user(state, &format!("organizer-{stamp}@bench.test"), password.clone(), Role::Organizer)
            .await?;
    let customer =
        app::auth::create_user(state, &format!("customer-{stamp}@bench.test"), password, Role::Customer).await?;
    let organizer = Principal { user_id: organizer.id, role: Role::Organizer };
    let now = Utc::now();
    let details = EventDetails {
        name: format!("Check-in bench {stamp}"),
        description: "seeded by `ticketing seed --checkin-bench`".to_owned(),
        venue: "Loopback Arena".to_owned(),
        time_zone: "Asia/Jakarta".to_owned(),
        start_time: now + Duration::days(1),
        end_time: now + Duration::days(1) + Duration::hours(6),
        sales_start_time: now - Duration::hours(1),
        sales_end_time: now + Duration::hours(12),
    };
    let event = app::catalog::create_event(state, &organizer, details).await?;
    let capacity = i32::try_from(tickets)?;
    let category = CategoryDetails {
        name: "Festival".to_owned(),
        price: Money { currency_code: "IDR".to_owned(), units: 750_000, nanos: 0 },
        capacity,
        max_per_order: 4,
        sales_start_time: None,
        sales_end_time: None,
    };
    let (_, category) = app::catalog::create_ticket_category(state, &organizer, event.id, category).await?;
    app::catalog::publish_event(state, &organizer, event.id).await?;

    let master = state.config.ticket_key_encryption_key.clone();
    let event_id = event.id;
    let key = state
        .db
        .write(|conn| {
            use scoped_futures::ScopedFutureExt;
            async move { app::tickets::event_key(conn, &master, event_id).await }.scope_boxed()
        })
        .await?;
    let direct =
        state.config.database_direct_url.as_ref().ok_or_else(|| anyhow::anyhow!("DATABASE_DIRECT_URL is required"))?;
    let (client, connection) =
        tokio_postgres::connect(secrecy::ExposeSecret::expose_secret(direct), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut codes = Vec::with_capacity(tickets);
    for chunk in (0..tickets).collect::<Vec<_>>().chunks(4 * 2_500) {
        let orders: Vec<uuid::Uuid> = chunk.chunks(4).map(|_| uuid::Uuid::now_v7()).collect();
        let ticket_ids: Vec<uuid::Uuid> = chunk.iter().map(|_| uuid::Uuid::now_v7()).collect();
        let ticket_orders: Vec<uuid::Uuid> = (0..chunk.len()).map(|i| orders[i / 4]).collect();
        let chunk_codes: Vec<String> = ticket_ids
            .iter()
            .map(|&ticket_id| key.sign(ticketing_domain::ticket_code::TicketClaims { ticket_id, event_id }))
            .collect();
        client
            .execute(
                "INSERT INTO orders (id, user_id, event_id, status, currency_code, total_units, total_nanos,
                                     idempotency_key, request_digest, expire_time)
                 SELECT o, $2, $3, 'paid', 'IDR', 3000000, 0, o::text, 'bench', now() FROM unnest($1::uuid[]) AS o",
                &[&orders, &customer.id, &event_id],
            )
            .await?;
        client
            .execute(
                "INSERT INTO tickets (id, order_id, event_id, ticket_category_id, code)
                 SELECT t.id, t.order_id, $3, $4, t.code FROM unnest($1::uuid[], $2::uuid[], $5::text[]) AS t (id, order_id, code)",
                &[&ticket_ids, &ticket_orders, &event_id, &category.id, &chunk_codes],
            )
            .await?;
        codes.extend(chunk_codes);
    }
    let mut scanner_tokens = Vec::with_capacity(scanners);
    for n in 0..scanners {
        let (_, token) = app::checkin::create_scanner(state, &organizer, event_id, &format!("bench-{n}")).await?;
        scanner_tokens.push(token);
    }
    Ok(CheckinBench {
        event_id: event_id.to_string(),
        ticket_category_id: category.id.to_string(),
        customer_id: customer.id.to_string(),
        codes,
        scanner_tokens,
    })
}
