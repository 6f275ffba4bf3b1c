//! `ticketing db top`: the statements that cost the database most, from
//! `pg_stat_statements` (on in the dev/CI cluster; in production enable it
//! with `shared_preload_libraries`). Reset the counters with
//! `SELECT pg_stat_statements_reset()` before a load test to see only it.

pub struct StatementCost {
    pub calls: i64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub rows: i64,
    pub query: String,
}

pub async fn top_statements(
    direct_url: &str,
    limit: i64,
    all_databases: bool,
) -> Result<Vec<StatementCost>, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(direct_url, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT calls, total_exec_time, mean_exec_time, rows, regexp_replace(query, '\\s+', ' ', 'g')
             FROM pg_stat_statements
             WHERE $2 OR dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             ORDER BY total_exec_time DESC
             LIMIT $1",
            &[&limit, &all_databases],
        )
        .await?;
    drop(client);
    let _ = task.await;
    Ok(rows
        .into_iter()
        .map(|r| StatementCost {
            calls: r.get(0),
            total_ms: r.get(1),
            mean_ms: r.get(2),
            rows: r.get(3),
            query: r.get(4),
        })
        .collect())
}

/// A fixed-width table, queries cut to fit a terminal line.
pub fn render(rows: &[StatementCost]) -> String {
    let mut out = format!("{:>10} {:>12} {:>10} {:>10}  {}\n", "calls", "total ms", "mean ms", "rows", "query");
    for row in rows {
        let query: String = row.query.chars().take(100).collect();
        out.push_str(&format!(
            "{:>10} {:>12.1} {:>10.3} {:>10}  {}\n",
            row.calls, row.total_ms, row.mean_ms, row.rows, query
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_cuts_long_queries_and_aligns_numbers() {
        let rows = [StatementCost { calls: 3, total_ms: 12.345, mean_ms: 4.115, rows: 9, query: "x".repeat(300) }];
        let text = render(&rows);
        let line = text.lines().nth(1).unwrap();
        assert!(line.starts_with("         3         12.3      4.115          9  "));
        assert_eq!(line.trim_end().len(), 10 + 1 + 12 + 1 + 10 + 1 + 10 + 2 + 100);
    }
}
