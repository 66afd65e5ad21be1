//! Workflows and runs through the HTTP API of a real server, with its scheduler and in-process
//! executor running.

mod common;

use std::time::Duration;

use common::{TestApp, spawn_app};
use model::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DOC: &str = "name: etl\nparams:\n  region: eu\ntasks:\n  - {id: extract, kind: noop}\n  - {id: load, kind: sleep, config: {seconds: 0.1}, depends_on: [extract]}\n";

async fn app_with_project() -> TestApp {
    let app = spawn_app().await;
    let p =
        app.post("/api/v1/tenants/acme/projects", &app.admin_token, json!({ "slug": "data", "name": "Data" })).await;
    assert_eq!(p.status, StatusCode::CREATED);
    app
}

async fn apply(app: &TestApp, token: &str, doc: &str) -> common::Answer {
    app.post("/api/v1/tenants/acme/workflows", token, json!({ "project": "data", "document": doc, "message": "test" }))
        .await
}

async fn wait_run(app: &TestApp, run: &str) -> Value {
    for _ in 0..200 {
        let r = app.get(&format!("/api/v1/tenants/acme/runs/{run}"), &app.admin_token).await;
        let state = r.body["run"]["state"].as_str().unwrap_or_default().to_owned();
        if ["succeeded", "failed", "cancelled"].contains(&state.as_str()) {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run} did not end");
}

#[tokio::test]
async fn versions_are_made_only_on_change_and_diff_and_rollback_work() {
    let app = app_with_project().await;
    let first = apply(&app, &app.admin_token, DOC).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["workflow"]["version"], 1);
    let same = apply(&app, &app.admin_token, DOC).await;
    assert_eq!((same.status, same.body["changed"].as_bool()), (StatusCode::OK, Some(false)));
    let second_doc = "name: etl\nparams:\n  region: eu\ntasks:\n  - {id: extract, kind: noop, retries: 2}\n  - {id: report, kind: noop, depends_on: [extract]}\n";
    let second = apply(&app, &app.admin_token, second_doc).await;
    assert_eq!(second.body["workflow"]["version"], 2);

    let versions = app.get("/api/v1/tenants/acme/workflows/etl/versions", &app.admin_token).await;
    let v: Vec<i64> =
        versions.body["items"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert_eq!(v, [2, 1]);
    let diff = app.get("/api/v1/tenants/acme/workflows/etl/diff?from=1", &app.admin_token).await;
    assert_eq!(diff.body["added"], json!(["report"]));
    assert_eq!(diff.body["removed"], json!(["load"]));
    assert_eq!(diff.body["changed"], json!([{ "id": "extract", "fields": ["retries"] }]));

    let back = app.post("/api/v1/tenants/acme/workflows/etl/rollback", &app.admin_token, json!({ "version": 1 })).await;
    assert_eq!(back.status, StatusCode::CREATED, "{}", back.body);
    assert_eq!(back.body["workflow"]["version"], 3);
    let v3 = app.get("/api/v1/tenants/acme/workflows/etl/versions/3", &app.admin_token).await;
    let v1 = app.get("/api/v1/tenants/acme/workflows/etl/versions/1", &app.admin_token).await;
    assert_eq!(v3.body["document"], v1.body["document"], "a rollback restores the old content");
    assert_eq!(v3.body["version"]["message"], "rollback to version 1");
}

#[tokio::test]
async fn an_invalid_document_is_refused_with_each_problem_and_its_line() {
    let app = app_with_project().await;
    let doc = "name: w\ntasks:\n  - id: a\n    kind: noop\n    depends_on: [b]\n  - id: b\n    kind: noop\n    depends_on: [a]\n  - id: c\n    kind: shell\n";
    let r = apply(&app, &app.admin_token, doc).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_workflow"));
    let details = r.body["details"].as_array().unwrap();
    assert_eq!(details.len(), 2, "{}", r.body);
    assert!(details[0]["message"].as_str().unwrap().contains("cycle"), "{}", r.body);
    assert!([json!(3), json!(6)].contains(&details[0]["line"]), "the line of a task on the cycle: {}", r.body);
    assert_eq!(details[1]["task"], "c");
    assert!(details[1]["message"].as_str().unwrap().contains("missing field `script`"), "{}", r.body);
    let listed = app.get("/api/v1/tenants/acme/workflows", &app.admin_token).await;
    assert_eq!(listed.body["items"], json!([]), "nothing was written");
}

#[tokio::test]
async fn a_triggered_run_succeeds_and_an_idempotency_key_returns_the_same_run() {
    let app = app_with_project().await;
    app.start_engine();
    apply(&app, &app.admin_token, DOC).await;
    let t = app
        .post(
            "/api/v1/tenants/acme/workflows/etl/runs",
            &app.admin_token,
            json!({ "params": { "region": "us" }, "idempotency_key": "k1" }),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
    let run = t.body["run"]["id"].as_str().unwrap().to_owned();
    assert_eq!(t.body["run"]["params"]["region"], "us");
    let again =
        app.post("/api/v1/tenants/acme/workflows/etl/runs", &app.admin_token, json!({ "idempotency_key": "k1" })).await;
    assert_eq!((again.status, again.body["run"]["id"].as_str()), (StatusCode::OK, Some(run.as_str())));
    let done = wait_run(&app, &run).await;
    assert_eq!(done["run"]["state"], "succeeded");
    let tasks: Vec<(&str, &str)> = done["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    assert_eq!(tasks, [("extract", "succeeded"), ("load", "succeeded")]);
    assert_eq!(done["tasks"][1]["depends_on"], json!(["extract"]));
    assert_eq!(done["tasks"][1]["attempts"][0]["worker"], "local");
    let listed = app.get("/api/v1/tenants/acme/runs?workflow=etl&state=succeeded", &app.admin_token).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_missing_required_parameter_is_named() {
    let app = app_with_project().await;
    apply(&app, &app.admin_token, "name: needs\nparams:\n  day: {required: true}\ntasks:\n  - {id: a, kind: noop}\n")
        .await;
    let r = app.post("/api/v1/tenants/acme/workflows/needs/runs", &app.admin_token, json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("day"), "{}", r.body);
}

#[tokio::test]
async fn roles_decide_who_defines_who_operates_and_who_only_reads() {
    let app = app_with_project().await;
    apply(&app, &app.admin_token, DOC).await;
    let (_, viewer) = app.member("acme", "v@example.com", Role::Viewer).await;
    let (_, operator) = app.member("acme", "o@example.com", Role::Operator).await;
    let (_, developer) = app.member("acme", "d@example.com", Role::Developer).await;
    assert_eq!(apply(&app, &viewer, DOC).await.status, StatusCode::FORBIDDEN);
    assert_eq!(apply(&app, &operator, DOC).await.status, StatusCode::FORBIDDEN);
    assert_eq!(apply(&app, &developer, &DOC.replace("eu", "us")).await.status, StatusCode::CREATED);
    let trig = |token: String| {
        let app = &app;
        async move { app.post("/api/v1/tenants/acme/workflows/etl/runs", &token, json!({})).await.status }
    };
    assert_eq!(trig(viewer.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(trig(operator.clone()).await, StatusCode::CREATED);
    assert_eq!(app.get("/api/v1/tenants/acme/runs", &viewer).await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/tenants/acme/workflows/etl", &viewer).await.status, StatusCode::OK);
}

#[tokio::test]
async fn another_tenants_run_and_workflow_are_404() {
    let app = app_with_project().await;
    apply(&app, &app.admin_token, DOC).await;
    let run = app.post("/api/v1/tenants/acme/workflows/etl/runs", &app.admin_token, json!({})).await.body["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let g = app.post("/api/v1/tenants", &app.admin_token, json!({ "slug": "globex", "name": "Globex" })).await;
    assert_eq!(g.status, StatusCode::CREATED);
    let (_, outsider) = app.member("globex", "x@example.com", Role::Owner).await;
    let r = app.get(&format!("/api/v1/tenants/globex/runs/{run}"), &outsider).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "run_not_found"));
    let r = app.get(&format!("/api/v1/tenants/acme/runs/{run}"), &outsider).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "tenant_not_found"));
    let w = app.get("/api/v1/tenants/globex/workflows/etl", &outsider).await;
    assert_eq!((w.status, w.code()), (StatusCode::NOT_FOUND, "workflow_not_found"));
    let c = app.post(&format!("/api/v1/tenants/globex/runs/{run}/cancel"), &outsider, json!({})).await;
    assert_eq!(c.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cancel_rerun_clear_and_mark() {
    let app = app_with_project().await;
    app.start_engine();
    apply(&app, &app.admin_token, "name: slow\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: sleep, config: {seconds: 30}, depends_on: [a]}\n  - {id: c, kind: noop, depends_on: [b]}\n").await;
    let run = app.post("/api/v1/tenants/acme/workflows/slow/runs", &app.admin_token, json!({})).await.body["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Wait until b runs, then cancel.
    for _ in 0..100 {
        let d = app.get(&format!("/api/v1/tenants/acme/runs/{run}"), &app.admin_token).await;
        if d.body["tasks"][1]["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = app.post(&format!("/api/v1/tenants/acme/runs/{run}/cancel"), &app.admin_token, json!({})).await;
    assert_eq!(c.body["run"]["state"], "cancelled", "{}", c.body);
    let states: Vec<&str> = c.body["tasks"].as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["succeeded", "cancelled", "cancelled"]);
    // Mark b succeeded by hand: c runs, and the run ends succeeded.
    let m = app
        .post(
            &format!("/api/v1/tenants/acme/runs/{run}/tasks/b/mark"),
            &app.admin_token,
            json!({ "state": "succeeded" }),
        )
        .await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.body);
    let after_mark = wait_run(&app, &run).await;
    // c was cancelled by the stop; rerun the failed ones to finish it.
    let r = app.post(&format!("/api/v1/tenants/acme/runs/{run}/rerun-failed"), &app.admin_token, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The answer is the run as read after the rerun committed: the executor may have run the
    // no-op c, and ended the run, by then (a step takes about a millisecond).
    let state = r.body["run"]["state"].as_str().unwrap_or_default();
    assert!(["running", "succeeded"].contains(&state), "{} / {after_mark}", r.body);
    assert_ne!(r.body["tasks"][2]["state"], "cancelled", "c runs again: {}", r.body);
    let done = wait_run(&app, &run).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    // Clear a and its downstream: everything runs again (b sleeps 30 s, so cancel it after).
    let cl = app
        .post(
            &format!("/api/v1/tenants/acme/runs/{run}/tasks/a/clear"),
            &app.admin_token,
            json!({ "downstream": true }),
        )
        .await;
    assert_eq!(cl.body["run"]["state"], "running", "{}", cl.body);
    let bad = app
        .post(&format!("/api/v1/tenants/acme/runs/{run}/tasks/a/mark"), &app.admin_token, json!({ "state": "skipped" }))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let missing =
        app.post(&format!("/api/v1/tenants/acme/runs/{run}/tasks/zzz/clear"), &app.admin_token, json!({})).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "task_not_found"));
    app.post(&format!("/api/v1/tenants/acme/runs/{run}/cancel"), &app.admin_token, json!({})).await;
}

#[tokio::test]
async fn schedules_pause_resume_and_preview_in_their_zone() {
    let app = app_with_project().await;
    let doc =
        "name: nightly\nschedule:\n  cron: \"0 2 * * *\"\n  timezone: Asia/Shanghai\ntasks:\n  - {id: a, kind: noop}\n";
    apply(&app, &app.admin_token, doc).await;
    let p = app.get("/api/v1/tenants/acme/workflows/nightly/schedule/preview?count=3", &app.admin_token).await;
    let next: Vec<&str> = p.body["next"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(next.len(), 3);
    assert!(next.iter().all(|t| t.ends_with("T18:00:00Z")), "02:00 in Shanghai is 18:00 UTC: {next:?}");
    let paused = app.post("/api/v1/tenants/acme/workflows/nightly/schedule/pause", &app.admin_token, json!({})).await;
    assert_eq!(paused.body["paused"], true);
    let w = app.get("/api/v1/tenants/acme/workflows/nightly", &app.admin_token).await;
    assert_eq!(w.body["workflow"]["schedule"]["paused"], true);
    let resumed = app.post("/api/v1/tenants/acme/workflows/nightly/schedule/resume", &app.admin_token, json!({})).await;
    assert_eq!(resumed.body["paused"], false);
    let cron = app
        .get(
            "/api/v1/cron/next?expr=0%200%2012%20%3F%20*%206&dialect=quartz&tz=UTC&after=2026-01-01T00:00:00Z&count=1",
            "",
        )
        .await;
    assert_eq!(cron.body["next"], json!(["2026-01-02T12:00:00Z"]), "{}", cron.body);
    let bad = app.get("/api/v1/cron/next?expr=61%20*%20*%20*%20*", "").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let schema = app.get("/api/v1/schemas/workflow.json", "").await;
    assert_eq!(schema.body["title"], "WorkflowSpec");
    assert!(
        schema.body["x-task-kinds"]["shell"]["properties"]["script"].is_object(),
        "{}",
        schema.body["x-task-kinds"]
    );
}

#[tokio::test]
async fn a_backfill_previews_then_creates_its_runs() {
    let app = app_with_project().await;
    apply(&app, &app.admin_token, "name: daily\nschedule: {cron: \"0 2 * * *\"}\ntasks:\n  - {id: a, kind: noop}\n")
        .await;
    let body =
        json!({ "start": "2026-03-01T00:00:00Z", "end": "2026-03-05T23:00:00Z", "parallelism": 2, "dry_run": true });
    let preview = app.post("/api/v1/tenants/acme/workflows/daily/backfills", &app.admin_token, body.clone()).await;
    assert_eq!(preview.status, StatusCode::OK);
    assert_eq!(preview.body["pending"].as_array().unwrap().len(), 5);
    assert_eq!(preview.body["pending"][0], "2026-03-01T02:00:00Z");
    let mut real = body;
    real["dry_run"] = json!(false);
    let created = app.post("/api/v1/tenants/acme/workflows/daily/backfills", &app.admin_token, real).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let list = app.get("/api/v1/tenants/acme/backfills", &app.admin_token).await;
    assert_eq!(list.body["items"][0]["state"], "running");
    let id = created.body["id"].as_str().unwrap();
    let c =
        app.call(Method::POST, &format!("/api/v1/tenants/acme/backfills/{id}/cancel"), &app.admin_token, None).await;
    assert_eq!(c.status, StatusCode::NO_CONTENT);
    // Ticks to come are the schedule's to fire: a range that reaches past now is refused, and
    // says how far it may go.
    for dry_run in [true, false] {
        let future = json!({ "start": "2026-03-01T00:00:00Z", "end": "2999-01-01T00:00:00Z", "dry_run": dry_run });
        let r = app.post("/api/v1/tenants/acme/workflows/daily/backfills", &app.admin_token, future).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert!(r.body["message"].as_str().unwrap_or_default().contains("is in the future"), "{}", r.body);
    }
}
