//! The HTTP API of a real server (real sockets, real PostgreSQL with two shards).

mod common;

use std::time::Duration;

use common::{ADMIN_PASSWORD, answer, spawn_app, spawn_replica};
use model::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    let health = app.get("/healthz", "").await;
    assert_eq!((health.status, health.body["status"].as_str()), (StatusCode::OK, Some("alive")));
    let ready = app.get("/readyz", "").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let names: Vec<&str> =
        ready.body["databases"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["catalog", "shard-2"]);

    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("orrery_build_info{commit="), "{metrics}");
    assert!(
        metrics.contains(r#"orrery_http_requests_total{method="GET",route="/healthz",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"orrery_http_request_duration_seconds_bucket{method="GET",route="/readyz""#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"orrery_db_pool_connections{pool="shard-2",state="max"} 8"#),
        "testkit pools hold 8: {metrics}"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint() {
    let app = spawn_app().await;
    let doc = app.get("/api/openapi.json", "").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], "3.1.0");
    insta::assert_json_snapshot!("openapi", doc.body, { ".info.version" => "[version]" });
    let docs_page = reqwest::get(format!("{}/api/docs/", app.base)).await.unwrap();
    assert_eq!(docs_page.status(), StatusCode::OK);
    assert!(docs_page.text().await.unwrap().contains("swagger"), "the docs page is Swagger UI");
}

