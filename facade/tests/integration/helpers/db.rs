//! Direct queries on a test's database, for arranging data and checking invariants.

/// A single value from a direct query.
pub async fn query_value(url: &str, sql: &str) -> Option<String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    let task = tokio::spawn(connection);
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = task.await;
    messages.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    })
}

/// How many times statements of `database` whose text is LIKE each of
/// `patterns` have run on the server at `url`, as pg_stat_statements counts.
pub async fn statement_calls(url: &str, database: &str, patterns: &[&str]) -> i64 {
    let text: String = patterns.iter().map(|p| format!(" AND s.query LIKE '{}'", p.replace('\'', "''"))).collect();
    let sql = format!(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
         WHERE d.datname = '{database}'{text}"
    );
    query_value(url, &sql).await.and_then(|v| v.parse().ok()).unwrap_or(0)
}

pub async fn execute(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    let task = tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = task.await;
}
