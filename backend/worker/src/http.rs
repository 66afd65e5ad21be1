//! The `http` task kind: one request, its status checked, fields of a JSON answer kept as outputs.
//! Connection errors are retried (three tries, 1 s apart); an answer with a bad status is not.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::exec::Finish;
use crate::logs::{Stream, record};

async fn log(out: &mpsc::Sender<Vec<u8>>, line: String) {
    let _ = out.send(record(Stream::Stdout, line.as_bytes()).into_bytes()).await;
}

pub async fn run(config: &Value, logs: mpsc::Sender<Vec<u8>>) -> Finish {
    let method = config["method"].as_str().unwrap_or("GET").to_uppercase();
    let Some(url) = config["url"].as_str() else {
        return Finish::Failed { exit_code: -1, reason: "an http task needs a `url`".into() };
    };
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return Finish::Failed { exit_code: -1, reason: format!("{method:?} is not an HTTP method") };
    };
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(300)).build() {
        Ok(c) => c,
        Err(e) => return Finish::Failed { exit_code: -1, reason: format!("http client: {e}") },
    };
    let expected: Vec<u16> = config["expect_status"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_u64()).filter_map(|v| u16::try_from(v).ok()).collect())
        .unwrap_or_default();
    let mut last_error = String::new();
    for attempt in 1..=3 {
        let mut req = client.request(method.clone(), url);
        if let Some(h) = config["headers"].as_object() {
            for (k, v) in h {
                req = req.header(k, v.as_str().unwrap_or_default());
            }
        }
        match &config["body"] {
            Value::Null => {}
            Value::String(s) => req = req.body(s.clone()),
            other => req = req.json(other),
        }
        log(&logs, format!("{method} {url} (try {attempt})")).await;
        match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                let body = res.bytes().await.unwrap_or_default();
                log(&logs, format!("HTTP {status}, {} bytes", body.len())).await;
                let ok = if expected.is_empty() { (200..300).contains(&status) } else { expected.contains(&status) };
                if !ok {
                    let snippet = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
                    log(&logs, snippet).await;
                    return Finish::Failed {
                        exit_code: i32::from(status),
                        reason: format!("HTTP {status} from {url}"),
                    };
                }
                let mut outputs = BTreeMap::from([("status".to_owned(), status.to_string())]);
                if let Some(wanted) = config["outputs"].as_object() {
                    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    for (name, pointer) in wanted {
                        match json.pointer(pointer.as_str().unwrap_or_default()) {
                            Some(Value::String(s)) => outputs.insert(name.clone(), s.clone()),
                            Some(v) => outputs.insert(name.clone(), v.to_string()),
                            None => {
                                return Finish::Failed {
                                    exit_code: -1,
                                    reason: format!("output `{name}`: the answer has nothing at {pointer}"),
                                };
                            }
                        };
                    }
                }
                return Finish::Succeeded { outputs };
            }
            Err(e) if e.is_connect() || e.is_timeout() => {
                last_error = e.to_string();
                log(&logs, format!("connection failed: {e}")).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Finish::Failed { exit_code: -1, reason: format!("{url}: {e}") },
        }
    }
    Finish::Failed { exit_code: -1, reason: format!("{url}: {last_error}") }
}