#[tokio::test]
async fn a_viewer_reads_but_gets_403_on_admin_endpoints() {
    let app = spawn_app().await;
    let (_, viewer) = app.member("acme", "viewer@example.com", Role::Viewer).await;
    assert_eq!(app.get("/api/v1/tenants/acme/projects", &viewer).await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/tenants/acme/dashboard", &viewer).await.status, StatusCode::OK);

    let members = app.get("/api/v1/tenants/acme/members", &viewer).await;
    assert_eq!((members.status, members.code()), (StatusCode::FORBIDDEN, "forbidden"));
    assert!(members.body["message"].as_str().unwrap().contains("viewer"), "{}", members.body);
    let invite =
        app.post("/api/v1/tenants/acme/members", &viewer, json!({ "email": "x@example.com", "role": "viewer" })).await;
    assert_eq!(invite.status, StatusCode::FORBIDDEN);
    let create = app.post("/api/v1/tenants/acme/projects", &viewer, json!({ "slug": "etl", "name": "ETL" })).await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
    let tenant = app.post("/api/v1/tenants", &viewer, json!({ "slug": "mine", "name": "Mine" })).await;
    assert_eq!(tenant.status, StatusCode::FORBIDDEN, "only platform admins create tenants");
}

#[tokio::test]
async fn another_tenants_project_is_a_404_however_it_is_asked_for() {
    let app = spawn_app().await;
    let globex = app.post("/api/v1/tenants", &app.admin_token, json!({ "slug": "globex", "name": "Globex" })).await;
    assert_eq!(globex.status, StatusCode::CREATED, "{}", globex.body);
    let project = app
        .post("/api/v1/tenants/globex/projects", &app.admin_token, json!({ "slug": "secret", "name": "Secret" }))
        .await;
    assert_eq!(project.status, StatusCode::CREATED, "{}", project.body);
    let id = project.body["id"].as_str().unwrap();
    let (_, viewer) = app.member("acme", "viewer@example.com", Role::Viewer).await;

    // Through the other tenant's path: the tenant itself is not disclosed.
    let a = app.get(&format!("/api/v1/tenants/globex/projects/{id}"), &viewer).await;
    assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "tenant_not_found"));
    let missing = app.get("/api/v1/tenants/no-such-tenant/projects", &viewer).await;
    assert_eq!(missing.body, a.body, "a tenant you are not in looks exactly like one that does not exist");
    // Through the viewer's own tenant with the foreign id.
    let b = app.get(&format!("/api/v1/tenants/acme/projects/{id}"), &viewer).await;
    assert_eq!((b.status, b.code()), (StatusCode::NOT_FOUND, "project_not_found"));
    // Even the admin, a member of both, cannot reach it through the wrong tenant.
    let c = app.call(Method::DELETE, &format!("/api/v1/tenants/acme/projects/{id}"), &app.admin_token, None).await;
    assert_eq!(c.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get(&format!("/api/v1/tenants/globex/projects/{id}"), &app.admin_token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_credentials_get_one_generic_answer_then_a_rate_limit() {
    let app = spawn_app().await;
    let login = |email: &'static str, password: &'static str| {
        let base = app.base.clone();
        async move {
            answer(
                reqwest::Client::new()
                    .post(format!("{base}/api/v1/auth/login"))
                    .json(&json!({ "email": email, "password": password }))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let wrong_password = login("admin@example.com", "nope-nope").await;
    let unknown_user = login("nobody@example.com", "nope-nope").await;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password.body, unknown_user.body, "no hint whether the account exists");
    for _ in 0..4 {
        login("admin@example.com", "nope-nope").await;
    }
    let limited = login("admin@example.com", ADMIN_PASSWORD).await;
    assert_eq!((limited.status, limited.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    let retry: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
}

#[tokio::test]
async fn a_session_signs_in_reads_and_signs_out() {
    let app = spawn_app().await;
    let client = app.signed_in("admin@example.com", ADMIN_PASSWORD).await;
    let me = answer(client.get(format!("{}/api/v1/me", app.base)).send().await.unwrap()).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["tenants"][0]["slug"], "acme");
    assert_eq!(me.body["tenants"][0]["role"], "owner");
    let out = client.post(format!("{}/api/v1/auth/logout", app.base)).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    let after = answer(client.get(format!("{}/api/v1/me", app.base)).send().await.unwrap()).await;
    assert_eq!((after.status, after.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"));
}

#[tokio::test]
async fn a_cross_site_post_riding_the_session_cookie_is_refused() {
    let app = spawn_app().await;
    let client = app.signed_in("admin@example.com", ADMIN_PASSWORD).await;
    let url = format!("{}/api/v1/tenants/acme/projects", app.base);
    let body = json!({ "slug": "etl", "name": "ETL" });
    let forged =
        answer(client.post(&url).header("sec-fetch-site", "cross-site").json(&body).send().await.unwrap()).await;
    assert_eq!((forged.status, forged.code()), (StatusCode::FORBIDDEN, "cross_site_request"));
    let foreign_origin =
        answer(client.post(&url).header("origin", "https://evil.example").json(&body).send().await.unwrap()).await;
    assert_eq!(foreign_origin.status, StatusCode::FORBIDDEN);
    assert!(app.store.projects(first_tenant(&app).await).await.unwrap().is_empty(), "nothing was created");
    let same_site =
        answer(client.post(&url).header("sec-fetch-site", "same-origin").json(&body).send().await.unwrap()).await;
    assert_eq!(same_site.status, StatusCode::CREATED, "{}", same_site.body);
}

async fn first_tenant(app: &common::TestApp) -> model::TenantId {
    app.store.tenant_by_slug("acme").await.unwrap().tenant_id()
}

#[tokio::test]
async fn bad_input_is_named_and_nothing_is_written() {
    let app = spawn_app().await;
    let bad_slug =
        app.post("/api/v1/tenants/acme/projects", &app.admin_token, json!({ "slug": "Bad Slug", "name": "X" })).await;
    assert_eq!((bad_slug.status, bad_slug.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"));
    let msg = bad_slug.body["message"].as_str().unwrap();
    assert!(msg.contains("slug") && msg.contains("lowercase"), "{msg}");
    let missing = app.post("/api/v1/tenants/acme/projects", &app.admin_token, json!({ "slug": "etl" })).await;
    assert!(missing.body["message"].as_str().unwrap().contains("name"), "{}", missing.body);
    let not_json = answer(
        reqwest::Client::new()
            .post(format!("{}/api/v1/tenants/acme/projects", app.base))
            .bearer_auth(&app.admin_token)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((not_json.status, not_json.code()), (StatusCode::BAD_REQUEST, "invalid_body"));
    let bad_id = app.get("/api/v1/tenants/acme/projects/not-a-uuid", &app.admin_token).await;
    assert_eq!((bad_id.status, bad_id.code()), (StatusCode::BAD_REQUEST, "invalid_path"));
    let nowhere = app.get("/api/v1/nowhere", &app.admin_token).await;
    assert_eq!((nowhere.status, nowhere.code()), (StatusCode::NOT_FOUND, "no_such_endpoint"));
    assert!(app.store.projects(first_tenant(&app).await).await.unwrap().is_empty());
}

#[tokio::test]
async fn tokens_are_shown_once_and_stop_working_when_revoked() {
    let app = spawn_app().await;
    let created = app.post("/api/v1/tokens", &app.admin_token, json!({ "name": "ci", "expires_in_days": 30 })).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("orr_"));
    assert_eq!(app.get("/api/v1/me", &secret).await.status, StatusCode::OK);
    let listed = app.get("/api/v1/tokens", &app.admin_token).await;
    assert!(!listed.body.to_string().contains(&secret[4..]), "listing never shows a secret");
    let id = created.body["token"]["id"].as_str().unwrap();
    let revoked = app.call(Method::DELETE, &format!("/api/v1/tokens/{id}"), &app.admin_token, None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = app.get("/api/v1/me", &secret).await;
    assert_eq!((after.status, after.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    assert_eq!(app.get("/api/v1/me", "orr_garbage").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn nobody_grants_a_role_above_their_own_and_the_last_owner_stays() {
    let app = spawn_app().await;
    let (_, admin) = app.member("acme", "second-admin@example.com", Role::Admin).await;
    let owner_grant =
        app.post("/api/v1/tenants/acme/members", &admin, json!({ "email": "x@example.com", "role": "owner" })).await;
    assert_eq!(owner_grant.status, StatusCode::FORBIDDEN, "{}", owner_grant.body);
    let demote_owner = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/acme/members/{}", app.admin),
            &admin,
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(demote_owner.status, StatusCode::FORBIDDEN, "an admin cannot demote an owner");
    let self_demote = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/acme/members/{}", app.admin),
            &app.admin_token,
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_eq!((self_demote.status, self_demote.code()), (StatusCode::CONFLICT, "last_owner"));
}

#[tokio::test]
async fn a_role_granted_on_one_replica_holds_on_another_at_once() {
    let app = spawn_app().await;
    let replica = spawn_replica(&app).await;
    // The replica loaded its policy before this member existed: only the notification tells it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (user, token) = app.member("acme", "late@example.com", Role::Viewer).await;
    let mut status = StatusCode::NOT_FOUND;
    for _ in 0..50 {
        status = replica.get("/api/v1/tenants/acme/projects", &token).await.status;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::OK, "the replica learned the new membership");
    let removed =
        app.call(Method::DELETE, &format!("/api/v1/tenants/acme/members/{user}"), &app.admin_token, None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    for _ in 0..50 {
        status = replica.get("/api/v1/tenants/acme/projects", &token).await.status;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::NOT_FOUND, "and learned its removal");
}

#[tokio::test]
async fn quotas_are_set_by_platform_admins_and_read_by_members() {
    let app = spawn_app().await;
    let (_, owner) = app.member("acme", "owner2@example.com", Role::Owner).await;
    let denied = app
        .call(Method::PUT, "/api/v1/tenants/acme/limits", &owner, Some(json!({ "max_running": 100, "weight": 5 })))
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "a tenant's owner cannot raise its own quota");
    let set = app
        .call(
            Method::PUT,
            "/api/v1/tenants/acme/limits",
            &app.admin_token,
            Some(json!({ "max_running": 20, "weight": 2 })),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let read = app.get("/api/v1/tenants/acme/limits", &owner).await;
    assert_eq!(read.body, json!({ "max_running": 20, "weight": 2 }));
    let bad =
        app.call(Method::PUT, "/api/v1/tenants/acme/limits", &app.admin_token, Some(json!({ "weight": 0 }))).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let pool =
        app.call(Method::PUT, "/api/v1/pools", &app.admin_token, Some(json!({ "name": "gpu", "slots": 4 }))).await;
    assert_eq!(pool.status, StatusCode::OK);
    let pools = app.get("/api/v1/pools", &owner).await.body;
    let gpu = pools["items"].as_array().unwrap().iter().find(|p| p["name"] == "gpu").cloned().unwrap_or_default();
    assert_eq!(
        (gpu["slots"].as_u64(), gpu["workers"].as_u64(), gpu["queued"].as_u64()),
        (Some(4), Some(0), Some(0)),
        "{pools}"
    );
}
