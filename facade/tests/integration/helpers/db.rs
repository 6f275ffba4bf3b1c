//! Direct queries on a test's database, for arranging data and checking
//! invariants. Checks are fixed statements (`&'static str`) whose inputs
//! are bind parameters: no test data is ever spliced into SQL text.

use tokio_postgres::types::FromSqlOwned;
pub use tokio_postgres::types::ToSql;
use uuid::Uuid;

pub(super) async fn connect(url: &str) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, task)
}

/// The first column of the first row of a fixed statement, as text (None
/// when there is no row or it is NULL).
pub async fn query_value(url: &str, sql: &'static str) -> Option<String> {
    let (client, task) = connect(url).await;
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = task.await;
    messages.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    })
}

/// The first column of the one row (if any) of a fixed statement whose
/// inputs are bound as `$1`, `$2`, …; None when there is no row or it is NULL.
pub async fn query_one<T: FromSqlOwned>(url: &str, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Option<T> {
    let (client, task) = connect(url).await;
    let row = client.query_opt(sql, params).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = task.await;
    row.and_then(|row| row.get::<_, Option<T>>(0))
}

/// An id from an API answer, as the database's `uuid` parameter.
pub fn uuid(id: &str) -> Uuid {
    Uuid::parse_str(id).unwrap_or_else(|e| panic!("{id}: {e}"))
}

/// The tables whose rows tests count. A table name cannot be a bind
/// parameter, so each one's statement is written out.
#[derive(Clone, Copy, Debug)]
pub enum Table {
    Checkins,
    Events,
    OrderItems,
    Orders,
    Outbox,
    Payments,
    Scans,
    TicketCategories,
    Tickets,
    Users,
}

impl Table {
    pub fn count_sql(self) -> &'static str {
        match self {
            Table::Checkins => "SELECT count(*) FROM checkins",
            Table::Events => "SELECT count(*) FROM events",
            Table::OrderItems => "SELECT count(*) FROM order_items",
            Table::Orders => "SELECT count(*) FROM orders",
            Table::Outbox => "SELECT count(*) FROM outbox",
            Table::Payments => "SELECT count(*) FROM payments",
            Table::Scans => "SELECT count(*) FROM scans",
            Table::TicketCategories => "SELECT count(*) FROM ticket_categories",
            Table::Tickets => "SELECT count(*) FROM tickets",
            Table::Users => "SELECT count(*) FROM users",
        }
    }
}

/// How many times statements of `database` whose text is LIKE every one of
/// `patterns` have run on the server at `url`, as pg_stat_statements counts.
pub async fn statement_calls(url: &str, database: &str, patterns: &[&str]) -> i64 {
    let sql = "SELECT coalesce(sum(s.calls), 0)::bigint FROM pg_stat_statements s \
               JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1 AND s.query LIKE ALL ($2::text[])";
    query_one(url, sql, &[&database, &patterns]).await.expect("a sum")
}

/// Buffer pages (hit or read) of the same statements, as pg_stat_statements
/// counts them: what a statement's plan made it touch.
pub async fn statement_blocks(url: &str, database: &str, patterns: &[&str]) -> i64 {
    let sql = "SELECT coalesce(sum(s.shared_blks_hit + s.shared_blks_read), 0)::bigint FROM pg_stat_statements s \
               JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1 AND s.query LIKE ALL ($2::text[])";
    query_one(url, sql, &[&database, &patterns]).await.expect("a sum")
}

/// Runs one fixed statement that arranges data or schema, its inputs bound
/// as `$1`, `$2`, …; returns the rows it touched.
pub async fn execute(url: &str, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> u64 {
    let (client, task) = connect(url).await;
    let rows = client.execute(sql, params).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = task.await;
    rows
}
