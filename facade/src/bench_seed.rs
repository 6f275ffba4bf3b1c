//! `ticketing seed --bench`: the data of the k6 scenarios (`ci/bench`) at the
//! size a scenario needs, written in bulk so a million sold tickets take
//! seconds, not hours.
//!
//! One published event with two categories: `Festival`, holding every seeded
//! ticket as sold (paid orders, order items, genuinely signed codes, and its
//! inventory counting them) with plenty left on sale for the buying
//! scenarios, and `Flash`, a stock the flash sale sells out. Around it:
//! customers, scanner devices, and optionally filler events so the catalog is
//! as large as a real one. Users, events and scanners go through the use
//! cases where one at a time is fast enough; orders, items and tickets go in
//! with COPY on `DATABASE_DIRECT_URL`.

use std::{fmt::Write as _, sync::Arc};

use bytes::Bytes;
use chrono::{Duration, Utc};
use futures::SinkExt;
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::ExposeSecret;
use ticketing_domain::{
    catalog::{CategoryDetails, EventDetails, MAX_TICKETS_PER_CUSTOMER, WaitingRoom},
    identity::{Principal, Role},
    money::Money,
    ticket_code::{EventKey, TicketClaims},
};
use ticketing_service::{AppState, app};
use ticketing_store::inventory::BUCKETS_PER_CATEGORY;
use uuid::Uuid;

/// What to seed.
pub struct BenchSpec {
    /// Tickets sold on the bench event (four to an order).
    pub tickets: usize,
    /// The flash-sale category's stock.
    pub flash_stock: i32,
    pub customers: usize,
    /// Customers for the waiting-room event's crowd.
    pub room_customers: usize,
    pub scanners: usize,
    /// Other published events, each with one category.
    pub filler_events: usize,
    /// How many ticket codes to print (all when `None`): k6 needs only as
    /// many as it will scan, and a million codes are 130 MB of JSON.
    pub export_codes: Option<usize>,
    /// Paid orders of the event the `cancellation` scenario cancels.
    pub cancel_orders: usize,
}

/// What was seeded, printed as JSON for the k6 scripts.
#[derive(serde::Serialize)]
pub struct BenchData {
    pub event_id: String,
    /// `Festival`: the sold tickets, and stock on sale for the buying scenarios.
    pub ticket_category_id: String,
    /// `Flash`: the stock the flash sale sells out.
    pub flash_category_id: String,
    /// `Flash B`: the same stock again, for the flash sale's second run
    /// (`flash_sale_unlimited`: the per-customer limit off).
    pub flash_b_category_id: String,
    pub flash_stock: i32,
    /// The buyer of the seeded tickets.
    pub customer_id: String,
    /// Further buyers, for minted tokens.
    pub customer_ids: Vec<String>,
    /// The events' organizer, for minted tokens (the waiting-room scenario
    /// sets its room up).
    pub organizer_id: String,
    /// An event with its waiting room enabled, sales not yet open, and its
    /// one category (`Tribune`); the crowd that queues for it.
    pub room_event_id: String,
    pub room_category_id: String,
    pub room_customer_ids: Vec<String>,
    /// The bench event and up to 199 filler events, for browsing.
    pub event_ids: Vec<String>,
    pub codes: Vec<String>,
    pub scanner_tokens: Vec<String>,
    /// The event the `cancellation` scenario cancels (its paid orders are
    /// read from the database, not printed).
    pub cancel_event_id: Option<String>,
}

/// Stock left on sale in `Festival` beyond the sold tickets.
const ON_SALE: usize = 5_000_000;
/// Tickets signed and copied per round (one progress step).
const CHUNK: usize = 50_000;
const PRICE: i64 = 750_000;

