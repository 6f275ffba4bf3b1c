//! `ticketing seed --demo`: a few published events with ticket categories,
//! and one account per role, so a newcomer has something to browse and buy.

use chrono::{Duration, Utc};
use ticketing_domain::{
    Code,
    catalog::{CategoryDetails, EventDetails, WaitingRoom},
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
                organizer = Some(Principal { user_id: user.id, role: Role::Organizer, api_key: None })
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
            max_tickets_per_customer: 0,
            waiting_room: WaitingRoom::default(),
            payment: Default::default(),
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
