//! The store against a real PostgreSQL: tenants on two shards, isolation, memberships, tokens.

use model::{Email, ProjectId, Role, Slug, TenantId, TokenId, UserId};
use store::{NewProject, NewTenant, NewUser, Store, StoreError};
use testkit::TestDb;

async fn user(store: &Store, email: &str) -> UserId {
    let email = Email::parse(email).unwrap();
    store
        .create_user(NewUser { email: &email, display_name: "Test", password_hash: None, platform_admin: false }, None)
        .await
        .unwrap()
        .user_id()
}

async fn tenant(store: &Store, slug: &str, owner: UserId) -> TenantId {
    let slug = Slug::parse(slug).unwrap();
    store.create_tenant(NewTenant { slug: &slug, name: "T", owner }, None).await.unwrap().tenant_id()
}

async fn project(store: &Store, tenant: TenantId, slug: &str) -> ProjectId {
    let slug = Slug::parse(slug).unwrap();
    let p = store.create_project(tenant, NewProject { slug: &slug, name: "P", description: "" }, None).await.unwrap();
    ProjectId(p.id)
}

#[tokio::test]
async fn new_tenants_are_spread_over_both_shards() {
    let db = TestDb::new().await;
    let owner = user(&db.store, "o@example.com").await;
    let a =
        db.store.create_tenant(NewTenant { slug: &Slug::parse("a").unwrap(), name: "A", owner }, None).await.unwrap();
    let b =
        db.store.create_tenant(NewTenant { slug: &Slug::parse("b").unwrap(), name: "B", owner }, None).await.unwrap();
    assert_eq!(db.store.shard_ids(), vec![1, 2]);
    assert_ne!(a.shard_id, b.shard_id, "the second tenant goes to the emptier shard");
}

#[tokio::test]
async fn another_tenants_project_is_not_found_on_either_shard() {
    let db = TestDb::new().await;
    let owner = user(&db.store, "o@example.com").await;
    let (a, b) = (tenant(&db.store, "a", owner).await, tenant(&db.store, "b", owner).await);
    let pa = project(&db.store, a, "etl").await;
    let pb = project(&db.store, b, "etl").await; // same slug, other tenant: allowed

    assert_eq!(db.store.project(a, pa).await.unwrap().slug, "etl");
    assert!(matches!(db.store.project(a, pb).await, Err(StoreError::NotFound)));
    assert!(matches!(db.store.project(b, pa).await, Err(StoreError::NotFound)));
    assert!(matches!(db.store.delete_project(a, pb, None).await, Err(StoreError::NotFound)));
    assert_eq!(db.store.projects(a).await.unwrap().len(), 1);
    assert!(db.store.project(b, pb).await.is_ok(), "a refused delete changed nothing");
}

#[tokio::test]
async fn a_duplicate_project_key_is_a_conflict() {
    let db = TestDb::new().await;
    let owner = user(&db.store, "o@example.com").await;
    let a = tenant(&db.store, "a", owner).await;
    project(&db.store, a, "etl").await;
    let slug = Slug::parse("etl").unwrap();
    let again = db.store.create_project(a, NewProject { slug: &slug, name: "P", description: "" }, None).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

#[tokio::test]
async fn the_last_owner_can_be_neither_demoted_nor_removed() {
    let db = TestDb::new().await;
    let owner = user(&db.store, "o@example.com").await;
    let t = tenant(&db.store, "a", owner).await;
    let demote = db.store.grant_role(t, owner, Role::Admin, None).await;
    assert!(matches!(&demote, Err(StoreError::Conflict(c)) if c == "last_owner"), "{demote:?}");
    let remove = db.store.revoke_membership(t, owner, None).await;
    assert!(matches!(&remove, Err(StoreError::Conflict(c)) if c == "last_owner"), "{remove:?}");

    let second = user(&db.store, "p@example.com").await;
    db.store.grant_role(t, second, Role::Owner, None).await.unwrap();
    db.store.grant_role(t, owner, Role::Viewer, None).await.unwrap();
    assert_eq!(db.store.role_of(t, owner).await.unwrap(), Some(Role::Viewer));
}

#[tokio::test]
async fn inviting_an_existing_email_reuses_the_user_and_records_the_change() {
    let db = TestDb::new().await;
    let owner = user(&db.store, "o@example.com").await;
    let t = tenant(&db.store, "a", owner).await;
    let email = Email::parse("New@Example.com").unwrap();
    let new = || NewUser { email: &email, display_name: "New", password_hash: Some("x"), platform_admin: false };
    let (m1, created1) = db.store.invite_member(t, new(), Role::Viewer, Some(owner)).await.unwrap();
    let (m2, created2) = db.store.invite_member(t, new(), Role::Developer, Some(owner)).await.unwrap();
    assert!(created1 && !created2);
    assert_eq!(m1.user.id, m2.user.id);
    assert_eq!(db.store.role_of(t, m1.user.user_id()).await.unwrap(), Some(Role::Developer));
    assert_eq!(db.store.members(t).await.unwrap().len(), 2);
    let audit = db.store.audit_log(t, 10).await.unwrap();
    let invites: Vec<_> = audit.iter().filter(|e| e.action == "member.invite").collect();
    assert_eq!(invites.len(), 2);
    assert_eq!(invites[0].detail["role"], "developer");
    assert_eq!(invites[0].actor_user_id, Some(owner.as_uuid()));
}

#[tokio::test]
async fn the_audit_log_merges_catalog_and_shard_entries() {
    let db = TestDb::new().await;
    let owner = user(&db.store, "o@example.com").await;
    // The second tenant lands on shard 2, so its project's entry is in another database.
    let _first = tenant(&db.store, "a", owner).await;
    let t = tenant(&db.store, "b", owner).await;
    project(&db.store, t, "etl").await;
    let actions: Vec<String> = db.store.audit_log(t, 10).await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions, vec!["project.create", "tenant.create"]);
}

#[tokio::test]
async fn a_revoked_token_is_gone_and_only_its_owner_can_revoke_it() {
    let db = TestDb::new().await;
    let (u1, u2) = (user(&db.store, "a@example.com").await, user(&db.store, "b@example.com").await);
    let id = TokenId(uuid::Uuid::now_v7());
    db.store.create_token(u1, id, "ci", b"hash", None, "user").await.unwrap();
    assert!(matches!(db.store.revoke_token(u2, id).await, Err(StoreError::NotFound)));
    db.store.revoke_token(u1, id).await.unwrap();
    assert!(db.store.token(id).await.unwrap().revoked_at.is_some());
    assert!(db.store.tokens_of_user(u1).await.unwrap().is_empty());
}

#[tokio::test]
async fn readiness_reports_every_database_at_the_current_schema() {
    let db = TestDb::new().await;
    let r = db.store.readiness().await;
    assert_eq!(r.iter().map(|r| r.database.as_str()).collect::<Vec<_>>(), vec!["catalog", "shard-2"]);
    assert!(r.iter().all(|r| r.ok), "{r:?}");
    db.store.migrate().await.expect("migrating again changes nothing");
}