pub async fn bench(state: &AppState, spec: &BenchSpec) -> anyhow::Result<BenchData> {
    let stamp = Uuid::now_v7().simple().to_string();
    let password = "bench-password-not-secret".to_owned();
    let organizer =
        app::auth::create_user(state, &format!("organizer-{stamp}@bench.test"), password.clone(), Role::Organizer)
            .await?;
    let customer =
        app::auth::create_user(state, &format!("customer-{stamp}@bench.test"), password, Role::Customer).await?;
    let organizer = Principal { user_id: organizer.id, role: Role::Organizer, api_key: None };
    let now = Utc::now();
    let details = EventDetails {
        name: format!("Bench arena {stamp}"),
        description: "seeded by `ticketing seed --bench`".to_owned(),
        venue: "Loopback Arena".to_owned(),
        time_zone: "Asia/Jakarta".to_owned(),
        start_time: now + Duration::days(1),
        end_time: now + Duration::days(1) + Duration::hours(6),
        sales_start_time: now - Duration::hours(1),
        sales_end_time: now + Duration::hours(12),
        // The scenarios' 10,000 accounts buy far past 10 tickets each; the
        // limit is still counted on every hold (its cost is measured), at
        // the most an event may set.
        max_tickets_per_customer: MAX_TICKETS_PER_CUSTOMER,
        waiting_room: WaitingRoom::default(),
        payment: Default::default(),
    };
    let event = app::catalog::create_event(state, &organizer, details).await?;
    let category = |name: &str, capacity: i32| CategoryDetails {
        name: name.to_owned(),
        price: Money { currency_code: "IDR".to_owned(), units: PRICE, nanos: 0 },
        capacity,
        max_per_order: 4,
        sales_start_time: None,
        sales_end_time: None,
    };
    let festival_capacity = i32::try_from(spec.tickets + ON_SALE)?;
    let (_, festival) =
        app::catalog::create_ticket_category(state, &organizer, event.id, category("Festival", festival_capacity))
            .await?;
    let (_, flash) =
        app::catalog::create_ticket_category(state, &organizer, event.id, category("Flash", spec.flash_stock)).await?;
    let (_, flash_b) =
        app::catalog::create_ticket_category(state, &organizer, event.id, category("Flash B", spec.flash_stock))
            .await?;
    app::catalog::publish_event(state, &organizer, event.id).await?;
    let (room_event, room_category) = seed_room_event(state, &organizer, &stamp).await?;

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
    let (client, connection) = tokio_postgres::connect(direct.expose_secret(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);

    let customer_ids = seed_customers(&client, &stamp, spec.customers).await?;
    let room_customer_ids = seed_customers(&client, &format!("{stamp}-room"), spec.room_customers).await?;
    let sold = Sold { event_id, category_id: festival.id, customer_id: customer.id };
    let codes = seed_sold_tickets(&client, key, sold, spec).await?;
    let filler = seed_filler_events(&client, organizer.user_id, spec.filler_events).await?;
    let cancel_event = match spec.cancel_orders {
        0 => None,
        orders => Some(seed_event_to_cancel(state, &client, &organizer, &stamp, &customer_ids, orders).await?),
    };

    let mut scanner_tokens = Vec::with_capacity(spec.scanners);
    for n in 0..spec.scanners {
        let (_, token) = app::checkin::create_scanner(state, &organizer, event_id, &format!("bench-{n}")).await?;
        scanner_tokens.push(token);
    }
    Ok(BenchData {
        event_id: event_id.to_string(),
        ticket_category_id: festival.id.to_string(),
        flash_category_id: flash.id.to_string(),
        flash_b_category_id: flash_b.id.to_string(),
        flash_stock: spec.flash_stock,
        customer_id: customer.id.to_string(),
        customer_ids,
        organizer_id: organizer.user_id.to_string(),
        room_event_id: room_event.to_string(),
        room_category_id: room_category.to_string(),
        room_customer_ids,
        event_ids: std::iter::once(event_id).chain(filler.into_iter().take(199)).map(|id| id.to_string()).collect(),
        codes,
        scanner_tokens,
        cancel_event_id: cancel_event.map(|id| id.to_string()),
    })
}

/// A published event whose `orders` paid orders (one ticket each, bought by
/// `customers` in turn) a cancellation refunds: orders, items, signed
/// tickets, payments (one in ten by bank transfer, which Midtrans refunds
/// only by hand) and the inventory counting them.
async fn seed_event_to_cancel(
    state: &AppState,
    client: &tokio_postgres::Client,
    organizer: &Principal,
    stamp: &str,
    customers: &[String],
    orders: usize,
) -> anyhow::Result<Uuid> {
    let now = Utc::now();
    let details = EventDetails {
        name: format!("Bench show to cancel {stamp}"),
        description: "seeded by `ticketing seed --bench --cancel-orders`".to_owned(),
        venue: "Loopback Hall".to_owned(),
        time_zone: "Asia/Jakarta".to_owned(),
        start_time: now + Duration::days(2),
        end_time: now + Duration::days(2) + Duration::hours(4),
        sales_start_time: now - Duration::hours(1),
        sales_end_time: now + Duration::days(1),
        max_tickets_per_customer: MAX_TICKETS_PER_CUSTOMER,
        waiting_room: WaitingRoom::default(),
        payment: Default::default(),
    };
    let event = app::catalog::create_event(state, organizer, details).await?;
    let seats = CategoryDetails {
        name: "Seats".to_owned(),
        price: Money { currency_code: "IDR".to_owned(), units: PRICE, nanos: 0 },
        capacity: i32::try_from(orders)?,
        max_per_order: 4,
        sales_start_time: None,
        sales_end_time: None,
    };
    let (_, category) = app::catalog::create_ticket_category(state, organizer, event.id, seats).await?;
    app::catalog::publish_event(state, organizer, event.id).await?;
    let master = state.config.ticket_key_encryption_key.clone();
    let event_id = event.id;
    let key = state
        .db
        .write(|conn| {
            use scoped_futures::ScopedFutureExt;
            async move { app::tickets::event_key(conn, &master, event_id).await }.scope_boxed()
        })
        .await?;
    let order_ids: Vec<Uuid> = (0..orders).map(|_| Uuid::now_v7()).collect();
    let ticket_ids: Vec<Uuid> = (0..orders).map(|_| Uuid::now_v7()).collect();
    let codes = sign_in_parallel(&key, event_id, &ticket_ids);
    let paid_at = now.to_rfc3339();
    let (mut rows, mut items, mut tickets, mut payments) = (String::new(), String::new(), String::new(), String::new());
    for (n, ((order_id, ticket_id), code)) in order_ids.iter().zip(&ticket_ids).zip(&codes).enumerate() {
        let customer = &customers[n % customers.len().max(1)];
        let category_id = category.id;
        writeln!(
            rows,
            "{order_id}\t{customer}\t{event_id}\tpaid\tIDR\t{PRICE}\t0\t{order_id}\tbench-cancel\t{paid_at}"
        )?;
        writeln!(items, "{order_id}\t{category_id}\t1\t{PRICE}\t0")?;
        writeln!(tickets, "{ticket_id}\t{order_id}\t{event_id}\t{category_id}\t{code}")?;
        let method = if n % 10 == 9 { "bank_transfer" } else { "qris" };
        writeln!(payments, "{}\t{order_id}\tmidtrans\tpaid\tsettlement\t\t\t{PRICE}\t{method}", Uuid::now_v7())?;
    }
    copy(client, "COPY orders (id, user_id, event_id, status, currency_code, total_units, total_nanos, idempotency_key, request_digest, expire_time) FROM STDIN", rows).await?;
    copy(
        client,
        "COPY order_items (order_id, ticket_category_id, quantity, unit_price_units, unit_price_nanos) FROM STDIN",
        items,
    )
    .await?;
    copy(client, "COPY tickets (id, order_id, event_id, ticket_category_id, code) FROM STDIN", tickets).await?;
    copy(
        client,
        "COPY payments (id, order_id, provider, status, provider_status, token, redirect_url, gross_amount, payment_type) FROM STDIN",
        payments,
    )
    .await?;
    client
        .execute(
            "WITH b AS (SELECT count(*)::int AS n FROM inventory_buckets WHERE ticket_category_id = $1)
             UPDATE inventory_buckets SET held = $2 / b.n + CASE WHEN bucket < $2 % b.n THEN 1 ELSE 0 END
               FROM b WHERE ticket_category_id = $1",
            &[&category.id, &i32::try_from(orders)?],
        )
        .await?;
    Ok(event_id)
}

/// The waiting-room event: its room enabled, sales opening tomorrow (the
/// scenario moves the start to just after its crowd has joined), one
/// category of 1,000,000 seats.
async fn seed_room_event(state: &AppState, organizer: &Principal, stamp: &str) -> anyhow::Result<(Uuid, Uuid)> {
    let now = Utc::now();
    let details = EventDetails {
        name: format!("Bench stadium {stamp}"),
        description: "the waiting room's on-sale, seeded by `ticketing seed --bench`".to_owned(),
        venue: "Loopback Stadium".to_owned(),
        time_zone: "Asia/Jakarta".to_owned(),
        start_time: now + Duration::days(2),
        end_time: now + Duration::days(2) + Duration::hours(4),
        sales_start_time: now + Duration::days(1),
        sales_end_time: now + Duration::days(1) + Duration::hours(12),
        max_tickets_per_customer: 0,
        waiting_room: WaitingRoom { enabled: true, admit_per_minute: 6000, ..WaitingRoom::default() },
        payment: Default::default(),
    };
    let event = app::catalog::create_event(state, organizer, details).await?;
    let tribune = CategoryDetails {
        name: "Tribune".to_owned(),
        price: Money { currency_code: "IDR".to_owned(), units: PRICE, nanos: 0 },
        capacity: 1_000_000,
        max_per_order: 4,
        sales_start_time: None,
        sales_end_time: None,
    };
    let (_, category) = app::catalog::create_ticket_category(state, organizer, event.id, tribune).await?;
    app::catalog::publish_event(state, organizer, event.id).await?;
    Ok((event.id, category.id))
}

async fn seed_customers(client: &tokio_postgres::Client, stamp: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let rows = client
        .query(
            "INSERT INTO users (id, email, password_hash, role)
             SELECT gen_random_uuid(), 'buyer-' || $1 || '-' || n || '@bench.test', 'unusable', 'customer'
               FROM generate_series(1, $2::int) n
             RETURNING id",
            &[&stamp, &i32::try_from(count)?],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get::<_, Uuid>(0).to_string()).collect())
}

