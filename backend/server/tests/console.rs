//! What the console relies on, through a real server: layouts kept with workflows, each
//! workflow's last run in the list, the day's numbers on the dashboard, a run followed live as
//! server-sent events, and a person's language and theme following them to a new browser.

mod common;

use std::time::Duration;

use common::{ADMIN_PASSWORD, TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CHAIN: &str = "name: chain\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: sleep, config: {seconds: 0.3}, depends_on: [a]}\n  - {id: c, kind: noop, depends_on: [b]}\n";
const FAILS: &str = "name: fails\ntasks:\n  - {id: x, kind: shell, config: {script: 'exit 3'}, pool: nowhere}\n";

async fn app() -> TestApp {
    let app = spawn_app().await;
    let p =
        app.post("/api/v1/tenants/acme/projects", &app.admin_token, json!({ "slug": "data", "name": "Data" })).await;
    assert_eq!(p.status, StatusCode::CREATED);
    app
}

async fn apply(app: &TestApp, doc: &str, layout: Option<Value>) -> common::Answer {
    let mut body = json!({ "project": "data", "document": doc, "message": "test" });
    if let Some(l) = layout {
        body["layout"] = l;
    }
    app.post("/api/v1/tenants/acme/workflows", &app.admin_token, body).await
}

async fn trigger(app: &TestApp, workflow: &str) -> String {
    let t = app.post(&format!("/api/v1/tenants/acme/workflows/{workflow}/runs"), &app.admin_token, json!({})).await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
    t.body["run"]["id"].as_str().unwrap().to_owned()
}

async fn state_of(app: &TestApp, run: &str) -> String {
    let r = app.get(&format!("/api/v1/tenants/acme/runs/{run}"), &app.admin_token).await;
    r.body["run"]["state"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_layout_is_kept_with_the_workflow_without_making_a_version() {
    let app = app().await;
    let first = apply(&app, CHAIN, Some(json!({ "a": { "x": 10, "y": 20 }, "ghost": { "x": 1, "y": 1 } }))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let got = app.get("/api/v1/tenants/acme/workflows/chain", &app.admin_token).await;
    assert_eq!(got.body["layout"], json!({ "a": { "x": 10.0, "y": 20.0 } }), "tasks the workflow lacks are dropped");
    // Moving boxes is not a new version.
    let moved = apply(&app, CHAIN, Some(json!({ "a": { "x": 300, "y": 40 }, "b": { "x": 500, "y": 40 } }))).await;
    assert_eq!((moved.status, moved.body["changed"].as_bool()), (StatusCode::OK, Some(false)));
    let got = app.get("/api/v1/tenants/acme/workflows/chain", &app.admin_token).await;
    assert_eq!(got.body["workflow"]["version"], 1);
    assert_eq!(got.body["layout"]["b"], json!({ "x": 500.0, "y": 40.0 }));
    // A layout that is not positions is refused, and nothing of the call is stored.
    let bad = apply(&app, "name: chain\ntasks:\n  - {id: a, kind: noop}\n", Some(json!({ "a": "left" }))).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(bad.body["message"].as_str().unwrap().contains("layout"), "{}", bad.body);
    let got = app.get("/api/v1/tenants/acme/workflows/chain", &app.admin_token).await;
    assert_eq!(got.body["workflow"]["task_count"], 3, "the refused document was not applied");
}

#[tokio::test]
async fn a_run_followed_as_events_is_sent_as_it_changes_then_the_stream_ends() {
    let app = app().await;
    app.start_engine();
    apply(&app, CHAIN, None).await;
    let run = trigger(&app, "chain").await;
    let client = reqwest::Client::new();
    let mut res = client
        .get(format!("{}/api/v1/tenants/acme/runs/{run}/events", app.base))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = res.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("the stream ends after the run");
    let runs: Vec<Value> = text
        .split("\n\n")
        .filter(|e| e.contains("event: run"))
        .map(|e| {
            let data: String = e.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            serde_json::from_str(&data).unwrap()
        })
        .collect();
    assert!(runs.len() >= 2, "the first state and at least one change: {text}");
    let states: Vec<&str> = runs.iter().map(|r| r["run"]["state"].as_str().unwrap()).collect();
    assert_eq!(states.last(), Some(&"succeeded"), "{states:?}");
    assert!(runs.iter().any(|r| r["tasks"][1]["state"] == "running"), "b was seen running: {text}");
    assert!(text.trim_end().ends_with("event: end\ndata: succeeded"), "{text}");
    // Another tenant's run is a 404, not an empty stream.
    let other = app.post("/api/v1/tenants", &app.admin_token, json!({ "slug": "other", "name": "Other" })).await;
    assert_eq!(other.status, StatusCode::CREATED);
    let foreign = app.get(&format!("/api/v1/tenants/other/runs/{run}/events"), &app.admin_token).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_list_shows_each_workflows_last_run_and_the_dashboard_counts_the_day() {
    let app = app().await;
    app.start_engine();
    apply(&app, CHAIN, None).await;
    apply(&app, FAILS, None).await;
    let ok = trigger(&app, "chain").await;
    let bad = trigger(&app, "fails").await;
    // `fails` waits in a pool no worker serves: cancel it so it ends (not failed by a worker).
    for _ in 0..200 {
        if state_of(&app, &ok).await == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state_of(&app, &ok).await, "succeeded");
    let marked = app
        .post(&format!("/api/v1/tenants/acme/runs/{bad}/tasks/x/mark"), &app.admin_token, json!({ "state": "failed" }))
        .await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.body);
    assert_eq!(state_of(&app, &bad).await, "failed");

    let list = app.get("/api/v1/tenants/acme/workflows", &app.admin_token).await;
    let last: Vec<(String, String)> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["name"].as_str().unwrap().to_owned(), w["last_run"]["state"].as_str().unwrap_or("-").to_owned()))
        .collect();
    assert_eq!(last, [("chain".to_owned(), "succeeded".to_owned()), ("fails".to_owned(), "failed".to_owned())]);

    let d = app.get("/api/v1/tenants/acme/dashboard", &app.admin_token).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    assert_eq!(d.body["runs"], json!({ "succeeded": 1, "failed": 1 }));
    assert_eq!(d.body["success_rate"], 0.5);
    assert_eq!(d.body["failing"][0]["name"], "fails");
    assert_eq!(d.body["failing"][0]["failed_runs"], 1);
    assert_eq!(d.body["schedule_delay_p50"], Value::Null, "no scheduled run today");
}

#[tokio::test]
async fn a_persons_language_and_theme_follow_them_to_a_new_browser() {
    let app = app().await;
    let first = app.signed_in("admin@example.com", ADMIN_PASSWORD).await;
    let origin = app.base.clone();
    let set = first
        .post(format!("{}/api/set_prefs", app.base))
        .header("origin", &origin)
        .json(&json!({ "prefs": { "lang": "zh", "theme": "dark" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK, "{}", set.text().await.unwrap());
    // A new browser: the console's own sign-in brings the choice back as cookies...
    let second =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = second
        .post(format!("{}/api/login", app.base))
        .header("origin", &origin)
        .form(&[("email", "admin@example.com"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> =
        login.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert!(cookies.iter().any(|c| c.starts_with("orrery_lang=zh")), "{cookies:?}");
    assert!(cookies.iter().any(|c| c.starts_with("orrery_theme=dark")), "{cookies:?}");
    // ...and the server renders pages in it from the first byte.
    let page = second.get(format!("{}/t/acme/workflows", app.base)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<html lang="zh" data-theme="dark">"#), "{}", &html[..html.len().min(400)]);
    assert!(html.contains("工作流"), "the page is in Chinese");
    // A browser that never chose follows its Accept-Language.
    let third = app.signed_in("admin@example.com", ADMIN_PASSWORD).await;
    let page =
        third.get(format!("{}/t/acme", app.base)).header("accept-language", "zh-CN,zh;q=0.9").send().await.unwrap();
    assert!(page.text().await.unwrap().contains(r#"<html lang="zh""#));
    // Preferences are short values only.
    let bad = first
        .post(format!("{}/api/set_prefs", app.base))
        .header("origin", &origin)
        .json(&json!({ "prefs": { "lang": "klingon", "theme": "dark" } }))
        .send()
        .await
        .unwrap();
    assert!(bad.status().is_client_error() || bad.status().is_server_error(), "an unknown language is refused");
}

#[tokio::test]
async fn running_attempts_are_listed_with_their_worker_and_only_to_their_tenant() {
    let app = app().await;
    app.start_engine();
    let long = "name: long\ntasks:\n  - {id: wait, kind: sleep, config: {seconds: 60}}\n";
    assert_eq!(apply(&app, long, None).await.status, StatusCode::CREATED);
    let run = trigger(&app, "long").await;
    let mut listed = Value::Null;
    for _ in 0..200 {
        listed = app.get("/api/v1/tenants/acme/attempts/running", &app.admin_token).await.body;
        if listed["items"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let items = listed["items"].as_array().expect("a page");
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["run_id"], run.as_str());
    assert_eq!((items[0]["workflow"].as_str(), items[0]["task"].as_str()), (Some("long"), Some("wait")));
    assert_eq!(items[0]["attempt"], 1);
    assert!(!items[0]["worker_id"].as_str().unwrap_or_default().is_empty(), "{listed}");

    // Another tenant sees none of it; someone outside the tenant gets a 404.
    let other = app.post("/api/v1/tenants", &app.admin_token, json!({ "slug": "other", "name": "Other" })).await;
    assert_eq!(other.status, StatusCode::CREATED);
    let theirs = app.get("/api/v1/tenants/other/attempts/running", &app.admin_token).await;
    assert_eq!((theirs.status, theirs.body["items"].clone()), (StatusCode::OK, json!([])));
    let invited = app
        .post("/api/v1/tenants/other/members", &app.admin_token, json!({ "email": "o@example.com", "role": "viewer" }))
        .await;
    assert_eq!(invited.status, StatusCode::CREATED, "{}", invited.body);
    let outsider = app.signed_in("o@example.com", invited.body["initial_password"].as_str().unwrap()).await;
    let refused = outsider.get(format!("{}/api/v1/tenants/acme/attempts/running", app.base)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);

    let cancelled = app.post(&format!("/api/v1/tenants/acme/runs/{run}/cancel"), &app.admin_token, json!({})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
}
