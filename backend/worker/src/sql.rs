//! The `sql` task kind: a query (one or more statements) against a connection of the tenant,
//! PostgreSQL or MySQL/MariaDB. Outputs: `rows` (rows returned), `affected` (rows changed) and
//! the first row returned, one output per column. The first rows are logged as a table.
//!
//! Statements go through the simple/text protocol, so every value arrives as text whatever its
//! type. A cancel or a timeout cancels the statement on the server too (`pg_cancel_backend`,
//! `KILL QUERY` from a second connection), not just our side of the socket.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use serde_json::Value;
use sqlx::{Column, Connection, Either, Executor, Row};
use tokio::sync::mpsc;

use crate::exec::{Finish, Stop};
use crate::logs::{Stream, record};

/// Rows written to the log.
const LOGGED_ROWS: usize = 20;
/// Longest value kept in an output or a logged cell.
const MAX_VALUE: usize = 4096;

async fn log(out: &mpsc::Sender<Vec<u8>>, stream: Stream, line: &str) {
    let _ = out.send(record(stream, line.as_bytes()).into_bytes()).await;
}

/// What the statements gave back.
#[derive(Default)]
struct Outcome {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
    returned: u64,
    affected: u64,
}

impl Outcome {
    fn push(&mut self, columns: Vec<String>, values: Vec<Option<String>>) {
        self.returned += 1;
        if self.columns.is_empty() {
            self.columns = columns;
        }
        if self.rows.len() < LOGGED_ROWS {
            self.rows.push(values);
        }
    }
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_VALUE {
        let mut cut = MAX_VALUE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

pub async fn run(task: &Value, timeout: Option<Duration>, logs: mpsc::Sender<Vec<u8>>, stop: Stop) -> Finish {
    let conn = &task["connection"];
    if let Some(e) = conn["error"].as_str() {
        return Finish::Failed { exit_code: -1, reason: e.to_owned() };
    }
    let (Some(kind), Some(url)) = (conn["kind"].as_str(), conn["url"].as_str()) else {
        return Finish::Failed { exit_code: -1, reason: "the task came without its connection".into() };
    };
    let Some(query) = task["config"]["query"].as_str().filter(|q| !q.trim().is_empty()) else {
        return Finish::Failed { exit_code: -1, reason: "an sql task needs a `query`".into() };
    };
    let name = task["config"]["connection"].as_str().unwrap_or_default();
    log(&logs, Stream::Stdout, &format!("connecting to `{name}` ({})", model::redact::redact_url(url))).await;
    // On a task of its own, over owned data: the driver's borrowed streams make a future whose
    // Send-ness the compiler cannot see through the caller's generic layers.
    let (url, query) = (url.to_owned(), query.to_owned());
    let result = match kind {
        "postgres" => tokio::spawn(async move { postgres(&url, &query, timeout, &stop).await }).await,
        "mysql" => tokio::spawn(async move { mysql(&url, &query, timeout, &stop).await }).await,
        other => Ok(Err(Failure::Error(format!("connections of kind `{other}` are not supported")))),
    }
    .unwrap_or_else(|e| Err(Failure::Error(format!("the query task failed: {e}"))));
    match result {
        Ok(out) => {
            for line in table(&out) {
                log(&logs, Stream::Stdout, &line).await;
            }
            log(&logs, Stream::Stdout, &format!("{} rows returned, {} rows affected", out.returned, out.affected))
                .await;
            let mut outputs = BTreeMap::from([
                ("rows".to_owned(), out.returned.to_string()),
                ("affected".to_owned(), out.affected.to_string()),
            ]);
            if let Some(first) = out.rows.first() {
                for (c, v) in out.columns.iter().zip(first) {
                    outputs.entry(c.clone()).or_insert_with(|| v.clone().unwrap_or_default());
                }
            }
            Finish::Succeeded { outputs }
        }
        Err(Failure::Error(e)) => {
            log(&logs, Stream::Stderr, &e).await;
            Finish::Failed { exit_code: -1, reason: e }
        }
        Err(Failure::TimedOut) => Finish::TimedOut,
        Err(Failure::Cancelled) => Finish::Cancelled,
    }
}

enum Failure {
    Error(String),
    TimedOut,
    Cancelled,
}

/// The rows as aligned text: a header, a rule, the rows (NULL shown as such).
fn table(out: &Outcome) -> Vec<String> {
    if out.columns.is_empty() {
        return Vec::new();
    }
    let cell = |v: &Option<String>| v.as_deref().unwrap_or("NULL").replace(['\n', '\t'], " ");
    let mut widths: Vec<usize> = out.columns.iter().map(|c| c.chars().count()).collect();
    for r in &out.rows {
        for (i, v) in r.iter().enumerate() {
            widths[i] = widths[i].max(cell(v).chars().count().min(60));
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_owned()
    };
    let mut lines = vec![line(out.columns.clone())];
    lines.push(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-"));
    for r in &out.rows {
        lines.push(line(r.iter().map(cell).collect()));
    }
    if out.returned > out.rows.len() as u64 {
        lines.push(format!("… {} more rows", out.returned - out.rows.len() as u64));
    }
    lines
}

/// Runs `work` until it ends, the timeout passes or a stop is asked; on the latter two, `cancel`
/// (a future: nothing happens unless it is awaited) stops the statement on the server.
async fn race<F, C>(work: F, timeout: Option<Duration>, stop: &Stop, cancel: C) -> Result<Outcome, Failure>
where
    F: Future<Output = Result<Outcome, String>>,
    C: Future<Output = ()>,
{
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let ended = tokio::select! {
        r = work => return r.map_err(Failure::Error),
        () = deadline => Failure::TimedOut,
        () = stop.asked() => Failure::Cancelled,
    };
    cancel.await;
    Err(ended)
}

async fn postgres(url: &str, query: &str, timeout: Option<Duration>, stop: &Stop) -> Result<Outcome, Failure> {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| Failure::Error(format!("connecting: {}", model::redact::redact_url(&e.to_string()))))?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| Failure::Error(format!("connecting: {e}")))?;
    let work = async {
        let mut out = Outcome::default();
        let mut stream = sqlx::raw_sql(query).fetch_many(&mut conn);
        while let Some(item) = stream.try_next().await.map_err(|e| e.to_string())? {
            match item {
                Either::Left(done) => out.affected += done.rows_affected(),
                Either::Right(row) => {
                    let columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
                    let values = (0..row.len())
                        .map(|i| row.try_get_unchecked::<Option<&str>, _>(i).ok().flatten().map(|s| clip(s.to_owned())))
                        .collect();
                    out.push(columns, values);
                }
            }
        }
        Ok(out)
    };
    race(work, timeout, stop, async {
        if let Ok(mut c) = sqlx::PgConnection::connect(url).await {
            let _ = sqlx::query("SELECT pg_cancel_backend($1)").bind(pid).execute(&mut c).await;
        }
    })
    .await
}

async fn mysql(url: &str, query: &str, timeout: Option<Duration>, stop: &Stop) -> Result<Outcome, Failure> {
    let mut conn = sqlx::MySqlConnection::connect(url)
        .await
        .map_err(|e| Failure::Error(format!("connecting: {}", model::redact::redact_url(&e.to_string()))))?;
    let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| Failure::Error(format!("connecting: {e}")))?;
    let work = async {
        let mut out = Outcome::default();
        let mut stream = (&mut conn).fetch_many(sqlx::raw_sql(query));
        while let Some(item) = stream.try_next().await.map_err(|e| e.to_string())? {
            match item {
                Either::Left(done) => out.affected += done.rows_affected(),
                Either::Right(row) => {
                    let columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
                    let values = (0..row.len())
                        .map(|i| match row.try_get_unchecked::<Option<&str>, _>(i) {
                            Ok(v) => v.map(|s| clip(s.to_owned())),
                            Err(_) => row
                                .try_get_unchecked::<Option<Vec<u8>>, _>(i)
                                .ok()
                                .flatten()
                                .map(|b| format!("<{} bytes>", b.len())),
                        })
                        .collect();
                    out.push(columns, values);
                }
            }
        }
        Ok(out)
    };
    race(work, timeout, stop, async {
        if let Ok(mut c) = sqlx::MySqlConnection::connect(url).await {
            let kill = format!("KILL QUERY {id}");
            let _ = (&mut c).execute(sqlx::raw_sql(&kill)).await;
        }
    })
    .await
}