/// Where the sold tickets go.
#[derive(Clone, Copy)]
struct Sold {
    event_id: Uuid,
    category_id: Uuid,
    customer_id: Uuid,
}

/// Paid orders of four tickets, their items and their signed tickets, with
/// the category's inventory counting them, so the invariants hold as for
/// tickets sold through the API. Returns the exported codes.
async fn seed_sold_tickets(
    client: &tokio_postgres::Client,
    key: EventKey,
    sold: Sold,
    spec: &BenchSpec,
) -> anyhow::Result<Vec<String>> {
    let progress = ProgressBar::new(spec.tickets as u64).with_message("tickets").with_style(
        ProgressStyle::with_template("{msg:>8} [{bar:40}] {human_pos}/{human_len} {per_sec} eta {eta}")?
            .progress_chars("=> "),
    );
    let wanted = spec.export_codes.unwrap_or(spec.tickets).min(spec.tickets);
    let mut exported = Vec::with_capacity(wanted);
    let key = Arc::new(key);
    let prepare = |start: usize| {
        let key = Arc::clone(&key);
        let count = CHUNK.min(spec.tickets - start);
        tokio::task::spawn_blocking(move || prepare_chunk(&key, sold, count))
    };
    // Pipelined: the next chunk is signed on the other cores while Postgres
    // takes this one (its foreign-key checks are the other half of the cost).
    let mut next = (spec.tickets > 0).then(|| prepare(0));
    let mut start = 0;
    while let Some(preparing) = next.take() {
        let chunk = preparing.await??;
        start += chunk.codes.len();
        if start < spec.tickets {
            next = Some(prepare(start));
        }
        copy(client, "COPY orders (id, user_id, event_id, status, currency_code, total_units, total_nanos, idempotency_key, request_digest, expire_time) FROM STDIN", chunk.orders).await?;
        copy(
            client,
            "COPY order_items (order_id, ticket_category_id, quantity, unit_price_units, unit_price_nanos) FROM STDIN",
            chunk.items,
        )
        .await?;
        copy(client, "COPY tickets (id, order_id, event_id, ticket_category_id, code) FROM STDIN", chunk.tickets)
            .await?;
        progress.inc(chunk.codes.len() as u64);
        exported.extend(chunk.codes.into_iter().take(wanted - exported.len()));
    }
    // The inventory counts the sold tickets, spread over the buckets as the
    // API would have taken them.
    client
        .execute(
            "WITH b AS (SELECT count(*)::int AS n FROM inventory_buckets WHERE ticket_category_id = $1)
             UPDATE inventory_buckets SET held = $2 / b.n + CASE WHEN bucket < $2 % b.n THEN 1 ELSE 0 END
               FROM b WHERE ticket_category_id = $1",
            &[&sold.category_id, &i32::try_from(spec.tickets)?],
        )
        .await?;
    progress.finish();
    Ok(exported)
}

/// One round of sold tickets as COPY text, and their codes.
struct Chunk {
    orders: String,
    items: String,
    tickets: String,
    codes: Vec<String>,
}

fn prepare_chunk(key: &EventKey, sold: Sold, count: usize) -> anyhow::Result<Chunk> {
    let ticket_ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let order_ids: Vec<Uuid> = (0..count.div_ceil(4)).map(|_| Uuid::now_v7()).collect();
    let codes = sign_in_parallel(key, sold.event_id, &ticket_ids);
    let paid_at = Utc::now().to_rfc3339();
    let (mut orders, mut items, mut tickets) = (String::new(), String::new(), String::new());
    for (n, order_id) in order_ids.iter().enumerate() {
        let quantity = 4.min(count - n * 4);
        let total = PRICE * quantity as i64;
        let (customer, event, category) = (sold.customer_id, sold.event_id, sold.category_id);
        writeln!(orders, "{order_id}\t{customer}\t{event}\tpaid\tIDR\t{total}\t0\t{order_id}\tbench\t{paid_at}")?;
        writeln!(items, "{order_id}\t{category}\t{quantity}\t{PRICE}\t0")?;
    }
    for (n, (ticket_id, code)) in ticket_ids.iter().zip(&codes).enumerate() {
        writeln!(tickets, "{ticket_id}\t{}\t{}\t{}\t{code}", order_ids[n / 4], sold.event_id, sold.category_id)?;
    }
    Ok(Chunk { orders, items, tickets, codes })
}

/// Ed25519 signing is the seed's main CPU cost: spread it over the cores.
fn sign_in_parallel(key: &EventKey, event_id: Uuid, ticket_ids: &[Uuid]) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = ticket_ids.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = ticket_ids
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk.iter().map(|&ticket_id| key.sign(TicketClaims { ticket_id, event_id })).collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("signing thread")).collect()
    })
}

async fn copy(client: &tokio_postgres::Client, statement: &str, rows: String) -> anyhow::Result<()> {
    let sink = client.copy_in::<_, Bytes>(statement).await?;
    futures::pin_mut!(sink);
    sink.send(Bytes::from(rows)).await?;
    sink.finish().await?;
    Ok(())
}

/// Published events a year ahead, one category each: a catalog of realistic size.
async fn seed_filler_events(
    client: &tokio_postgres::Client,
    organizer_id: Uuid,
    count: usize,
) -> anyhow::Result<Vec<Uuid>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let events: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let categories: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    client
        .execute(
            "INSERT INTO events (id, organizer_id, name, venue, time_zone, start_time, end_time,
                                 sales_start_time, sales_end_time, status)
             SELECT e, $2, 'Filler event ' || n, 'Venue ' || (n % 500), 'Asia/Jakarta',
                    now() + make_interval(hours => 48 + n::int), now() + make_interval(hours => 52 + n::int),
                    now() - interval '1 hour', now() + make_interval(hours => 46 + n::int), 'published'
               FROM unnest($1::uuid[]) WITH ORDINALITY AS x (e, n)",
            &[&events, &organizer_id],
        )
        .await?;
    // Buckets laid out as the API lays them out: BUCKETS_PER_CATEGORY of equal share.
    let (per_bucket, buckets) = (100, BUCKETS_PER_CATEGORY);
    client
        .execute(
            "INSERT INTO ticket_categories (id, event_id, name, currency_code, price_units, price_nanos, capacity, max_per_order)
             SELECT c, e, 'General', 'IDR', 500000, 0, $3::int * $4::int, 4 FROM unnest($1::uuid[], $2::uuid[]) AS x (c, e)",
            &[&categories, &events, &per_bucket, &buckets],
        )
        .await?;
    client
        .execute(
            "INSERT INTO inventory_buckets (ticket_category_id, bucket, capacity)
             SELECT c, b, $2::int FROM unnest($1::uuid[]) AS c, generate_series(0, $3::int - 1) AS b",
            &[&categories, &per_bucket, &buckets],
        )
        .await?;
    Ok(events)
}
